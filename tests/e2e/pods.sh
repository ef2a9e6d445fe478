#!/usr/bin/env bash
# e2e with real pods: a one-node Kubernetes 1.20 cluster in a network
# namespace (tests/cluster/cluster.sh), the Key Vault + Entra ID emulator at
# the real host names (kv-aks-csi-weu-01.vault.azure.net,
# login.microsoftonline.com, resolved by the cluster's DNS), the webhook, and
# the seed's Deployment in annotation form. kubelet runs the injected init
# container and sidecar from a locally built image; workload identity uses
# the token kubelet mints, which the emulator checks against the cluster's
# service-account key. Then AWS in the same cluster (pods-aws.sh): moto
# behind an HTTPS front at the real AWS host names, IRSA with kubelet's token,
# the AWS provider's own manifests.
#
#   tests/e2e/pods.sh            # ends with "pods: N passed, M failed"
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
# shellcheck source=tests/cluster/lib.sh
source tests/cluster/lib.sh

# shellcheck source=tests/e2e/pods-lib.sh
source tests/e2e/pods-lib.sh
# shellcheck source=tests/e2e/pods-aws.sh
source tests/e2e/pods-aws.sh
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
  if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
    echo "--- aws front"; tail -20 "$W/aws-front.log" 2>/dev/null || true
    echo "--- tests/pods.rs"; tail -40 "$W/rust-pods.log" 2>/dev/null || true
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
e2e_images "$W"
# The AWS provider's manifests name their own busybox.
e2e_tag_app k8s.gcr.io/e2e-test-images/busybox:1.29

