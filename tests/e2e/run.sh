#!/usr/bin/env bash
# End-to-end: a real kube-apiserver 1.20 (built from Debian's source, cached),
# etcd, and the webhook over TLS on loopback; then the e2e test crate.
#
#   tests/e2e/run.sh            # installs what is missing, builds, runs
#
# Logs stay in $E2E_WORKDIR for a post-mortem (default: a fresh temp dir,
# removed when the run passes).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
# shellcheck source=tests/cluster/lib.sh
source tests/cluster/lib.sh

tests/cluster/install-deps.sh
KUBE_BIN_DIR=$(tests/cluster/build-kube.sh | tail -n1)
export KUBE_BIN_DIR

workdir=${E2E_WORKDIR:-$(mktemp -d /tmp/secret-injector-e2e.XXXXXX)}
mkdir -p "$workdir"
cleanup() {
  local rc=$?
  kc_stop_pid "$workdir/webhook.pid" "$workdir/" 10 || true
  kc_stop "$workdir/cluster" || true
  kc_workdir_done "$workdir" "$rc" e2e
}
trap cleanup EXIT

if ! kc_start "$workdir/cluster"; then
  # Not seen since kc_pid_alive stopped taking a mid-exec process for a dead
  # one; kept so one bad start does not fail the whole run.
  echo "e2e: the apiserver did not start; starting it once more"
  kc_stop "$workdir/cluster" || true
  rm -rf "$workdir/cluster"
  kc_start "$workdir/cluster"
fi
# shellcheck disable=SC1091
set -a; source "$workdir/cluster/env"; set +a

# The CRDs first: the webhook's watch of SecretProviderClasses starts with them.
kubectl apply -k manifests/crds >/dev/null
kubectl wait --for condition=established --timeout=60s crd/secretproviderclasses.secrets-store.csi.x-k8s.io >/dev/null

cargo build --quiet -p secret-injector-webhook --bin webhook
port=$(kc_free_port)
# auto: the webhook asks the apiserver its version (1.20: classic sidecars).
kc_spawn webhook "$workdir" "${CARGO_TARGET_DIR:-$repo/target}/debug/webhook" serve \
  --listen "127.0.0.1:$port" --self-signed --self-signed-names 127.0.0.1 \
  --self-signed-ca-out "$workdir/webhook-ca.pem" --native-sidecar auto
for _ in $(seq 1 600); do  # ready once both watches have listed
  curl -fsS --cacert "$workdir/webhook-ca.pem" "https://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kc_pid_alive "$workdir/webhook.pid" "$workdir/" || { cat "$workdir/webhook.log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS --cacert "$workdir/webhook-ca.pem" "https://127.0.0.1:$port/readyz" >/dev/null

export E2E_WEBHOOK_URL="https://127.0.0.1:$port/mutate"
export E2E_WEBHOOK_CA="$workdir/webhook-ca.pem"
# For the self-managed TLS test, which starts its own replicas.
export E2E_WEBHOOK_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/webhook"
status=0
# tests/pods/ needs real pods: tests/e2e/pods.sh runs it.
cargo test -p e2e --test admission --test managed_tls -- --ignored --test-threads 2 || status=$?

# The kustomize base, applied as an operator would, after the tests (its
# webhook configuration would otherwise see their pods). The apiserver
# validates every object; nothing runs here (no nodes). 1.20 predates
# policy/v1, which current clusters require.
# The Helm chart: lint, a render per TLS mode, each validated by the
# apiserver (server-side dry run; cert-manager's own kinds need cert-manager).
if tests/helm/run.sh "$workdir/helm" >"$workdir/helm.log" 2>&1; then
  grep -c "^helm: ok" "$workdir/helm.log" | xargs -I{} echo "e2e: ok   helm lint and renders ({} checks)"
  kubectl create namespace secret-injector >/dev/null
  for mode in selfManaged provided certManager; do
    if sed 's|^apiVersion: policy/v1$|apiVersion: policy/v1beta1|' "$workdir/helm/$mode.yaml" |
      kubectl apply --dry-run=server -f - >"$workdir/helm-$mode.log" 2>&1; then
      echo "e2e: ok   the Helm chart ($mode TLS) validates on a real apiserver"
    else
      echo "e2e: FAIL the Helm chart ($mode TLS) does not validate:" >&2
      cat "$workdir/helm-$mode.log" >&2
      status=1
    fi
  done
else
  echo "e2e: FAIL helm lint or render:" >&2
  cat "$workdir/helm.log" >&2
  status=1
fi

echo "e2e: kubectl apply -k manifests/base"
if kubectl kustomize manifests/base | sed 's|^apiVersion: policy/v1$|apiVersion: policy/v1beta1|' |
  kubectl apply -f - >"$workdir/base-apply.log" 2>&1 &&
  kubectl -n secret-injector get deployment/secret-injector service/secret-injector \
    poddisruptionbudget/secret-injector serviceaccount/secret-injector >/dev/null &&
  kubectl get mutatingwebhookconfiguration secret-injector >/dev/null; then
  echo "e2e: ok   the kustomize base applies to a real apiserver ($(grep -c . "$workdir/base-apply.log") objects)"
else
  echo "e2e: FAIL the kustomize base does not apply:" >&2
  cat "$workdir/base-apply.log" >&2
  status=1
fi
if [ $status -ne 0 ]; then
  echo "--- webhook log ($workdir/webhook.log)" >&2
  tail -n 50 "$workdir/webhook.log" >&2
fi
exit $status
