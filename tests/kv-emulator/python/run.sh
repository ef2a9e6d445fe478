#!/usr/bin/env bash
# Builds the kv-emulator binary, sets up the venv and runs the Python SDK
# fidelity tests with pytest (its exit code is this script's). Extra
# arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cd "$root"
cargo build -q -p kv-emulator --bin kv-emulator
"$here/setup.sh"
export PYTHONDONTWRITEBYTECODE=1
export KV_EMULATOR_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/kv-emulator"
venv="${SECRET_INJECTOR_CACHE:-/var/cache/secret-injector}/venv"
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q "$@"
