#!/usr/bin/env python3
"""Writes fuzz/corpus/<target>/ from the project's test fixtures and the rstest
case tables (python3 fuzz/seeds.py; stdlib only). Seeds are named by content
hash, like libFuzzer's, so rerunning adds nothing twice."""

import copy, hashlib, json, pathlib, re, sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "corpus"

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)

def read(p):
    return (ROOT / p).read_text()

P = "secret-injector.io/"
SEED_USER = "azure://kv-aks-csi-weu-01/secrets/db-user"
SEED_PASS = "azure://kv-aks-csi-weu-01/secrets/db-pass"

# ---- annotations: key=value lines (shared/src/annotations.rs cases)
def ann(pairs, inject=True):
    lines = ([f"{P}inject=true"] if inject else []) + [f"{k}={v}" for k, v in pairs]
    return "\n".join(lines) + "\n"

ok = [(f"{P}secret-ok", "azure://kv-one/secrets/ok")]
put("annotations", ann([(f"{P}secret-db-user", SEED_USER), (f"{P}secret-db-pass", SEED_PASS),
    (f"{P}rotation-interval", "1m"), (f"{P}tenant-id", "00000000-0000-0000-0000-00000000000a"),
    (f"{P}client-id", "00000000-0000-0000-0000-000000000001")]))
put("annotations", ann([(f"{P}secret-a", "azure://kv-one/secrets/a"), (f"{P}secret-b", "aws://us-east-1/prod/db#password"),
    (f"{P}secret-c", "vault://secret/app#key"), (f"{P}secret-d", "gcp://projects/my-project/secrets/d")]))
put("annotations", ann([(f"{P}secret-a", "azure://kv-one/secrets/a"), (f"{P}mount-path", "/run/secrets/app/"),
    (f"{P}rotation-interval", "0"), (f"{P}containers", "app, worker"), (f"{P}file-permission", "0440")]))
put("annotations", ann([(f"{P}secret-provider-class", "kv-aks-csi-weu-01"), (f"{P}rotation-interval", "1m"),
    (f"{P}containers", "app"), (f"{P}client-id", "00000000-0000-0000-0000-000000000001")]))
put("annotations", f"{P}inject=True\n")
put("annotations", f"{P}secret-a=nonsense\n")
put("annotations", "\x1e".join([f"{P}inject=true", f"{P}secret-a=vault://secret/app#multi\nline"]))
for extra in [("rotation-interval", "2 minutes"), ("rotation-interval", "1s"), ("mount-path", "relative/path"),
              ("mount-path", "/mnt/../etc"), ("file-permission", "0999"), ("containers", "app,,worker"),
              ("client-id", "my-app"), ("tenant-id", "not a tenant"), ("secret-..data", "azure://kv-one/secrets/a"),
              ("secret-a", "azure://kv-one/blobs/a"), ("rotation-intreval", "1m"), ("secrets-db", "azure://kv-one/secrets/a"),
              ("mountpath", "/x"), ("zzzzzzzzzzzzzzzzz", "x"), ("secret-provider-class", "kv"), ("secret-provider-class", "KV_1"),
              ("tenant-id", "contoso.onmicrosoft.com"), ("status", "injected")]:
    put("annotations", ann(ok + [(P + extra[0], extra[1])]))

# ---- secret_ref (shared/src/reference.rs cases)
refs = ["azure://kv-aks-csi-weu-01/secrets/db-pass",
    "azure://kv-aks-csi-weu-01/secrets/db-pass/0123456789abcdef0123456789abcdef",
    "azure://kv-aks-csi-weu-01/certificates/tls", "azure://kv-aks-csi-weu-01/keys/signing",
    "azure://myvault.vault.azure.cn/secrets/a", "azure://127.0.0.1:8443/secrets/a", "azure://KV-One/secrets/x",
    "aws://us-east-1/prod/db", "aws://us-gov-west-1/prod/db#password",
    "aws://eu-central-1/arn:aws:secretsmanager:eu-central-1:123456789012:secret:db-AbCdEf",
    "vault://secret/app/db#password", "gcp://projects/my-project/secrets/db/versions/3",
    "gcp://projects/123456789/secrets/db/versions/latest", "gcp://projects/my-project/secrets/db",
    "kv/secrets/x", "s3://bucket/x", "azure://kv-one/blobs/x", "azure://kv-one/secrets", "azure://kv-one/secrets/a/b/c",
    "azure://k/secrets/x", "azure://kv--one/secrets/x", "azure://kv-one/secrets/db_pass", "azure://host.example:0/secrets/x",
    "azure://kv-one/secrets/x/not-hex!", "aws://useast1/db", "aws://us-east-1", "aws://us-east-1/db#",
    "aws://us-east-1/arn:aws:s3:::bucket", "vault://secret/app/db", "vault://secret#k", "vault://secret/../db#k",
    "gcp://my-project/db", "gcp://projects/Bad/secrets/db", "gcp://projects/my-project/secrets/db/versions/0"]