# The webhook, registered with the apiserver; `auto` asks the apiserver (1.20: classic sidecars).
port=$(kc_free_port)
start_webhook() {
  kc_spawn webhook "$W" "${CARGO_TARGET_DIR:-$repo/target}/debug/webhook" serve --listen "127.0.0.1:$port" \
    --self-signed --self-signed-names 127.0.0.1 --self-signed-ca-out "$W/webhook-ca.pem" \
    --sidecar-image secret-injector-sidecar:e2e --sidecar-image-pull-policy Never \
    --native-sidecar auto --default-rotation-interval "${INTERVAL}s"
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

# The seed's Deployment in annotation form, rotation shortened for the test.
sed "s|rotation-interval: 1m|rotation-interval: ${INTERVAL}s|" manifests/examples/seed-pod-annotations.yaml |
  K apply -f - >/dev/null
pod_ready() { pods_ready app=nginx; }
check "the injected pod starts (init container fetched, sidecar running)" pod_ready
pod=$(K get pods -l app=nginx -o jsonpath='{.items[0].metadata.name}')
app_reads() { K exec "$pod" -c nginx -- cat "/mnt/secrets-store/$1"; }

check "the pod has the init container and the sidecar" \
  test "$(K get pod "$pod" -o jsonpath='{.spec.initContainers[*].name} {.spec.containers[*].name}')" = \
  "secret-injector-init nginx secret-injector"
check "the volume is a real tmpfs" sh -c "tests/cluster/in-cluster-ns.sh '$W' kubectl exec '$pod' -c nginx -- cat /proc/mounts | grep -q ' /mnt/secrets-store tmpfs '"
check "the app's output shows db-user" sh -c "tests/cluster/in-cluster-ns.sh '$W' kubectl logs '$pod' -c nginx --tail 20 | grep -q 'file db-user: administrator'"
check "the app's output shows db-pass" sh -c "tests/cluster/in-cluster-ns.sh '$W' kubectl logs '$pod' -c nginx --tail 20 | grep -q 'file db-pass: mysupersecretpassword'"
check "the sidecar used workload identity with kubelet's token" \
  sh -c "tests/cluster/in-cluster-ns.sh '$W' kubectl logs '$pod' -c secret-injector-init | grep -q 'workload identity'"

# Rotation: the app reads the new value within the interval (+10% jitter) + 1 s.
admin -d '{"value":"rotated-in-the-vault"}' "https://10.77.0.1/admin/vaults/$VAULT/secrets/db-pass" >/dev/null
rotated_at=$(date +%s.%N)
rotation_arrives() {
  local limit
  limit=$(python3 -c "print($INTERVAL * 1.1 + 1 + 2)") # + 2 s for kubectl exec's own round trip
  while python3 -c "import sys,time; sys.exit(0 if time.time() - $rotated_at < $limit else 1)"; do
    if [ "$(app_reads db-pass 2>/dev/null)" = rotated-in-the-vault ]; then
      echo "pods: rotation reached the app after $(python3 -c "import time; print(round(time.time() - $rotated_at, 1))") s"
      return 0
    fi
    sleep 0.2
  done
  return 1
}
check "a rotation reaches the app within interval + 1 s" rotation_arrives

# Store down: the app keeps reading the last good files.
admin -d '{"target":"*","fault":"down"}' https://10.77.0.1/admin/faults >/dev/null
sleep $((INTERVAL * 2 + 2))
check "with the store down the app reads the last good db-pass" test "$(app_reads db-pass)" = rotated-in-the-vault
check "with the store down the app reads the last good db-user" test "$(app_reads db-user)" = administrator
check "the status file names the outage" sh -c "tests/cluster/in-cluster-ns.sh '$W' kubectl exec '$pod' -c nginx -- cat /mnt/secrets-store/..secret-injector-status.json | grep -q '\"errorKind\": \"unavailable\"'"
admin -X DELETE https://10.77.0.1/admin/faults >/dev/null

# ---------------------------------------------------------------- the seed
# The seed's four manifests byte for byte, in a namespace opted in to CSI
# conversion; the controller manager turns the Deployments into pods.
K delete deployment nginx-deployment --wait=true >/dev/null
K wait --for=delete pod -l app=nginx --timeout=60s >/dev/null 2>&1 || true
K label namespace default secret-injector.io/csi-compat=enabled --overwrite >/dev/null
K apply -f manifests/examples/rbac/pod-role.yaml >/dev/null
# The seed's Deployment names no ServiceAccount: bind the Role to `default`
# of this throw-away namespace (the example binds an app's own account).
K create rolebinding secret-injector-pod-default --role=secret-injector-pod \
  --serviceaccount=default:default >/dev/null
# H3: the Role is enough for the seed's manifests, and no more.
can_i_table() {
  local as=system:serviceaccount:default:default line verb what want got bad=0
  while read -r want verb what; do
    got=$(K auth can-i --as="$as" "$verb" "$what" 2>/dev/null || true)
    printf 'pods:   can-i %-6s %-60s %s\n' "$verb" "$what" "$got"
    [ "$got" = "$want" ] || bad=1
  done <<TABLE
yes get secrets/k8s-secret
yes create secrets/k8s-secret
yes patch secrets/k8s-secret
no get secrets/other-secret
no patch secrets/other-secret
no create secrets/other-secret
no list secrets
no watch secrets
no delete secrets/k8s-secret
yes create secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io
yes patch secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io
no get secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io
no delete secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io
yes create events
no list pods
no get configmaps
TABLE
  return "$bad"
}
check "the example Role grants the seed exactly what it needs (kubectl auth can-i)" can_i_table
# Known values and versions (a new version each, same values as the seed's).
version_of() { admin -d "{\"value\":\"$2\"}" "https://10.77.0.1/admin/vaults/$VAULT/secrets/$1" | jq -r .version; }
user_version=$(version_of db-user administrator)
pass_version=$(version_of db-pass mysupersecretpassword)

seed_pod() { K get pods -l app=nginx --field-selector=status.phase=Running -o jsonpath='{.items[0].metadata.name}'; }
rolled_out() { K rollout status deployment/nginx-deployment --timeout=180s >/dev/null; }
K apply -f manifests/examples/seed/01-secretProviderClass.yml -f manifests/examples/seed/02-deployment.yml >/dev/null
check "seed 01+02: the CSI Deployment rolls out" rolled_out
pod=$(seed_pod)
check "seed 01+02: the CSI volume became a memory volume" \
  test "$(K get pod "$pod" -o jsonpath='{.spec.volumes[?(@.name=="secrets-mount")].emptyDir.medium}')" = Memory
check "seed 01+02: the app reads db-user via the VM's managed identity" test "$(app_reads db-user)" = administrator
check "seed 01+02: the app reads db-pass" test "$(app_reads db-pass)" = mysupersecretpassword
check "seed 01+02: the token came from IMDS for the class's user-assigned identity" \
  sh -c "tests/cluster/in-cluster-ns.sh '$W' kubectl logs '$pod' -c secret-injector-init | grep -q 'managed identity (client $CLIENT)'"

K apply -f manifests/examples/seed/10-secretProviderClass_secretObjects.yml -f manifests/examples/seed/11-deployment.yml >/dev/null
check "seed 10+11: the Deployment with secretKeyRef env rolls out" rolled_out
# The old pod may still be terminating: take the one started from 11.
pod=$(K get pods -l app=nginx -o json | jq -r '[.items[] | select(.metadata.deletionTimestamp == null) | select(.spec.containers[0].env != null)][0].metadata.name')
uid=$(K get pod "$pod" -o jsonpath='{.metadata.uid}')
secret_value() { K get secret k8s-secret -o jsonpath="{.data.$1}" | base64 -d; }
check "seed 10+11: files db-user and db-pass" sh -c "[ \"\$(tests/cluster/in-cluster-ns.sh '$W' kubectl exec '$pod' -c nginx -- cat /mnt/secrets-store/db-user)\" = administrator ] && [ \"\$(tests/cluster/in-cluster-ns.sh '$W' kubectl exec '$pod' -c nginx -- cat /mnt/secrets-store/db-pass)\" = mysupersecretpassword ]"
check "seed 10+11: Secret k8s-secret has username" test "$(secret_value username)" = administrator
check "seed 10+11: Secret k8s-secret has password" test "$(secret_value password)" = mysupersecretpassword
check "seed 10+11: Secret k8s-secret is Opaque" test "$(K get secret k8s-secret -o jsonpath='{.type}')" = Opaque
check "seed 10+11: kubelet resolved DB_USER from the synced Secret" \
  sh -c "tests/cluster/in-cluster-ns.sh '$W' kubectl logs '$pod' -c nginx --tail 20 | grep -q 'env DB_USER=administrator'"
check "seed 10+11: kubelet resolved DB_PASS from the synced Secret" \
  sh -c "tests/cluster/in-cluster-ns.sh '$W' kubectl logs '$pod' -c nginx --tail 20 | grep -q 'env DB_PASS=mysupersecretpassword'"
status_name="$pod-default-kv-aks-csi-weu-01"
status_version() { K get secretproviderclasspodstatus "$status_name" -o json | jq -r --arg id "secret/$1" '.status.objects[] | select(.id == $id) | .version'; }
check "seed 10+11: the PodStatus names the pod and the class" \
  test "$(K get secretproviderclasspodstatus "$status_name" -o jsonpath='{.status.podName} {.status.secretProviderClassName} {.status.mounted}')" = "$pod kv-aks-csi-weu-01 true"
check "seed 10+11: the PodStatus has db-user's version" test "$(status_version db-user)" = "$user_version"
check "seed 10+11: the PodStatus has db-pass's version" test "$(status_version db-pass)" = "$pass_version"
owner_uids() { K get "$1" -o jsonpath='{.metadata.ownerReferences[*].uid}'; }
check "seed 10+11: the Secret is owned by the pod" sh -c "echo '$(owner_uids secret/k8s-secret)' | grep -qw '$uid'"
check "seed 10+11: the PodStatus is owned by the pod" test "$(owner_uids "secretproviderclasspodstatus/$status_name")" = "$uid"

# Rotation: file, Secret and PodStatus follow within interval (+10% jitter) + 1 s.
new_version=$(version_of db-pass rotated-for-the-seed)
rotated_at=$(date +%s.%N)
follows() { # <what> <command printing the current value> <expected>
  local limit what=$1 probe=$2 want=$3
  limit=$(python3 -c "print($INTERVAL * 1.1 + 1 + 2)") # + 2 s for kubectl's own round trip
  while python3 -c "import sys,time; sys.exit(0 if time.time() - $rotated_at < $limit else 1)"; do
    if [ "$($probe 2>/dev/null)" = "$want" ]; then
      echo "pods: the rotation reached the $what after $(python3 -c "import time; print(round(time.time() - $rotated_at, 1))") s"
      return 0
    fi
    sleep 0.2
  done
  return 1
}
file_pass() { K exec "$pod" -c nginx -- cat /mnt/secrets-store/db-pass; }
secret_pass() { secret_value password; }
status_pass() { status_version db-pass; }
check "seed rotation: the file follows" follows file file_pass rotated-for-the-seed
check "seed rotation: the Secret follows" follows Secret secret_pass rotated-for-the-seed
check "seed rotation: the PodStatus follows" follows PodStatus status_pass "$new_version"
rotation_event() {
  K get events --field-selector "involvedObject.name=$pod,reason=SecretRotationComplete" -o jsonpath='{.items[*].message}' | grep -q 'db-pass'
}
check "seed rotation: an Event on the pod names db-pass" rotation_event
check "seed rotation: no Event carries the value" \
  sh -c "! tests/cluster/in-cluster-ns.sh '$W' kubectl get events -o yaml | grep -q rotated-for-the-seed"

# The garbage collector removes the Secret and the PodStatus with the last pod.
K delete deployment nginx-deployment --wait=true >/dev/null
gone() { ! K get secret k8s-secret >/dev/null 2>&1 && ! K get secretproviderclasspodstatus "$status_name" >/dev/null 2>&1; }
collected() {
  local t0=$SECONDS
  for _ in $(seq 1 90); do
    gone && { echo "pods: collected $((SECONDS - t0)) s after the Deployment was deleted"; return 0; }
    sleep 1
  done
  K get pods -l app=nginx -o wide || true
  K get secret k8s-secret -o jsonpath='{.metadata.ownerReferences}{"\n"}' || true
  K get secretproviderclasspodstatus -o jsonpath='{.items[*].metadata.ownerReferences}{"\n"}' || true
  grep -i "garbage" "$W/controller-manager.log" | tail -20 || true
  return 1
}
check "seed: the Secret and the PodStatus go with their last pod" collected

# ------------------------------------------------- two CSI volumes, two classes
# The CSI driver's own case (a pod with two volumes naming two classes, each
# syncing a Secret the app reads as env), the second volume authenticating
# with a service principal through nodePublishSecretRef.
version_of db-pass mysupersecretpassword >/dev/null
K create role secret-injector-multiple --verb=get,create,patch --resource=secrets \
  --resource-name=foosecret-0 --resource-name=foosecret-1 >/dev/null
K create rolebinding secret-injector-multiple --role=secret-injector-multiple \
  --serviceaccount=default:default >/dev/null
K create secret generic secrets-store-creds --from-literal=clientid="$SP_CLIENT" \
  --from-literal=clientsecret="$SP_SECRET" >/dev/null
K apply -f manifests/examples/azure/multiple-classes-spc.yaml >/dev/null
K apply -f manifests/examples/azure/multiple-classes-pod.yaml >/dev/null
mpod=secrets-store-inline-multiple-crd
check "two classes: the pod with two CSI volumes starts" K wait --for=condition=Ready "pod/$mpod" --timeout=180s
mreads() { K exec "$mpod" -c nginx -- cat "$1"; }
check "two classes: /mnt/secrets-store-0 has spc-0's object (workload identity)" \
  test "$(mreads /mnt/secrets-store-0/secretalias)" = administrator
check "two classes: /mnt/secrets-store-1 has spc-1's object (service principal)" \
  test "$(mreads /mnt/secrets-store-1/secretalias)" = mysupersecretpassword
check "two classes: neither volume is left a CSI volume" \
  test "$(K get pod "$mpod" -o jsonpath='{.spec.volumes[?(@.csi)].name}')" = ""
check "two classes: Secret foosecret-0 synced from spc-0" \
  test "$(K get secret foosecret-0 -o jsonpath='{.data.username}' | base64 -d)" = administrator
check "two classes: Secret foosecret-1 synced from spc-1" \
  test "$(K get secret foosecret-1 -o jsonpath='{.data.username}' | base64 -d)" = mysupersecretpassword
menv() { K exec "$mpod" -c nginx -- sh -c "echo \"\$$1\""; }
check "two classes: kubelet resolved SECRET_USERNAME_0 and _1 from the synced Secrets" \
  test "$(menv SECRET_USERNAME_0) $(menv SECRET_USERNAME_1)" = "administrator mysupersecretpassword"
mstatus() { K get secretproviderclasspodstatus "$mpod-default-$1" -o jsonpath='{.status.secretProviderClassName} {.status.mounted} {.status.objects[0].id}'; }
check "two classes: a PodStatus for each class" \
  test "$(mstatus azure-spc-0), $(mstatus azure-spc-1)" = "azure-spc-0 true secret/db-user, azure-spc-1 true secret/db-pass"
check "two classes: the init container used the service principal of nodePublishSecretRef" \
  sh -c "tests/cluster/in-cluster-ns.sh '$W' kubectl logs '$mpod' -c secret-injector-init | grep -q 'client secret (client $SP_CLIENT)'"
check "two classes: the app's container does not mount the credentials Secret" \
  sh -c "! tests/cluster/in-cluster-ns.sh '$W' kubectl get pod '$mpod' -o jsonpath='{.spec.containers[0].volumeMounts[*].name}' | grep -q provider-secret"
check "two classes: no log carries the service principal's secret" \
  sh -c "! { tests/cluster/in-cluster-ns.sh '$W' kubectl logs '$mpod' -c secret-injector-init; tests/cluster/in-cluster-ns.sh '$W' kubectl logs '$mpod' -c secret-injector; } 2>&1 | grep -q '$SP_SECRET'"
K delete pod "$mpod" --wait=false >/dev/null

# A secret the vault does not have: the app never starts, and the pod says why
# as a CSI volume that cannot mount would (Warning FailedMount).
K apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: missing-secret
  annotations:
    secret-injector.io/inject: "true"
    secret-injector.io/secret-db-user: azure://$VAULT/secrets/db-user
    secret-injector.io/secret-api-key: azure://$VAULT/secrets/no-such-secret
    secret-injector.io/tenant-id: $TENANT
    secret-injector.io/client-id: $CLIENT
spec:
  containers: [{name: app, image: nginx:1.23.1}]
YAML
failed_mount_event() {
  for _ in $(seq 1 60); do
    K get events --field-selector "involvedObject.name=missing-secret,reason=FailedMount" \
      -o jsonpath='{.items[*].message}' | grep -q 'cannot fetch api-key: 404' && return 0
    sleep 1
  done
  K get events --field-selector involvedObject.name=missing-secret || true
  return 1
}
check "a missing secret: a FailedMount Event on the pod names the file" failed_mount_event
check "a missing secret: the app container has not started" \
  test "$(K get pod missing-secret -o jsonpath='{.status.containerStatuses[0].started}')" != true
K delete pod missing-secret --wait=false >/dev/null

# H2: secretObjects never take over a Secret they did not create. A Secret
# made by someone else under the class's secretName: the pod is refused (its
# init container fails at once, saying why) and the Secret stays as it was.
K create secret generic k8s-secret --from-literal=username=theirs --from-literal=other=kept >/dev/null
before=$(K get secret k8s-secret -o json | jq -S '{data, type, labels: .metadata.labels, owners: .metadata.ownerReferences, rv: .metadata.resourceVersion}')
K apply -f manifests/examples/seed/10-secretProviderClass_secretObjects.yml -f manifests/examples/seed/11-deployment.yml >/dev/null
refused() {
  for _ in $(seq 1 90); do
    K get events --field-selector reason=SecretSyncRefused -o jsonpath='{.items[*].message}' 2>/dev/null |
      grep -q 'k8s-secret' && return 0
    K get pods -l app=nginx -o jsonpath='{.items[*].status.initContainerStatuses[0].lastState.terminated.message}{.items[*].status.initContainerStatuses[0].state.terminated.message}' 2>/dev/null |
      grep -q 'never takes over' && return 0
    sleep 1
  done
  K get pods -l app=nginx -o wide || true
  K get events --field-selector involvedObject.kind=Pod | tail -10 || true
  return 1
}
check "h2: a pod whose secretObjects name someone else's Secret is refused, saying why" refused
check "h2: the app of that pod has not started" \
  test "$(K get pods -l app=nginx -o jsonpath='{.items[0].status.containerStatuses[0].started}')" != true
unchanged() {
  [ "$(K get secret k8s-secret -o json | jq -S '{data, type, labels: .metadata.labels, owners: .metadata.ownerReferences, rv: .metadata.resourceVersion}')" = "$before" ]
}
check "h2: the Secret is byte-identical afterwards (data, type, labels, owners, resourceVersion)" unchanged
K delete deployment nginx-deployment --wait=true >/dev/null
K delete secret k8s-secret >/dev/null

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

# ------------------------------------------------------ the Rust e2e library
# tests/e2e/tests/pods.rs: a namespace per store, the store's CSI provider's
# manifests unchanged, the shared checks of tests/e2e/src/suite.rs.
aws_up
cargo test --quiet -p e2e --test pods --no-run 2>/dev/null
rust_pods() {
  E2E_WORKDIR=$W E2E_INTERVAL=$INTERVAL in_ns cargo test --quiet -p e2e --test pods -- \
    --ignored --test-threads 1 --nocapture 2>&1 | tee "$W/rust-pods.log" | grep '^pods: '
  grep -q '^test result: ok' "$W/rust-pods.log"
}
check "the Rust real-pod tests (tests/e2e/tests/pods.rs)" rust_pods
