#!/usr/bin/env bash
# e2e of the operator's install: `kubectl apply -k` of manifests/base (through
# tests/e2e/install: local images, a 2 s certificate check) into the one-node
# cluster. The webhook runs as 2 pods from a locally built image with
# self-managed TLS; the apiserver reaches it through its Service
# (--enable-aggregator-routing). Then: one CA, the caBundle written, an
# annotated pod injected and running; a forced renewal and a deleted webhook
# pod under a steady stream of pod creations fail none of them.
#
#   tests/e2e/install.sh         # ends with "install: N passed, M failed"
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
# shellcheck source=tests/cluster/lib.sh
source tests/cluster/lib.sh
# shellcheck source=tests/e2e/pods-lib.sh
source tests/e2e/pods-lib.sh

tests/cluster/install-deps.sh
KUBE_BIN_DIR=$(tests/cluster/build-kube.sh | tail -n1)
export KUBE_BIN_DIR
e2e_static_build --webhook
cargo build --quiet -p kv-emulator

E2E_NAME=install
e2e_workdir
cleanup() {
  local rc=$?
  if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
    K get pods -A -o wide 2>/dev/null || true
    K -n secret-injector describe pods 2>/dev/null | tail -30 || true
    K -n secret-injector logs -l app.kubernetes.io/name=secret-injector --tail 30 --prefix 2>/dev/null || true
  fi
  [ -z "${stream_pid:-}" ] || kill "$stream_pid" 2>/dev/null || true
  KC_NETNS=${NETNS:-} kc_stop_pid "$W/emulator.pid" "$W/" 5 || true
  tests/cluster/cluster.sh stop "$W" >/dev/null 2>&1 || true
  e2e_finish "$rc"
}
trap cleanup EXIT

e2e_cluster_up "$W"
e2e_emulator "$W"
e2e_images "$W" --webhook "${CARGO_TARGET_DIR:-$repo/target}/x86_64-unknown-linux-gnu/release/webhook"
# Kubernetes sets this label itself from 1.21; the webhook configuration
# relies on it to leave kube-system alone (README, Deploy).
K label namespace kube-system kubernetes.io/metadata.name=kube-system --overwrite >/dev/null

# The operator's one command (1.20 still needs policy/v1beta1 for the PDB).
kubectl kustomize tests/e2e/install |
  sed 's|^apiVersion: policy/v1$|apiVersion: policy/v1beta1|' | K apply -f - >/dev/null
webhook_pods() { K -n secret-injector get pods -l app.kubernetes.io/name=secret-injector -o jsonpath='{.items[*].metadata.name}'; }
rolled_out() { K -n secret-injector rollout status deployment/secret-injector --timeout=180s >/dev/null; }
check "kubectl apply -k: 2 webhook replicas become Ready" rolled_out

secret_ca() { K -n secret-injector get secret secret-injector-tls -o jsonpath='{.data.ca\.crt}'; }
bundle_of() { K get mutatingwebhookconfiguration secret-injector -o jsonpath="{.webhooks[$1].clientConfig.caBundle}"; }
one_ca() { [ "$(secret_ca | base64 -d | grep -c 'BEGIN CERTIFICATE')" = 1 ]; }
created_once() {
  local n=0 p
  for p in $(webhook_pods); do
    n=$((n + $(K -n secret-injector logs "$p" | grep -c 'created a CA and a serving certificate' || true)))
  done
  [ "$n" = 1 ]
}
check "two replicas started together end with one CA" one_ca
check "exactly one replica created it" created_once
check "the caBundle of the three webhooks is the Secret's CA" \
  sh -c "[ -n \"\$1\" ] && [ \"\$1\" = \"\$2\" ] && [ \"\$1\" = \"\$3\" ] && [ \"\$1\" = \"\$4\" ]" _ "$(secret_ca)" "$(bundle_of 0)" "$(bundle_of 1)" "$(bundle_of 2)"

# An annotated pod: the apiserver calls the webhook through its Service.
K apply -f manifests/examples/seed-pod-annotations.yaml >/dev/null
pod_ready() { pods_ready app=nginx; }
check "an annotated pod is injected and runs" pod_ready
pod=$(K get pods -l app=nginx -o jsonpath='{.items[0].metadata.name}')
check "it has the init container and the sidecar" \
  test "$(K get pod "$pod" -o jsonpath='{.spec.initContainers[*].name} {.spec.containers[*].name}')" = \
  "secret-injector-init nginx secret-injector"
check "the app reads its secret" test "$(K exec "$pod" -c nginx -- cat /mnt/secrets-store/db-user)" = administrator

# A steady stream of pod creations (server-side dry run: admitted, not run),
# each checked for the injection. Labelled for opt-in, so a webhook failure
# refuses the creation (failurePolicy Fail); either way it counts as failed.
stream() {
  local i=0
  while [ ! -e "$W/stream.stop" ]; do
    i=$((i + 1))
    if K create --dry-run=server -o jsonpath='{.spec.initContainers[0].name}' -f - <<YAML 2>>"$W/stream.err" | grep -q secret-injector-init; then
apiVersion: v1
kind: Pod
metadata:
  name: stream-$i
  labels: {secret-injector.io/inject: "true"}
  annotations:
    secret-injector.io/secret-db-user: azure://$VAULT/secrets/db-user
    secret-injector.io/client-id: $CLIENT
spec:
  containers: [{name: app, image: nginx:1.23.1}]
YAML
      echo ok >>"$W/stream.log"
    else
      echo "failed $(date +%T.%N)" >>"$W/stream.log"
    fi
  done
}
: >"$W/stream.log"
stream &
stream_pid=$!
sleep 3

# Forced renewal: both replicas serve the new certificate (same CA).
K -n secret-injector annotate secret secret-injector-tls "secret-injector.io/renew=$(date +%s)" --overwrite >/dev/null
renewed_everywhere() {
  local p
  for _ in $(seq 1 30); do
    local all=1
    for p in $(webhook_pods); do
      K -n secret-injector logs "$p" | grep -q 'serving the renewed certificate' || all=0
    done
    [ "$all" = 1 ] && return 0
    sleep 1
  done
  return 1
}
check "a forced renewal reaches both replicas" renewed_everywhere
check "the renewal kept the CA" one_ca
sleep 3

# One webhook pod deleted: the other answers while the Deployment replaces it.
K -n secret-injector delete pod "$(webhook_pods | cut -d' ' -f1)" --wait=false >/dev/null
sleep 2
check "the Deployment replaces the deleted replica" rolled_out
sleep 3
touch "$W/stream.stop"
wait "$stream_pid" || true
stream_pid=
ok=$(grep -c '^ok' "$W/stream.log" || true)
bad=$(grep -c '^failed' "$W/stream.log" || true)
echo "install: $ok pod creations during renewal and replica deletion, $bad not injected"
check "the stream ran" test "$ok" -gt 20
check "no pod creation failed during renewal and replica deletion" test "$bad" = 0
[ "$bad" = 0 ] || { grep failed "$W/stream.log" | head; tail -5 "$W/stream.err"; }
