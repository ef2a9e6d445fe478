#!/usr/bin/env bash
# Build the test cluster's container images without a registry or a Docker
# engine: umoci (rootless unpack/repack of an OCI layout) + skopeo (OCI layout
# -> docker-archive tar). Import the tars with
#   tests/cluster/cluster.sh import <workdir> <out-dir>/*.tar
#
#   tests/images/build.sh [options] <out-dir>
#
# Images (one docker-archive tar each in <out-dir>):
#   pause.tar    k8s.gcr.io/pause:3.2        the static pause from build-kube.sh
#   app.tar      nginx:1.23.1                stand-in app (busybox + app.sh):
#                prints /mnt/secrets-store files and DB_USER/DB_PASS every second
#   sidecar.tar  secret-injector-sidecar:e2e only with --sidecar BIN
#   webhook.tar  secret-injector-webhook:e2e only with --webhook BIN
#
# Options:
#   --sidecar BIN     build sidecar.tar from this static binary
#                     (/usr/local/bin/secret-injector-sidecar, user 65532, no shell)
#   --extra-ca PEM    appended to the sidecar's /etc/ssl/certs/ca-certificates.crt
#                     (and kept as /etc/ssl/certs/extra-ca.pem), e.g. the test CA
#                     that signed the Key Vault emulator's certificate
#   --sidecar-tag T   default secret-injector-sidecar:e2e
#   --webhook BIN     build webhook.tar from this static binary
#                     (/usr/local/bin/webhook, user 65532, no shell: as images/Dockerfile.webhook)
#   --webhook-tag T   default secret-injector-webhook:e2e
#   --only LIST       comma-separated subset of pause,app,sidecar
#
# The sidecar must be a static binary (the image has no libc):
#   RUSTFLAGS="-C target-feature=+crt-static" cargo build --profile sidecar \
#     --target x86_64-unknown-linux-gnu -p secret-injector-sidecar
#   -> target/x86_64-unknown-linux-gnu/sidecar/secret-injector-sidecar
# (--target is what keeps crt-static off the build scripts and proc macros.)
#
# The last lines of stdout are the tar paths written, one per line.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

log() { echo "images: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }

sidecar_bin="" extra_ca="" sidecar_tag="secret-injector-sidecar:e2e" only="pause,app"
webhook_bin="" webhook_tag="secret-injector-webhook:e2e"
only_given=0
while [ $# -gt 0 ]; do
  case $1 in
    --sidecar) sidecar_bin=$2; shift 2 ;;
    --extra-ca) extra_ca=$2; shift 2 ;;
    --sidecar-tag) sidecar_tag=$2; shift 2 ;;
    --webhook) webhook_bin=$2; shift 2 ;;
    --webhook-tag) webhook_tag=$2; shift 2 ;;
    --only) only=$2; only_given=1; shift 2 ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || usage
out=$1
[ -n "$sidecar_bin" ] && [ "$only_given" = 0 ] && only="$only,sidecar"
[ -n "$webhook_bin" ] && [ "$only_given" = 0 ] && only="$only,webhook"
want() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

for t in umoci skopeo; do command -v $t >/dev/null || die "$t missing (tests/cluster/install-deps.sh)"; done
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/si-images.XXXXXX")
trap 'rm -rf "$work"' EXIT

# build_image <name> <image-ref> <populate-fn> [umoci config args...]
# Empty image -> unpack -> <populate-fn> <rootfs> -> repack -> config -> tar.
build_image() {
  local name=$1 ref=$2 populate=$3 layout bundle
  shift 3
  layout="$work/$name-layout"
  bundle="$work/$name-bundle"
  umoci init --layout "$layout"
  umoci new --image "$layout:img"
  umoci unpack --rootless --image "$layout:img" "$bundle" 2>/dev/null
  "$populate" "$bundle/rootfs"
  umoci repack --image "$layout:img" "$bundle"
  umoci config --image "$layout:img" --os linux --architecture amd64 \
    --author secret-injector-tests --created 2000-01-01T00:00:00Z \
    --history.created 2000-01-01T00:00:00Z "$@"
  rm -f "$out/$name.tar"
  skopeo --insecure-policy copy -q "oci:$layout:img" "docker-archive:$out/$name.tar:$ref"
  log "built $ref -> $out/$name.tar ($(du -h "$out/$name.tar" | cut -f1))"
  echo "$out/$name.tar"
}

# Minimal /etc for non-root users and name lookups from /etc/hosts + DNS.
base_etc() {
  local r=$1
  mkdir -p "$r/etc" "$r/tmp"
  chmod 1777 "$r/tmp"
  cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
nonroot:x:65532:65532:nonroot:/home/nonroot:/bin/false
EOF
  cat >"$r/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
  echo "hosts: files dns" >"$r/etc/nsswitch.conf"
  chmod 644 "$r/etc/passwd" "$r/etc/group" "$r/etc/nsswitch.conf"
}