for r in refs:
    put("secret_ref", r)

# ---- file_name (shared/src/file_name.rs cases)
for n in ["db-pass", "tls.crt", ".hidden", "a..b", "名前", "", ".", "..", "..data", "a/b", "../etc/passwd", "a\nb",
          "a" * 255, "é" * 128]:
    put("file_name", n)

# ---- scalars: rotation, file modes, mount paths
for s in ["30s", "1m", "2m", "90s", "1h30m", "1h0m5s", "0", "0s", "0m", "", "30", "1d", "m", "30m1h", "1m1m", "-1m",
          "1.5m", "2s", "99999999999999999999h", "0644", "440", "8", "0888", "1777", "04444", "rw-r--r--",
          "/mnt/secrets-store", "/run/secrets/app/", "relative/path", "/mnt/../etc", "/", "//x", "/a:b", "/mnt/./x"]:
    put("scalars", s)

# ---- provider_class: whole classes (YAML, JSON) and objects strings
def objects(items):
    text = "array:\n"
    for item in items:
        text += "  - |\n" + "".join(f"    {line}\n" for line in item.splitlines())
    return text

seed01 = read("manifests/examples/seed/01-secretProviderClass.yml")
seed10 = read("manifests/examples/seed/10-secretProviderClass_secretObjects.yml")
put("provider_class", seed01)
put("provider_class", seed10)
obj01 = objects(["objectName: db-user\nobjectType: secret\nobjectVersion: \"\"",
                 "objectName: db-pass\nobjectType: secret\nobjectVersion: \"\""])
base = {"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
        "metadata": {"name": "kv-aks-csi-weu-01", "namespace": "default"},
        "spec": {"provider": "azure", "parameters": {"usePodIdentity": "false", "useVMManagedIdentity": "true",
                 "userAssignedIdentityID": "00000000-0000-0000-0000-000000000001", "keyvaultName": "kv-aks-csi-weu-01",
                 "cloudName": "", "objects": obj01, "tenantId": "00000000-0000-0000-0000-00000000000a"}}}
def cls(params=(), secret_objects=None):
    c = copy.deepcopy(base)
    for k, v in params:
        if v is None:
            c["spec"]["parameters"].pop(k, None)
        else:
            c["spec"]["parameters"][k] = v
    if secret_objects is not None:
        c["spec"]["secretObjects"] = secret_objects
    return json.dumps(c, indent=1)
put("provider_class", cls())
put("provider_class", cls(secret_objects=[{"secretName": "k8s-secret", "type": "Opaque",
    "data": [{"objectName": "db-user", "key": "username"}, {"objectName": "db-pass", "key": "password"}]}]))
rich = objects(["objectName: db-user\nobjectType: secret\nobjectAlias: username\nfilePermission: \"0400\"",
    "objectName: tls\nobjectType: secret\nobjectFormat: pfx\nobjectEncoding: base64\nobjectAlias: tls.pfx",
    "objectName: tls\nobjectType: secret\nobjectFormat: PEM\nobjectAlias: tls.pem",
    "objectName: tls\nobjectType: cert\nobjectAlias: tls.crt\nobjectVersion: 0123456789abcdef0123456789abcdef",
    "objectName: signing\nobjectType: key\nobjectEncoding: hex",
    "objectName: blob\nobjectType: Secret\nobjectEncoding: utf-8\nfilePermission: 0640"])
for cloud in ["AzureChinaCloud", "AzureUSGovernmentCloud", "AzureStackCloud"]:
    put("provider_class", cls([("cloudName", cloud)]))
