#!/usr/bin/env bash
# Build Kubernetes 1.20.2 server binaries from Debian's `kubernetes` source
# package into a cache outside the repo:
#
#   ${SECRET_INJECTOR_CACHE:-/var/cache/secret-injector}/kubernetes-<debian source version>/bin/
#     kube-apiserver kubelet kube-controller-manager kube-scheduler pause
#
# No prebuilt Kubernetes binary can be downloaded here; Debian's source
# package (with vendor/) is the only way to get one. The build takes ~6 min on
# 2 cores, so it is cached keyed by the source version: if the binaries are
# already there this exits 0 at once. The build runs in a temp dir inside the
# cache and is renamed into place only when complete, so an interrupted build
# never leaves a half-filled cache.
#
# All progress goes to stderr; the last line of stdout is the bin dir.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${SECRET_INJECTOR_CACHE:-/var/cache/secret-injector}"
BINS=(kube-apiserver kubelet kube-controller-manager kube-scheduler pause)

# Keep stdout for the result only.
exec 3>&1 1>&2
log() { echo "build-kube: $*" >&2; }

complete() { # $1 = bin dir; true when every binary is there and executable
  local b
  for b in "${BINS[@]}"; do [ -x "$1/$b" ] || return 1; done
}

# The version apt-get source would fetch, read off the .dsc name it prints
# (kubernetes_<version>.dsc). Cheap: no download, just the local index.
source_version() {
  apt-get source --print-uris kubernetes 2>/dev/null \
    | sed -nE "s/.* kubernetes_(.+)\.dsc .*/\1/p" | head -n1
}

version="$(source_version || true)"
if [ -z "$version" ]; then
  # No deb-src index yet (fresh machine): let install-deps.sh add the entry
  # and the build tools, then refresh the index if it still isn't known.
  log "kubernetes source not in the apt index; running install-deps.sh"
  "$HERE/install-deps.sh"
  version="$(source_version || true)"
  if [ -z "$version" ]; then
    apt-get update -qq </dev/null
    version="$(source_version || true)"
  fi
  [ -n "$version" ] || { log "cannot find the kubernetes source package"; exit 1; }
fi

dest="$CACHE/kubernetes-$version"
if complete "$dest/bin"; then
  echo "$dest/bin" >&3
  exit 0
fi

# Slow path. Make sure the tools are there (fast no-op when they are).
"$HERE/install-deps.sh"

mkdir -p "$CACHE"
# One build at a time per cache (two CI jobs must not race on the rename).
exec 9>"$CACHE/.build-kube.lock"
flock 9
if complete "$dest/bin"; then # someone else finished it while we waited
  echo "$dest/bin" >&3
  exit 0
fi

# Temp dir on the same filesystem as $dest so the final mv is an atomic
# rename. Removed on any exit; after success it holds nothing of value.
work="$(mktemp -d "$CACHE/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# Leftovers of builds killed by SIGKILL (the trap could not run) - only
# those not locked, i.e. not ours, and we hold the lock.
find "$CACHE" -maxdepth 1 -name '.build.*' ! -path "$work" -exec rm -rf {} + || true

start=$(date +%s)
log "building Kubernetes $version in $work (takes ~6 min on 2 cores)"

cd "$work"
# apt-get source downloads the .dsc + orig tarball and applies Debian's patches
# (dpkg-source -x). As root it warns about the _apt sandbox: harmless.
apt-get source -qq "kubernetes=$version" </dev/null
src="$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)"
[ -d "$src" ] || { log "no source tree after apt-get source"; exit 1; }
cd "$src"

# With Go 1.19 the vendored reflect2 v1.0.1 makes kube-apiserver die with
# "fatal error: fault" in mapiterinit when serialising some objects. Debian's
# reflect2 1.0.2 and json-iterator 1.1.12 fix it. Only their top-level
# non-test sources replace the vendored ones (same import paths; Go does not
# hash vendor/ contents, so modules.txt stays as it is).
replace_vendor() { # $1 = import path
  local from="/usr/share/gocode/src/$1" to="vendor/$1"
  [ -d "$from" ] || { log "missing $from (golang-*-dev package)"; exit 1; }
  find "$to" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
  find "$from" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) \
    ! -name '*_test.go' -exec cp {} "$to/" \;
}
replace_vendor github.com/modern-go/reflect2
replace_vendor github.com/json-iterator/go

# The build as in debian/rules: a GOPATH whose k8s.io/kubernetes is this tree,
# static binaries, and a writable HOME. Go's caches live under $work so
# nothing is left behind. Kubernetes 1.20's scripts build in GOPATH mode
# (they force GO111MODULE=off) and parse GOFLAGS for -tags, so GOFLAGS must
# stay unset.
mkdir -p .go/src/k8s.io "$work/home"
ln -sfn ../../.. .go/src/k8s.io/kubernetes
export GOPATH="$PWD/.go" CGO_ENABLED=0 HOME="$work/home" \
  GOCACHE="$work/gocache"
unset GOFLAGS GO111MODULE
make WHAT="cmd/kube-apiserver cmd/kubelet cmd/kube-controller-manager cmd/kube-scheduler"

# The pod sandbox image's only binary, for the later full cluster.
gcc -Os -static -o _output/bin/pause build/pause/linux/pause.c

mkdir -p "$work/out/bin"
for b in "${BINS[@]}"; do
  cp "_output/bin/$b" "$work/out/bin/$b"
done
echo "$version" > "$work/out/source-version"
complete "$work/out/bin" || { log "build produced incomplete output"; exit 1; }

# Atomic publish: a stale incomplete $dest (should not exist) is dropped first.
rm -rf "$dest"
mv "$work/out" "$dest"
log "built in $(( $(date +%s) - start )) s"
echo "$dest/bin" >&3
