#!/usr/bin/env bash
# End-to-end check of the cluster harness itself: start -> images -> a
# Deployment (init container fills a memory emptyDir, the stand-in nginx:1.23.1
# prints it) -> checks -> stop -> nothing left. Exits non-zero on any failure.
#
#   tests/cluster/smoke.sh [--sidecar BIN] [--keep] <workdir>
#
# Checks: `kubectl logs` shows the file and DB_USER; /mnt/secrets-store is a
# tmpfs; a projected token (audience api://AzureADTokenExchange) verifies
# against <workdir>/cluster/sa.pub; a <workdir>/dns-hosts name resolves in a
# pod and other names are NXDOMAIN; the `kubernetes` Service answers from a
# pod. With --sidecar, the sidecar image runs `--help` as user 65532.
# --keep leaves the cluster running (stop it with cluster.sh stop <workdir>).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
sidecar="" keep=0
while [ $# -gt 1 ]; do
  case $1 in
    --sidecar) sidecar=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2; }
mkdir -p "$1"
W=$(cd "$1" && pwd)

say() { echo "smoke: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
K() { "$HERE/in-cluster-ns.sh" "$W" kubectl "$@"; }
elapsed() { echo $(( $(date +%s) - $1 )); }

cleanup() {
  local rc=$?
  if [ "$keep" = 0 ] || [ "$rc" != 0 ]; then
    [ "$rc" = 0 ] || K get pods -o wide >&2 2>/dev/null || true
    "$HERE/cluster.sh" stop "$W" || true
    if ! "$HERE/cluster.sh" leftovers "$W"; then
      say "FAIL: leftovers after stop"
      rc=1
    else
      say "stopped; nothing left"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT

echo "10.77.0.1 kv-aks-csi-weu-01.vault.azure.net login.microsoftonline.com" >"$W/dns-hosts"

t=$(date +%s)
"$HERE/cluster.sh" start "$W" >/dev/null
say "cluster started in $(elapsed "$t") s"

t=$(date +%s)
args=()
[ -z "$sidecar" ] || args=(--sidecar "$sidecar" --extra-ca "$W/cluster/ca.pem")
mapfile -t tars < <("$REPO/tests/images/build.sh" "${args[@]}" "$W/images")
"$HERE/cluster.sh" import "$W" "${tars[@]}" 2>/dev/null
say "images built and imported in $(elapsed "$t") s: ${tars[*]##*/}"

t=$(date +%s)
K apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: smoke
spec:
  replicas: 1
  selector:
    matchLabels: {app: smoke}
  template:
    metadata:
      labels: {app: smoke}
    spec:
      securityContext: {runAsUser: 65534, runAsGroup: 65534, runAsNonRoot: true}
      initContainers:
      - name: init
        image: nginx:1.23.1
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "echo s3cr3t-from-init >/mnt/secrets-store/db-password"]
        volumeMounts:
        - {name: secrets-store, mountPath: /mnt/secrets-store}
      containers:
      - name: app
        image: nginx:1.23.1
        imagePullPolicy: IfNotPresent
        env:
        - {name: DB_USER, value: appuser}
        volumeMounts:
        - {name: secrets-store, mountPath: /mnt/secrets-store, readOnly: true}
        - {name: azure-identity-token, mountPath: /var/run/secrets/azure/tokens, readOnly: true}
      volumes:
      - name: secrets-store
        emptyDir: {medium: Memory}
      - name: azure-identity-token
        projected:
          sources:
          - serviceAccountToken:
              path: azure-identity-token
              audience: api://AzureADTokenExchange
              expirationSeconds: 3600
EOF
K rollout status deploy/smoke --timeout=120s >/dev/null || fail "deployment not available"
say "deployment available in $(elapsed "$t") s"

# 1. The app prints the file the init container wrote, and its env.
for _ in $(seq 1 20); do
  logs=$(K logs deploy/smoke -c app --tail=20 2>/dev/null || true)
  grep -q 'file db-password: s3cr3t-from-init' <<<"$logs" && break
  sleep 0.5
done
grep -q 'file db-password: s3cr3t-from-init' <<<"$logs" || fail "logs lack the file: $logs"
grep -q 'env DB_USER=appuser' <<<"$logs" || fail "logs lack DB_USER: $logs"
say "ok: kubectl logs: $(grep -m1 'db-password' <<<"$logs")"

# 2. Memory emptyDir is a tmpfs.
K exec deploy/smoke -c app -- cat /proc/mounts 2>/dev/null | grep -E '^tmpfs /mnt/secrets-store tmpfs ' >/dev/null ||
  fail "/mnt/secrets-store is not a tmpfs"
say "ok: tmpfs at /mnt/secrets-store"

# 3. Projected token: audience, subject, signature by sa.pub.
tok=$(K exec deploy/smoke -c app -- cat /var/run/secrets/azure/tokens/azure-identity-token 2>/dev/null)
python3 - "$tok" "$W/cluster/sa.pub" <<'PY' || fail "token check"
import base64, json, subprocess, sys, tempfile
tok, pub = sys.argv[1].strip(), sys.argv[2]
h, p, s = tok.split(".")
d = lambda x: base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
claims = json.loads(d(p))
assert json.loads(d(h))["alg"] == "RS256"
assert claims["aud"] == ["api://AzureADTokenExchange"], claims["aud"]
assert claims["sub"] == "system:serviceaccount:default:default", claims["sub"]
with tempfile.TemporaryDirectory() as t:
    open(t + "/data", "w").write(h + "." + p)
    open(t + "/sig", "wb").write(d(s))
    r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", pub, "-signature",
                        t + "/sig", t + "/data"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
PY
say "ok: projected token aud=api://AzureADTokenExchange verifies against sa.pub"

# 4. DNS: dns-hosts names resolve, the rest is NXDOMAIN.
out=$(K exec deploy/smoke -c app -- nslookup kv-aks-csi-weu-01.vault.azure.net 2>/dev/null || true)
grep -q 'Address: 10.77.0.1$' <<<"$out" || fail "dns-hosts name not resolved: $out"
out=$(K exec deploy/smoke -c app -- nslookup example.com 2>/dev/null || true)
grep -q NXDOMAIN <<<"$out" || fail "example.com not NXDOMAIN: $out"
say "ok: DNS kv-aks-csi-weu-01.vault.azure.net -> 10.77.0.1, example.com NXDOMAIN"

# 5. The `kubernetes` Service (DNAT to the apiserver) from a pod.
out=$(K exec deploy/smoke -c app -- wget -q -O- --no-check-certificate https://10.0.0.1/readyz 2>/dev/null || true)
[ "$out" = ok ] || fail "https://10.0.0.1/readyz from a pod: '$out'"
say "ok: https://10.0.0.1:443 reaches the apiserver from a pod"

# 6. The sidecar image, if given.
if [ -n "$sidecar" ]; then
  K apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: sidecar-help
spec:
  restartPolicy: Never
  containers:
  - name: sidecar
    image: secret-injector-sidecar:e2e
    imagePullPolicy: IfNotPresent
    args: ["--help"]
EOF
  for _ in $(seq 1 60); do
    phase=$(K get pod sidecar-help -o jsonpath='{.status.phase}' 2>/dev/null || true)
    case $phase in Succeeded|Failed) break ;; esac
    sleep 0.5
  done
  [ "$phase" = Succeeded ] || fail "sidecar pod: phase '$phase'"
  K logs sidecar-help 2>/dev/null | grep -q Usage || fail "sidecar --help printed no usage"
  cid=$(K get pod sidecar-help -o jsonpath='{.status.containerStatuses[0].containerID}')
  # shellcheck disable=SC2016 # expanded by the inner sh, from the cluster env
  uid=$("$HERE/in-cluster-ns.sh" "$W" sh -c 'ctr --address "$CONTAINERD_SOCK" -n k8s.io c info "$1"' _ "${cid#containerd://}" |
    jq -r '.Spec.process.user.uid')
  [ "$uid" = 65532 ] || fail "sidecar ran as uid '$uid'"
  say "ok: secret-injector-sidecar:e2e runs (--help) as 65532"
fi

say "all checks passed"
