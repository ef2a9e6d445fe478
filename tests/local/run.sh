#!/usr/bin/env bash
# The main job on loopback: the webhook over TLS, the seed's pod (annotation
# form) sent through it as the apiserver would, and what comes back.
#
# The sidecar and the Key Vault emulator join this script with the sidecar
# work; until then it stops at the injected pod.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
work=$(mktemp -d /tmp/secret-injector-local.XXXXXX)
pid=
cleanup() { [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; }
trap cleanup EXIT

cargo build --quiet -p secret-injector-webhook --bin webhook
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/debug/webhook serve --listen "127.0.0.1:$port" --self-signed \
  --self-signed-names 127.0.0.1 --self-signed-ca-out "$work/ca.pem" \
  --native-sidecar never 2>"$work/webhook.log" &
pid=$!
for _ in $(seq 1 100); do
  curl -fsS --cacert "$work/ca.pem" "https://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "webhook: https://127.0.0.1:$port (log: $work/webhook.log)"

echo
echo "== The seed's pod, as the apiserver sends it (annotations):"
python3 - webhook/tests/data/review-seed-pod.json <<'PY'
import json, sys
review = json.load(open(sys.argv[1]))
for k, v in sorted(review["request"]["object"]["metadata"]["annotations"].items()):
    print(f"  {k}: {v}")
PY

curl -fsS --cacert "$work/ca.pem" -H 'Content-Type: application/json' \
  --data-binary @webhook/tests/data/review-seed-pod.json \
  "https://127.0.0.1:$port/mutate" >"$work/answer.json"

echo
echo "== The webhook's answer, its JSONPatch decoded:"
python3 - "$work/answer.json" <<'PY'
import base64, json, sys
answer = json.load(open(sys.argv[1]))["response"]
print(f"  allowed: {answer['allowed']}  patchType: {answer.get('patchType')}")
for op in json.loads(base64.b64decode(answer["patch"])):
    value = op["value"]
    if isinstance(value, dict) and "name" in value:
        what = value["name"]
        if "args" in value:
            what += f"  ({' '.join(value['command'] + value['args'])})"
    elif isinstance(value, list):
        what = ", ".join(v.get("name", "?") for v in value)
    else:
        what = value
    print(f"  {op['op']} {op['path']}: {what}")
PY

echo
echo "== A typo in an annotation, refused with what was meant:"
sed 's/rotation-interval/rotation-intreval/' webhook/tests/data/review-seed-pod.json |
  curl -fsS --cacert "$work/ca.pem" -H 'Content-Type: application/json' --data-binary @- \
    "https://127.0.0.1:$port/mutate" |
  python3 -c 'import json,sys; print("  " + json.load(sys.stdin)["response"]["status"]["message"])'

echo
echo "== Metrics:"
curl -fsS --cacert "$work/ca.pem" "https://127.0.0.1:$port/metrics" | grep -E '^secret_injector_admission_(requests|injections)_total' | sed 's/^/  /'
