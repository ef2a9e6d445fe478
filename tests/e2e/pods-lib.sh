# shellcheck shell=bash
# What the real-pod e2e scripts (pods.sh, install.sh) share: the one-node
# cluster with the Key Vault emulator at the real names, and the images.
# Sourced after tests/cluster/lib.sh, from the repository root; uses $repo.
#
#   e2e_workdir, check <name> <cmd...>   $W and pass/fail counting ($E2E_NAME: ok/FAIL)
#   e2e_finish <rc>                      the verdict; removes a passed run's temp dir
#   e2e_cluster_up <workdir>        start (one retry), load env, IMDS address
#   e2e_emulator <workdir>          the emulator on 10.77.0.1:443 (+ IMDS on :80)
#   e2e_static_build [--webhook]    the images' static binaries
#   e2e_images <workdir> [args...]  pause, app, sidecar (+ build.sh args), imported
#   K ..., in_ns ..., admin ...     kubectl / a command / the emulator's admin API, in the netns

: "${repo:?set repo to the repository root before sourcing}"
VAULT=kv-aks-csi-weu-01
TENANT=00000000-0000-0000-0000-00000000000a
CLIENT=00000000-0000-0000-0000-000000000001
# The service principal of manifests/examples/azure/multiple-classes-pod.yaml's
# nodePublishSecretRef (the Secret secrets-store-creds).
SP_CLIENT=00000000-0000-0000-0000-000000000003
SP_SECRET=sp-secret-never-logged-6e1f

K() { tests/cluster/in-cluster-ns.sh "$W" kubectl "$@"; }

# pods_ready <selector>: the selected pods exist and are Ready (180 s).
# kubectl wait fails at once while a ReplicaSet has made no pod yet.
pods_ready() {
  for _ in $(seq 1 120); do
    [ -n "$(K get pod -l "$1" -o name 2>/dev/null)" ] && break
    sleep 0.5
  done
  K wait --for=condition=Ready pod -l "$1" --timeout=180s >/dev/null
}
in_ns() { tests/cluster/in-cluster-ns.sh "$W" "$@"; }
admin() { in_ns curl -fsS --cacert "$W/emulator-ca.pem" -H 'Content-Type: application/json' "$@"; }

# W: $E2E_WORKDIR or a fresh temp dir; check counts in passed/failed and
# prints "$E2E_NAME: ok|FAIL <name>".
e2e_workdir() {
  W=${E2E_WORKDIR:-$(mktemp -d "/tmp/secret-injector-$E2E_NAME.XXXXXX")}
  mkdir -p "$W"
  W=$(cd "$W" && pwd)
  passed=0 failed=0
}
# e2e_finish <rc>: the verdict, last in the EXIT trap (under set -e its
# status is the script's); the temp dir goes if the run passed.
e2e_finish() {
  local rc=$1
  echo "$E2E_NAME: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] || rc=1
  kc_workdir_done "$W" "$rc" "$E2E_NAME"
  return "$rc"
}
check() { # check <name> <command...>
  local name=$1
  shift
  if "$@"; then
    passed=$((passed + 1)); echo "$E2E_NAME: ok   $name"
  else
    failed=$((failed + 1)); echo "$E2E_NAME: FAIL $name"
  fi
}

e2e_cluster_up() {
  echo "10.77.0.1 $VAULT.vault.azure.net login.microsoftonline.com" >"$1/dns-hosts"
  # One retry: once in CI (after the apiserver e2e) kubelet exited at start
  # with an empty log; a second start went through. Not yet explained.
  if ! tests/cluster/cluster.sh start "$1" >/dev/null; then
    echo "e2e: the cluster did not start; kubelet log:"; tail -20 "$1/kubelet/kubelet.log" || true
    echo "e2e: starting the cluster again"
    tests/cluster/cluster.sh start "$1" >/dev/null
  fi
  set -a
  # shellcheck disable=SC1091
  . "$1/env"
  set +a
  export KC_NETNS=$NETNS
  # The node's Instance Metadata Service address, as pods on an Azure VM
  # reach it: the seed's class uses the VM's user-assigned managed identity.
  in_ns ip addr add 169.254.169.254/32 dev lo
}

# The emulator at the real names on 10.77.0.1:443; it trusts the cluster's
# service-account key for workload identity, for the pod's own account only.
e2e_emulator() {
  kc_spawn emulator "$1" "${CARGO_TARGET_DIR:-$repo/target}/debug/kv-emulator" --listen 10.77.0.1:443 \
    --ca-out "$1/emulator-ca.pem" --default-vault "$VAULT" --tenant "$TENANT" \
    --authority-host https://login.microsoftonline.com \
    --federated-key "$SA_PUB" --federated-subject "$CLIENT=system:serviceaccount:default:default" \
    --client-secret "$SP_CLIENT=$SP_SECRET" \
    --extra-name "*.vault.azure.net" --extra-name login.microsoftonline.com --extra-name 10.77.0.1 \
    --seed "$VAULT/db-user=administrator" --seed "$VAULT/db-pass=mysupersecretpassword" \
    --imds-listen 169.254.169.254:80
  for _ in $(seq 1 100); do [ -s "$1/emulator-ca.pem" ] && break; sleep 0.1; done
}

# Images: the sidecar (trusting the emulator's CA, as an operator adds a
# private CA), the stand-in app tagged nginx:1.23.1, pause; imported.
e2e_images() {
  local dir=$1
  shift
  # The emulator's CA, and the AWS front's and OpenBao's when pods-aws.sh
  # and pods-vault.sh made them.
  cat "$dir/emulator-ca.pem" >"$dir/sidecar-cas.pem"
  [ ! -f "$dir/aws-ca.pem" ] || cat "$dir/aws-ca.pem" >>"$dir/sidecar-cas.pem"
  [ ! -f "$dir/vault-ca.pem" ] || cat "$dir/vault-ca.pem" >>"$dir/sidecar-cas.pem"
  tests/images/build.sh --sidecar "${CARGO_TARGET_DIR:-$repo/target}/x86_64-unknown-linux-gnu/sidecar/secret-injector-sidecar" \
    --extra-ca "$dir/sidecar-cas.pem" "$@" "$dir/images" >/dev/null
  tests/cluster/cluster.sh import "$dir" "$dir"/images/*.tar >/dev/null
}

# e2e_tag_app <name>: the stand-in app (busybox + app.sh) under another
# name too, for manifests applied unchanged that name their own busybox.
e2e_tag_app() {
  local app
  # Listed first, then searched: grep -m1 in a pipe would end ctr with SIGPIPE (pipefail: 141).
  app=$(ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q)
  app=$(grep -m1 'nginx:1.23.1$' <<<"$app")
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images tag "$app" "$1" >/dev/null
}

# Static binaries for the images (they have no libc); --target keeps
# crt-static off build scripts and proc macros. The sidecar with its own
# profile, as images/Dockerfile.sidecar builds it; --webhook adds the webhook.
e2e_static_build() { # [--webhook]
  static() { RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --target x86_64-unknown-linux-gnu "$@"; }
  static --profile sidecar -p secret-injector-sidecar
  [ "${1:-}" != --webhook ] || static --release -p secret-injector-webhook
}
