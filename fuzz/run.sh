#!/usr/bin/env bash
# Builds every fuzz target with the machine's (stable) Rust toolchain and runs
# each for SECONDS (default 20), one at a time, in one libFuzzer process.
# Exits non-zero when any target finds a crash or a violated invariant.
#
#   fuzz/run.sh [SECONDS]
#   FUZZ_TARGETS="admission inject_stream" fuzz/run.sh 180
#   FUZZ_SKIP=review-memory fuzz/run.sh    # mute a known finding's invariant
#
# New coverage goes to fuzz/target/corpus/<target>/ (not committed); the
# committed seeds in fuzz/corpus/<target>/ are only read. Findings go to
# fuzz/artifacts/<target>/. See fuzz/README.md.
set -euo pipefail

seconds=${1:-20}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
all=(annotations secret_ref file_name scalars provider_class admission inject_stream)
read -r -a targets <<<"${FUZZ_TARGETS:-${all[*]}}"

# cargo-fuzz from crates.io, once (then cached in ~/.cargo/bin).
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# `-s none`: no -Zsanitizer, the one nightly-only flag cargo-fuzz passes; its
# others (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*, --cfg
# fuzzing) are stable. libfuzzer-sys builds libFuzzer with the system g++.
build_start=$SECONDS
cargo fuzz build -s none --debug-assertions
echo "build: $((SECONDS - build_start)) s"

host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="target/$host/release"

max_len() {
    case $1 in
        admission | inject_stream) echo 65536 ;;
        provider_class) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

failed=()
summary=()
for t in "${targets[@]}"; do
    work="target/corpus/$t"
    artifacts="artifacts/$t/"
    log="target/logs/$t.log"
    mkdir -p "$work" "$artifacts" "$(dirname "$log")"
    dict=()
    [[ -f dict/$t.dict ]] && dict=("-dict=dict/$t.dict")
    echo "== $t: ${seconds}s"
    set +e
    "$bin_dir/$t" "$work" "corpus/$t" "${dict[@]}" \
        -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts" \
        >"$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [[ -n $execs ]] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    if [[ $rc -eq 0 ]] && grep -q 'DONE' "$log"; then
        summary+=("$t: ${execs:-?} executions, no finding")
    else
        failed+=("$t")
        artifact=$(sed -n 's/.*Test unit written to //p' "$log" | tail -1)
        why=$(grep -m1 -E "^invariant .* violated" "$log" ||
            grep -m1 -A1 -E "panicked at" "$log" | tr '\n' ' ' ||
            grep -m1 -E "ERROR: libFuzzer|out-of-memory|timeout" "$log" || true)
        summary+=("$t: FINDING after ${execs:-?} executions (exit $rc): ${why:0:300}")
        summary+=("    input: ${artifact:-none written}; log: fuzz/$log")
        summary+=("    reproduce: fuzz/$bin_dir/$t ${artifact:+fuzz/$artifact}")
    fi
done

echo
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
    echo "findings in: ${failed[*]}"
    exit 1
fi
