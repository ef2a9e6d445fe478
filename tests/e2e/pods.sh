#!/usr/bin/env bash
# e2e with real pods: a one-node Kubernetes 1.20 cluster in a network
# namespace (tests/cluster/cluster.sh), each store's server at the real host
# names resolved by the cluster's DNS (the Key Vault + Entra ID emulator as
# kv-aks-csi-weu-01.vault.azure.net and login.microsoftonline.com; moto behind
# an HTTPS front as the AWS endpoints, pods-aws.sh; OpenBao with kubernetes
# auth against this cluster's apiserver and a PostgreSQL for its database
# engine as vault.secret-injector-e2e.internal, pods-vault.sh), and the
# webhook. Then the
# Rust real-pod tests (tests/e2e/tests/pods/, one per store, with the checks
# of tests/e2e/src/suite.rs) and the webhook taken down (M6). kubelet runs
# the injected init container and sidecar from a locally built image; the
# pods authenticate with the tokens kubelet mints, which the stand-ins check
# against the cluster's service-account key.
#
#   tests/e2e/pods.sh            # ends with "pods: N passed, M failed"
#   tests/e2e/pods.sh vault      # only the Rust tests whose name has "vault" (and M6)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
# shellcheck source=tests/cluster/lib.sh
source tests/cluster/lib.sh

# shellcheck source=tests/e2e/pods-lib.sh
source tests/e2e/pods-lib.sh
# shellcheck source=tests/e2e/pods-aws.sh
source tests/e2e/pods-aws.sh
# shellcheck source=tests/e2e/pods-vault.sh
source tests/e2e/pods-vault.sh
INTERVAL=10

tests/cluster/install-deps.sh
KUBE_BIN_DIR=$(tests/cluster/build-kube.sh | tail -n1)
export KUBE_BIN_DIR

e2e_static_build
cargo build --quiet -p secret-injector-webhook -p kv-emulator

E2E_NAME=pods
e2e_workdir
cleanup() {
  local rc=$?
  if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
    K get pods -A -o wide 2>/dev/null || true
    K describe pods -l app=nginx 2>/dev/null | tail -40 || true
    for c in secret-injector-init secret-injector; do
      echo "--- $c"; K logs -l app=nginx -c "$c" --tail 20 2>/dev/null || true
    done
    echo "--- emulator"; tail -20 "$W/emulator.log" 2>/dev/null || true
    echo "--- webhook"; tail -20 "$W/webhook.log" 2>/dev/null || true
  fi
  KC_NETNS=${NETNS:-} kc_stop_pid "$W/webhook.pid" "$W/" 5 || true
  KC_NETNS=${NETNS:-} kc_stop_pid "$W/emulator.pid" "$W/" 5 || true
  KC_NETNS=${NETNS:-} kc_stop_pid "$W/moto.pid" "$W/" 5 || true
  vault_down || true
  if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
    echo "--- aws front"; tail -20 "$W/aws-front.log" 2>/dev/null || true
    echo "--- openbao"; tail -20 "$W/openbao.log" 2>/dev/null || true
    echo "--- tests/pods/"; tail -40 "$W/rust-pods.log" 2>/dev/null || true
  fi
  tests/cluster/cluster.sh stop "$W" >/dev/null 2>&1 || true
  e2e_finish "$rc"
}
trap cleanup EXIT
e2e_cluster_up "$W"

# The CRDs before the webhook, whose SecretProviderClass cache lists them.
K apply -k manifests/crds >/dev/null
K wait --for condition=established --timeout=60s \
  crd/secretproviderclasses.secrets-store.csi.x-k8s.io \
  crd/secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io >/dev/null

e2e_emulator "$W"
# AWS in the same cluster (tests/e2e/pods-aws.sh): its front's certificate
# goes into the sidecar image's trust with the emulator's.
aws_certs "$W"
vault_certs "$W"
e2e_images "$W"
# The AWS provider's manifests name their own busybox, the Vault provider's its nginx.
e2e_tag_app k8s.gcr.io/e2e-test-images/busybox:1.29
e2e_tag_app docker.mirror.hashicorp.services/nginxinc/nginx-unprivileged:latest

