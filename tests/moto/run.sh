#!/usr/bin/env bash
# The sidecar against moto (AWS's stand-in, from PyPI in a cached venv):
# builds the venv once, then runs sidecar/tests/aws_moto.rs, whose tests are
# #[ignore]d without it. Extra arguments go to the test binary.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
"$root/tests/venv.sh" moto-venv "$here/requirements.txt"
export MOTO_VENV="${SECRET_INJECTOR_CACHE:-/var/cache/secret-injector}/moto-venv"
export PYTHONDONTWRITEBYTECODE=1
cd "$root"
exec cargo test -q -p secret-injector-sidecar --test aws_moto -- --ignored "$@"
