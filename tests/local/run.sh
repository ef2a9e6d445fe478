#!/usr/bin/env bash
# The main job on loopback: the Key Vault + Entra ID emulator seeded with the
# seed's secrets, the webhook over TLS, the seed's pod (annotation form) sent
# through it as the apiserver would, then the injected init container and
# sidecar run as local processes with a local directory as the volume. You see
# the files, a rotation, and the new version.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
work=$(mktemp -d /tmp/secret-injector-local.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}" $(cat "$work"/*.pid 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
say() { printf '\n== %s\n' "$*"; }

VAULT=kv-aks-csi-weu-01
TENANT=00000000-0000-0000-0000-00000000000a
CLIENT=00000000-0000-0000-0000-000000000001
SUBJECT=system:serviceaccount:default:default

cargo build --quiet -p secret-injector-webhook -p secret-injector-sidecar -p kv-emulator
bin=${CARGO_TARGET_DIR:-$repo/target}/debug

# The cluster's service-account signing key stands in for kubelet's: the
# emulator trusts its public half for workload identity, as Entra ID trusts
# a cluster's OIDC issuer.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/sa.key" 2>/dev/null
openssl pkey -in "$work/sa.key" -pubout -out "$work/sa.pub"

"$bin/kv-emulator" --listen 127.0.0.1:0 --ca-out "$work/ca.pem" --default-vault "$VAULT" \
  --tenant "$TENANT" --authority-host https://login.microsoftonline.com \
  --federated-key "$work/sa.pub" --federated-subject "$CLIENT=$SUBJECT" \
  --extra-name '*.vault.azure.net' --extra-name login.microsoftonline.com \
  --seed "$VAULT/db-user=administrator" --seed "$VAULT/db-pass=mysupersecretpassword" \
  >"$work/emulator.out" 2>"$work/emulator.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -q '^listening on' "$work/emulator.out" 2>/dev/null && break; sleep 0.1; done
emulator=$(sed -n 's/^listening on //p' "$work/emulator.out")
port=${emulator##*:}
echo "Key Vault + Entra ID emulator: $emulator (vault $VAULT holds db-user, db-pass)"

wport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/webhook" serve --listen "127.0.0.1:$wport" --self-signed --self-signed-names 127.0.0.1 \
  --self-signed-ca-out "$work/webhook-ca.pem" --native-sidecar never 2>"$work/webhook.log" &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS --cacert "$work/webhook-ca.pem" "https://127.0.0.1:$wport/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "webhook: https://127.0.0.1:$wport"

say "The seed's pod in annotation form (rotation shortened to 10s for this demo):"
sed 's/"secret-injector.io\/rotation-interval": "1m"/"secret-injector.io\/rotation-interval": "10s"/' \
  webhook/tests/data/review-seed-pod.json >"$work/review.json"
python3 - "$work/review.json" <<'PY'
import json, sys
for k, v in sorted(json.load(open(sys.argv[1]))["request"]["object"]["metadata"]["annotations"].items()):
    print(f"  {k}: {v}")
PY

curl -fsS --cacert "$work/webhook-ca.pem" -H 'Content-Type: application/json' \
  --data-binary @"$work/review.json" "https://127.0.0.1:$wport/mutate" >"$work/answer.json"

say "What the webhook added (JSONPatch):"
# Writes the injected containers' command lines and env as shell files.
python3 - "$work/answer.json" "$work" <<'PY'
import base64, json, shlex, sys
answer = json.load(open(sys.argv[1]))["response"]
work = sys.argv[2]
for op in json.loads(base64.b64decode(answer["patch"])):
    values = op["value"] if isinstance(op["value"], list) else [op["value"]]
    for value in values:
        name = value.get("name", value) if isinstance(value, dict) else value
        print(f"  {op['op']} {op['path']}: {name}")
        if isinstance(value, dict) and "args" in value:
            env = {e["name"]: e["value"] for e in value.get("env", []) if "value" in e}
            with open(f"{work}/{value['name']}.env", "w") as f:
                for k, v in env.items():
                    f.write(f"export {k}={shlex.quote(v)}\n")
            with open(f"{work}/{value['name']}.args", "w") as f:
                f.write(" ".join(shlex.quote(a) for a in value["args"]))
PY

# kubelet would mint this token into the projected volume; here we sign it.
python3 - "$work" "$CLIENT" "$SUBJECT" <<'PY'
import base64, json, subprocess, sys, time
work, client, subject = sys.argv[1:]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
header = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
claims = b64(json.dumps({"iss": "https://kubernetes.default.svc", "sub": subject,
                         "aud": ["api://AzureADTokenExchange"], "iat": now, "exp": now + 3600}).encode())
signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", f"{work}/sa.key"],
                           input=f"{header}.{claims}".encode(), capture_output=True, check=True).stdout
open(f"{work}/azure-identity-token", "w").write(f"{header}.{claims}.{b64(signature)}")
PY

# The injected containers, as processes: the volume is a local directory; the
# real host names resolve to the emulator, whose CA we trust.
volume=$work/volume
mkdir -p "$volume"
sidecar_flags=(--dir "$volume" --ca-bundle "$work/ca.pem"
  --resolve "$VAULT.vault.azure.net=127.0.0.1:$port,login.microsoftonline.com=127.0.0.1:$port")
# Runs one injected container's command, in a subshell.
run_container() (
  name=$1
  shift
  # shellcheck disable=SC1090
  source "$work/$name.env"
  export AZURE_FEDERATED_TOKEN_FILE=$work/azure-identity-token
  read -r -a args <"$work/$name.args" || true  # no trailing newline
  echo "$BASHPID" >"$work/$name.pid"  # exec keeps the pid: cleanup stops it
  exec "$bin/secret-injector-sidecar" "${args[@]}" "${sidecar_flags[@]}" "$@"
)

say "Init container (secret-injector-init): fetch once, then the app may start"
run_container secret-injector-init 2>"$work/init.log"
show() {
  for f in db-user db-pass; do printf '  %s/%s = %s\n' "$volume" "$f" "$(cat "$volume/$f")"; done
  python3 - "$volume/..secret-injector-status.json" <<'PY'
import json, sys
for name, state in json.load(open(sys.argv[1]))["objects"].items():
    print(f"  {name}: version {state.get('version')}, last success {state.get('lastSuccess')}")
PY
}
show

say "Sidecar (secret-injector): re-polls every 10s ± 10%"
run_container secret-injector 2>"$work/sidecar.log" &
pids+=($!)

new_version=$(curl -fsS --cacert "$work/ca.pem" -H 'Content-Type: application/json' \
  -d '{"value":"rotated-password-2"}' "$emulator/admin/vaults/$VAULT/secrets/db-pass" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
echo "  rotated db-pass in the vault: new version $new_version"
start=$(date +%s)
for _ in $(seq 1 300); do
  [ "$(cat "$volume/db-pass")" = rotated-password-2 ] && break
  sleep 0.1
done
echo "  the file changed after $(( $(date +%s) - start ))s:"
show
[ "$(cat "$volume/db-pass")" = rotated-password-2 ] || { echo "rotation did not arrive" >&2; exit 1; }

say "Logs: $work/{emulator,webhook,init,sidecar}.log"