# The webhook, registered with the apiserver; `auto` asks the apiserver (1.20: classic sidecars).
port=$(kc_free_port)
start_webhook() {
  kc_spawn webhook "$W" "${CARGO_TARGET_DIR:-$repo/target}/debug/webhook" serve --listen "127.0.0.1:$port" \
    --self-signed --self-signed-names 127.0.0.1 --self-signed-ca-out "$W/webhook-ca.pem" \
    --sidecar-image secret-injector-sidecar:e2e --sidecar-image-pull-policy Never \
    --native-sidecar auto --default-rotation-interval "${INTERVAL}s" \
    --vault-address "https://$VAULT_HOST:$VAULT_PORT" \
    --allowed-store-hosts "*.vault.azure.net,*.vault.azure.cn,*.vault.usgovcloudapi.net,*.vault.microsoftazure.de,$VAULT_HOST:$VAULT_PORT"
  for _ in $(seq 1 600); do # ready once both watches have listed
    in_ns curl -fsS --cacert "$W/webhook-ca.pem" "https://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
}
# The three entries of manifests/base/webhook.yaml, at the process's URL.
register_webhook() {
  local entry ca
  ca=$(base64 -w0 "$W/webhook-ca.pem")
  entry() { # name path failurePolicy selector-yaml
    cat <<ENTRY
- name: $1
  admissionReviewVersions: ["v1"]
  clientConfig: {url: "https://127.0.0.1:$port$2", caBundle: $ca}
  rules: [{apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["pods"]}]
  $4
  sideEffects: None
  reinvocationPolicy: IfNeeded
  failurePolicy: $3
  timeoutSeconds: 5
ENTRY
  }
  {
    printf 'apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: secret-injector}\nwebhooks:\n'
    entry csi.secret-injector.io /mutate-csi Fail 'namespaceSelector: {matchLabels: {secret-injector.io/csi-compat: enabled}}'
    entry label.secret-injector.io /mutate Fail 'objectSelector: {matchLabels: {secret-injector.io/inject: "true"}}'
    entry inject.secret-injector.io /mutate Ignore 'objectSelector: {matchExpressions: [{key: secret-injector.io/inject, operator: NotIn, values: ["true"]}]}'
  } | K apply -f - >/dev/null
}
start_webhook
register_webhook
sleep 2 # the apiserver picks webhook configurations up asynchronously

# ------------------------------------------------------ the Rust e2e library
# tests/e2e/tests/pods/: per store, its CSI provider's manifests unchanged
# (Azure: the seed's, in `default`, which they name; AWS: its own namespace),
# the shared checks of tests/e2e/src/suite.rs, and each store's own.
aws_up
vault_started=$(date +%s)
vault_up
echo "pods: (Vault's PostgreSQL, names and address: $(($(date +%s) - vault_started)) s)"
cargo test --quiet -p e2e --test pods --no-run 2>/dev/null
rust_pods() {
  E2E_WORKDIR=$W E2E_INTERVAL=$INTERVAL E2E_VAULT_ADMIN="https://$VAULT_IP:$VAULT_PORT" E2E_AZURE_VAULT=$VAULT E2E_AZURE_TENANT=$TENANT \
    E2E_AZURE_CLIENT=$CLIENT E2E_AZURE_SP_CLIENT=$SP_CLIENT E2E_AZURE_SP_SECRET=$SP_SECRET \
    in_ns cargo test --quiet -p e2e --test pods -- \
    --ignored --test-threads 1 --nocapture ${1:+"$1"} 2>&1 | tee "$W/rust-pods.log" | grep '^pods: '
  grep -q '^test result: ok' "$W/rust-pods.log"
}
check "the Rust real-pod tests (tests/e2e/tests/pods/)" rust_pods "${1:-}"

# ----------------------------------------------- the webhook down (M6)
# M6: opting in by label is failurePolicy Fail, so with the webhook down a
# labelled pod is refused rather than started without its files; a pod that
# asked for nothing still starts (the annotation entry is Ignore, and the
# label entry's objectSelector never sends it).
labelled_pod() {
  cat <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $1
  labels: {secret-injector.io/inject: "true"}
  annotations:
    secret-injector.io/secret-db-user: azure://$VAULT/secrets/db-user
    secret-injector.io/tenant-id: $TENANT
    secret-injector.io/client-id: $CLIENT
spec:
  containers: [{name: app, image: nginx:1.23.1}]
YAML
}
KC_NETNS=$NETNS kc_stop_pid "$W/webhook.pid" "$W/" 5
refused_while_down() { ! labelled_pod labelled-down | K apply -f - >"$W/down.out" 2>&1 && grep -q 'failed calling webhook' "$W/down.out"; }
check "m6: with the webhook down, a pod labelled for opt-in is refused" refused_while_down
# In a namespace without csi-compat (whose own entry is Fail for every pod).
K create namespace optin-off >/dev/null
K -n optin-off run plain-down --image=nginx:1.23.1 --restart=Never >/dev/null
check "m6: with the webhook down, a pod without opt-in still starts" \
  K -n optin-off wait --for=condition=Ready pod/plain-down --timeout=120s
start_webhook
register_webhook
sleep 2
labelled_pod labelled-up | K apply -f - >/dev/null
check "m6: with the webhook back, the labelled pod is injected and starts" \
  K wait --for=condition=Ready pod/labelled-up --timeout=180s
check "m6: the labelled pod (no inject annotation) carries the injected status" \
  test "$(K get pod labelled-up -o jsonpath='{.metadata.annotations.secret-injector\.io/status}')" = injected
K delete pod labelled-up --wait=false >/dev/null
K delete namespace optin-off --wait=false >/dev/null
