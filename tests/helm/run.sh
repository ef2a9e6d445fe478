#!/usr/bin/env bash
# The Helm chart, with Helm's own engine (PyPI helm-python-sdk binds the Helm
# v4 Go SDK; no helm binary exists in the registries this machine reaches):
# `helm lint --strict`, then a render per TLS mode, checked, written to
# <out-dir>/<mode>.yaml for the apiserver e2e to apply.
#
#   tests/helm/run.sh [out-dir]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${SECRET_INJECTOR_CACHE:-/var/cache/secret-injector}"
venv="$cache/helm-venv"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  mkdir -p "$cache"
  if [[ ! -x "$venv/bin/python" ]] && ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 ships venv separately.
    rm -rf "$venv"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" >"$stamp"
fi
# The chart carries the same CRDs as manifests/crds (Helm reads them from crds/).
for f in "$root"/manifests/crds/*.yaml; do
  case $f in */kustomization.yaml) continue ;; esac
  cmp -s "$f" "$root/manifests/charts/secret-injector/crds/${f##*/}" ||
    { echo "helm: FAIL manifests/charts/secret-injector/crds/${f##*/} differs from manifests/crds (copy it)"; exit 1; }
done
out=${1:-$(mktemp -d /tmp/secret-injector-helm.XXXXXX)}
mkdir -p "$out"
exec "$venv/bin/python" "$here/check.py" "$root/manifests/charts/secret-injector" "$out"
