#!/usr/bin/env bash
# Install the Debian packages the test cluster harness and the stores' tests need.
#
# Idempotent: packages are installed only when `dpkg -s` says they are
# missing, the deb-src entry (needed by `apt-get source kubernetes` in
# build-kube.sh) is added only when absent, and `apt-get update` runs only
# when something has to be installed. Runs without a terminal or stdin.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# What the apiserver harness and the kube build need.
APISERVER_PKGS=(
  etcd-server       # etcd 3.4, the apiserver's storage
  golang-go         # Go 1.19, builds Kubernetes 1.20.2 from source
  rsync jq          # used by Kubernetes' build scripts
  openssl           # test CA and serving certificates
  dpkg-dev          # `apt-get source` unpacks with dpkg-source
  gcc libc6-dev     # static `pause` binary
  # Newer reflect2/json-iterator replace the vendored ones: reflect2 1.0.1
  # crashes the apiserver when built with Go 1.19 (see notes).
  golang-github-modern-go-reflect2-dev
  golang-github-json-iterator-go-dev
)
# What the later full cluster (kubelet + containerd in a netns) needs.
CLUSTER_PKGS=(
  containerd runc containernetworking-plugins
  umoci skopeo      # build OCI images without a registry
  iproute2          # ip netns / veth
  iptables          # DNAT of the `kubernetes` Service IP to the apiserver
  curl              # readiness checks
  dnsmasq-base      # the cluster's DNS (answers <workdir>/dns-hosts only)
  busybox-static    # the stand-in app image (tests/images/build.sh)
)

# What the stores' tests start themselves (tests/openbao: the database
# secrets engine's dynamic credentials against a real PostgreSQL).
STORE_PKGS=(
  postgresql postgresql-client
)
# The fuzz targets' libFuzzer is C++ (make lint type-checks them, make fuzz runs them).
FUZZ_PKGS=(
  g++
)

DEBSRC_FILE=/etc/apt/sources.list.d/debian-src.sources

log() { echo "install-deps: $*" >&2; }

# Already installed = dpkg reports "install ok installed".
is_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

# True if any apt source already offers deb-src for the Debian archive.
has_debsrc() {
  grep -rqsE '^[[:space:]]*(Types:.*deb-src|deb-src[[:space:]])' \
    /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null
}

need_update=0

if ! has_debsrc; then
  # Same URIs, suites and keyring as the existing debian.sources (the image's
  # pinned mirror), only the type differs. Derived from that file rather than
  # hard-coded so it follows the machine's configuration.
  src=/etc/apt/sources.list.d/debian.sources
  if [ -f "$src" ]; then
    log "adding deb-src entries to $DEBSRC_FILE (from $src)"
    sed -E 's/^Types:.*/Types: deb-src/' "$src" > "$DEBSRC_FILE.tmp"
  else
    log "no $src; adding a default bookworm deb-src entry"
    cat > "$DEBSRC_FILE.tmp" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  mv "$DEBSRC_FILE.tmp" "$DEBSRC_FILE"
  need_update=1
fi

missing=()
for p in "${APISERVER_PKGS[@]}" "${CLUSTER_PKGS[@]}" "${STORE_PKGS[@]}" "${FUZZ_PKGS[@]}"; do
  is_installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  need_update=1
fi

# apt-get update only when we must: new source entry or packages to install.
# (A fresh deb-src entry needs the index for `apt-get source` later.)
if [ "$need_update" = 1 ]; then
  apt-get update -qq </dev/null
fi

if [ "${#missing[@]}" -gt 0 ]; then
  # --no-install-recommends keeps it small; containerd's service may try to
  # start under a non-systemd container: harmless, we run our own instance.
  apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" </dev/null
fi

# kubectl comes with this machine's image (package `kubectl`, 1.32, from the
# Google Cloud SDK repository, which the registries reachable here do not
# serve). The e2e scripts need it, and kustomize `labels` needs 1.22+.
if ! command -v kubectl >/dev/null; then
  log "ERROR: no kubectl on PATH; the e2e scripts need kubectl 1.22 or newer (this machine kind ships 1.32)"
  exit 1
fi

log "all dependencies present"