# ---------------------------------------------------------------- pause
pause_rootfs() {
  install -m 0755 "$PAUSE_BIN" "$1/pause"
}

# ---------------------------------------------------------------- app
app_rootfs() {
  local r=$1 a
  base_etc "$r"
  mkdir -p "$r/bin" "$r/usr/local/bin" "$r/mnt/secrets-store"
  install -m 0755 "$BUSYBOX" "$r/bin/busybox"
  # One symlink per applet (sh, cat, ls, date, sleep, nslookup, wget, ...).
  for a in $("$BUSYBOX" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$r/bin/$a"
  done
  mkdir -p "$r/usr/bin" "$r/sbin" "$r/usr/sbin"
  ln -sf /bin/env "$r/usr/bin/env"
  install -m 0755 "$HERE/app.sh" "$r/usr/local/bin/app.sh"
}

# ---------------------------------------------------------------- sidecar
sidecar_rootfs() {
  local r=$1
  base_etc "$r"
  mkdir -p "$r/usr/local/bin" "$r/etc/ssl/certs" "$r/home/nonroot"
  # Rootless repack records every file as 0:0, so no chown: world-writable
  # (sticky) like /tmp, which also suits any runAsUser.
  chmod 1777 "$r/home/nonroot"
  install -m 0755 "$sidecar_bin" "$r/usr/local/bin/secret-injector-sidecar"
  cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
  if [ -n "$extra_ca" ]; then
    install -m 0644 "$extra_ca" "$r/etc/ssl/certs/extra-ca.pem"
    { echo; cat "$extra_ca"; } >>"$r/etc/ssl/certs/ca-certificates.crt"
  fi
  chmod 0644 "$r/etc/ssl/certs/ca-certificates.crt"
}

# ---------------------------------------------------------------- webhook
webhook_rootfs() {
  local r=$1
  base_etc "$r"
  mkdir -p "$r/usr/local/bin"
  install -m 0755 "$webhook_bin" "$r/usr/local/bin/webhook"
}

start=$(date +%s.%N)

if want pause; then
  PAUSE_BIN="${PAUSE_BIN:-$("$REPO/tests/cluster/build-kube.sh" | tail -n1)/pause}"
  [ -x "$PAUSE_BIN" ] || die "no pause binary at $PAUSE_BIN"
  build_image pause k8s.gcr.io/pause:3.2 pause_rootfs \
    --config.entrypoint /pause
fi

if want app; then
  BUSYBOX=${BUSYBOX:-/bin/busybox}
  [ -x "$BUSYBOX" ] || die "no $BUSYBOX (apt-get install busybox-static)"
  ! ldd "$BUSYBOX" 2>&1 | grep -q '=>' \
    || die "$BUSYBOX is not static (install busybox-static, not busybox)"
  build_image app nginx:1.23.1 app_rootfs \
    --config.entrypoint /usr/local/bin/app.sh \
    --config.env PATH=/usr/local/bin:/bin \
    --config.workingdir /
fi

if want sidecar; then
  [ -n "$sidecar_bin" ] || die "--only sidecar needs --sidecar BIN"
  [ -f "$sidecar_bin" ] || die "no such file: $sidecar_bin"
  if ldd "$sidecar_bin" 2>&1 | grep -q '=>'; then
    die "$sidecar_bin is dynamically linked; the image has no libc (see the build command above)"
  fi
  [ -z "$extra_ca" ] || [ -f "$extra_ca" ] || die "no such file: $extra_ca"
  build_image sidecar "$sidecar_tag" sidecar_rootfs \
    --config.entrypoint /usr/local/bin/secret-injector-sidecar \
    --config.user 65532:65532 \
    --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --config.env SSL_CERT_DIR=/etc/ssl/certs \
    --config.workingdir /home/nonroot
fi

if want webhook; then
  [ -n "$webhook_bin" ] || die "--only webhook needs --webhook BIN"
  [ -f "$webhook_bin" ] || die "no such file: $webhook_bin"
  if ldd "$webhook_bin" 2>&1 | grep -q '=>'; then
    die "$webhook_bin is dynamically linked; the image has no libc"
  fi
  build_image webhook "$webhook_tag" webhook_rootfs \
    --config.entrypoint /usr/local/bin/webhook \
    --config.cmd serve --config.cmd --tls-managed \
    --config.user 65532:65532 \
    --config.workingdir /
fi

log "done in $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}') s"
