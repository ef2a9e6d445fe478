#!/usr/bin/env bash
# venv.sh <name> <requirements.txt>: creates (once) the Python venv
# ${SECRET_INJECTOR_CACHE:-/var/cache/secret-injector}/<name> with the pinned
# requirements, outside the repo so clean clones reuse it. Idempotent:
# returns at once when the venv matches the requirements (a sha256 stamp).
set -euo pipefail
name="$1"
requirements="$2"
cache="${SECRET_INJECTOR_CACHE:-/var/cache/secret-injector}"
venv="$cache/$name"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"

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
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
echo "$want" > "$stamp"
echo "venv $name ready at $venv"
