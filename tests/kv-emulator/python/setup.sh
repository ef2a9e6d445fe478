#!/usr/bin/env bash
# Creates (once) the Python venv the emulator's fidelity tests use, at
# ${SECRET_INJECTOR_CACHE:-/var/cache/secret-injector}/venv, with the pinned
# requirements. Idempotent: returns at once when the venv matches requirements.txt.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${SECRET_INJECTOR_CACHE:-/var/cache/secret-injector}"
venv="$cache/venv"
stamp="$venv/.kv-emulator-requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
mkdir -p "$cache"
if [[ ! -x "$venv/bin/python" ]]; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 ships venv separately.
    rm -rf "$venv"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
    python3 -m venv "$venv"
  fi
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"
echo "$want" > "$stamp"
echo "kv-emulator: venv ready at $venv"
