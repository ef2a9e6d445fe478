#!/usr/bin/env bash
# Creates (once) the Python venv the emulator's fidelity tests use, at
# ${SECRET_INJECTOR_CACHE:-/var/cache/secret-injector}/venv (tests/venv.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../../venv.sh" venv "$here/requirements.txt"
