#!/usr/bin/env bash
# Runs the fuzz targets with libFuzzer, each for SECONDS (default 60), two at a time (one per
# core), growing their corpus under fuzz/corpus/<target>/, then prints each target's executions.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
#
#   fuzz/run.sh [SECONDS] [TARGET...]     # all targets when none is named
#
# A crash stops that target and leaves its input under fuzz/artifacts/<target>/: reproduce it
# on stable with `cargo test --test fuzz_corpus` after copying it to fuzz/regressions/<target>/.
set -euo pipefail
seconds=${1:-60}
shift || true
cd "$(dirname "$0")"
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi
# No sanitizer: weft is safe Rust; what the targets find are panics and broken assertions.
cargo +nightly fuzz build -s none
mkdir -p target/logs
run() {
    local target=$1 seconds=$2
    mkdir -p "corpus/$target"
    if cargo +nightly fuzz run -s none "$target" -- -max_total_time="$seconds" -max_len=16384 \
        -rss_limit_mb=4096 -print_final_stats=1 >"target/logs/$target.log" 2>&1; then
        echo "$target: $(grep -o 'stat::number_of_executed_units: [0-9]*' "target/logs/$target.log" | grep -o '[0-9]*$') executions in ${seconds} s, no crash"
    else
        echo "$target: FAILED, see fuzz/target/logs/$target.log"
        return 1
    fi
}
export -f run
printf '%s\n' "${targets[@]}" | xargs -P 2 -I{} bash -c "run {} $seconds"
