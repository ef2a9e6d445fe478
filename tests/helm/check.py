"""helm lint --strict and one render per TLS mode of manifests/charts/secret-injector,
checked for what each mode must produce; the renders are written out."""

import base64
import sys
from pathlib import Path

import helm_python
import yaml

chart_dir, out = sys.argv[1], Path(sys.argv[2])
failures = []


def check(name, ok):
    print(f"helm: {'ok  ' if ok else 'FAIL'} {name}")
    if not ok:
        failures.append(name)


lint = helm_python.lint(chart_dir, strict=True, namespace="secret-injector")
check(f"helm lint --strict: {lint['errors'] or 'no errors'}", not lint["errors"])

CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()
modes = {
    "selfManaged": {},
    "provided": {"tls": {"mode": "provided", "provided": {"secretName": "my-webhook-tls", "caBundle": CA}}},
    "certManager": {"tls": {"mode": "certManager"}},
}
chart = helm_python.Chart.load(chart_dir)


def render(values):
    files = chart.render(values, name="secret-injector", namespace="secret-injector", is_install=True)
    docs = []
    for path, text in sorted(files.items()):
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def find(docs, kind, name=None):
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


for mode, values in modes.items():
    docs = render(values)
    # The renders are applied to the e2e's apiserver, 1.20: as `auto` resolves
    # there (no matchConditions before 1.28). Helm's SDK renders offline for a
    # newer version and has no option to name another.
    applied = render({**values, "webhook": {"matchConditions": False}})
    # cert-manager's kinds apart: an apiserver without cert-manager knows none.
    core = [d for d in applied if not d["apiVersion"].startswith("cert-manager.io/")]
    (out / f"{mode}.yaml").write_text(yaml.safe_dump_all(core, sort_keys=False))
    if len(core) < len(applied):
        extra = [d for d in applied if d not in core]
        (out / f"{mode}.cert-manager.yaml").write_text(yaml.safe_dump_all(extra, sort_keys=False))
    kinds = sorted({d["kind"] for d in docs})
    deployment = find(docs, "Deployment")[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    webhook = find(docs, "MutatingWebhookConfiguration")[0]
    entries = webhook["webhooks"]
    check(f"{mode}: {len(docs)} objects ({', '.join(kinds)})", len(docs) >= 7)
    check(f"{mode}: 2 replicas, restricted, probes",
          deployment["spec"]["replicas"] == 2
          and container["securityContext"]["allowPrivilegeEscalation"] is False
          and deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
          and container["readinessProbe"]["httpGet"]["path"] == "/readyz")
    check(f"{mode}: pods CREATE only, sideEffects None, IfNeeded, 5 s",
          all(e["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]
              and e["sideEffects"] == "None" and e["reinvocationPolicy"] == "IfNeeded" and e["timeoutSeconds"] == 5
              for e in entries))
    check(f"{mode}: csi (Fail), label (Fail, objectSelector), inject (Ignore, the rest), in that order",
          [(e["name"], e["failurePolicy"]) for e in entries]
          == [("csi.secret-injector.io", "Fail"), ("label.secret-injector.io", "Fail"), ("inject.secret-injector.io", "Ignore")]
          and entries[1]["objectSelector"] == {"matchLabels": {"secret-injector.io/inject": "true"}}
          and entries[2]["objectSelector"]["matchExpressions"][0]["operator"] == "NotIn")
    check(f"{mode}: the operator's limits reach the webhook",
          {"SECRET_INJECTOR_ALLOWED_STORE_HOSTS", "SECRET_INJECTOR_MIN_ROTATION_INTERVAL",
           "SECRET_INJECTOR_MAX_ROTATION_INTERVAL", "SECRET_INJECTOR_ALLOW_MANAGED_IDENTITY"}
          <= {e["name"] for e in container["env"]})
    check(f"{mode}: never kube-system or its own namespace",
          all({"kube-system", "secret-injector"} <= set(e["namespaceSelector"]["matchExpressions"][0]["values"])
              for e in entries))
    bundles = [e["clientConfig"].get("caBundle") for e in entries]
    if mode == "selfManaged":
        check("selfManaged: --tls-managed, the webhook writes the caBundle",
              "--tls-managed" in args and bundles == [None, None, None])
        rules = [r for d in find(docs, "ClusterRole") for r in d["rules"]]
        check("selfManaged: may update only its own webhook configuration",
              any(r.get("resourceNames") == ["secret-injector"] and r["verbs"] == ["get", "update"] for r in rules))
    elif mode == "provided":
        check("provided: the Secret mounted, the caBundle given",
              "--tls-cert-file=/tls/tls.crt" in args and bundles == [CA, CA, CA]
              and deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] == "my-webhook-tls")
    else:
        certificate = find(docs, "Certificate")
        check("certManager: a Certificate for the Service and inject-ca-from",
              len(certificate) == 1
              and "secret-injector.secret-injector.svc" in certificate[0]["spec"]["dnsNames"]
              and webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "secret-injector/secret-injector")

# matchConditions (CEL) exist from Kubernetes 1.28: rendered on request (and
# by `auto` on such clusters); the renders applied to the 1.20 apiserver lack them.
with_mc = find(render({"webhook": {"matchConditions": "true"}}), "MutatingWebhookConfiguration")[0]["webhooks"]
check("matchConditions: only on the annotation webhook, with the opt-in expression",
      [bool(e.get("matchConditions")) for e in with_mc] == [False, False, True]
      and "'secret-injector.io/inject' in object.metadata.annotations" in with_mc[2]["matchConditions"][0]["expression"])
without = find(render({"webhook": {"matchConditions": "false"}}), "MutatingWebhookConfiguration")[0]["webhooks"]
check("matchConditions: false renders none", not any(e.get("matchConditions") for e in without))
policy = find(render({"networkPolicy": {"enabled": True, "from": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]}}), "NetworkPolicy")
check("networkPolicy: only the listed sources reach port 8443",
      len(policy) == 1 and policy[0]["spec"]["ingress"][0]["ports"] == [{"port": 8443, "protocol": "TCP"}]
      and policy[0]["spec"]["ingress"][0]["from"] == [{"ipBlock": {"cidr": "10.0.0.0/24"}}])
try:
    render({"networkPolicy": {"enabled": True}})
    check("networkPolicy without sources is refused", False)
except helm_python.HelmError as e:
    check("networkPolicy without sources is refused, naming networkPolicy.from", "networkPolicy.from" in str(e))

try:
    render({"tls": {"mode": "provided"}})
    check("provided without a Secret is refused", False)
except helm_python.HelmError as e:
    check(f"provided without its Secret and CA is refused, naming them: {str(e).splitlines()[-1][:120]}",
          "tls.provided." in str(e))
try:
    render({"tls": {"mode": "vault"}})
    check("an unknown TLS mode is refused", False)
except helm_python.HelmError as e:
    check("an unknown TLS mode is refused, naming the choices", "selfManaged, provided, certManager" in str(e))

print(f"helm: renders in {out}")
sys.exit(1 if failures else 0)