put("provider_class", cls([("useVMManagedIdentity", None), ("userAssignedIdentityID", None), ("usePodIdentity", None),
                           ("clientID", "00000000-0000-0000-0000-0000000000AB")]))
put("provider_class", cls([("objects", rich)]))
put("provider_class", cls([("usePodIdentity", "true")]))
for t in [obj01, rich, "array:\n  - |\n    objectName: a\n    objectType: secret\n    objectAliass: b\n",
          "array:\n  - |\n    objectName: a\n    objectType: cert\n    objectFormat: pfx\n",
          "arrays: []\narray:\n  - |\n    objectName: a\n    objectType: secret\n", "array: [", "- objectName: a",
          "items: []", "array: []", "array:\n  - \"objectName: [\"\n",
          "array:\n  - objectName: a\n    objectType: secret\n",
          "array:\n  - |\n    objectName: a\n    objectType: secret\n    objectVersionHistory: 5\n",
          "array:\n  - |\n    objectName: a\n    objectType: secret\n    objectAlias: ..data\n",
          "array:\n  - &a |\n    objectName: a\n    objectType: secret\n  - *a\n"]:
    put("provider_class", t)

# ---- admission: the webhook's review fixtures and pods of the seed
for p in sorted((ROOT / "webhook/tests/data").glob("*.json")):
    put("admission", p.read_bytes())
review = json.loads(read("webhook/tests/data/review-seed-pod.json"))
def review_of(pod):
    r = copy.deepcopy(review)
    r["request"]["object"] = pod
    return json.dumps(r, indent=1)
csi_pod = {"apiVersion": "v1", "kind": "Pod",
    "metadata": {"generateName": "nginx-deployment-5d59d67564-", "namespace": "default", "labels": {"app": "nginx"}},
    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.23.1",
        "volumeMounts": [{"name": "secrets-mount", "mountPath": "/mnt/secrets-store", "readOnly": True},
                         {"name": "default-token-abcde", "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
        "volumes": [{"name": "secrets-mount", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": True,
                     "volumeAttributes": {"secretProviderClass": "kv-aks-csi-weu-01"}}},
                    {"name": "default-token-abcde", "secret": {"secretName": "default-token-abcde"}}],
        "serviceAccountName": "default"}}
put("admission", review_of(csi_pod))
sync_pod = copy.deepcopy(csi_pod)
sync_pod["spec"]["volumes"][0]["csi"]["volumeAttributes"]["secretProviderClass"] = "kv-aks-csi-weu-01-sync"
sync_pod["metadata"]["annotations"] = {P + "inject": "true", P + "secret-provider-class": "kv-aks-csi-weu-01-sync",
                                        P + "containers": "nginx"}
put("admission", review_of(sync_pod))
job_pod = copy.deepcopy(review["request"]["object"])
job_pod["spec"]["restartPolicy"] = "OnFailure"
job_pod["spec"]["initContainers"] = [{"name": "migrate", "image": "migrate:1"}]
job_pod["metadata"]["annotations"][P + "containers"] = "migrate,nginx"
put("admission", review_of(job_pod))

# ---- inject_stream: the seed's manifests and the inject tests' documents
seed02 = read("manifests/examples/seed/02-deployment.yml")
seed11 = read("manifests/examples/seed/11-deployment.yml")
ann_deploy = read("manifests/examples/seed-pod-annotations.yaml")
src = read("webhook/tests/inject.rs")
consts = dict(re.findall(r'const (\w+): &str = r#"(.*?)"#;', src, re.S))
config_map = "# kept as written, comments too\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings   # odd spacing kept\ndata:\n  a: \"1\"\n"
put("inject_stream", f"{seed01}---\n{seed02}")
put("inject_stream", f"{seed10}---\n{seed11}")
put("inject_stream", f"{config_map}---\n{ann_deploy}---\n{consts.get('CRON_JOB', '')}")
put("inject_stream", consts.get("BAD_POD", ann_deploy))
put("inject_stream", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n  annotations:\n    azure.workload.identity/client-id: 00000000-0000-0000-0000-0000000000c2\n---\n" + ann_deploy.replace("    spec:\n", "    spec:\n      serviceAccountName: app\n", 1))
print(sum(1 for _ in OUT.rglob("*") if _.is_file()), "seed files under", OUT.relative_to(ROOT))
