#!/usr/bin/env bash
# `make bench`: builds the Rust load generator, then measures the empty server, the naive
# baseline and the service (loadtest/bench.py), then the engine's own benchmarks. Everything
# lands in loadtest/results/. BENCH_QUICK=1 runs every step briefly, to check the harness.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RESULTS=loadtest/results
CARGO_BENCH_TIMEOUT_S=600
mkdir -p "$RESULTS"

# The load generator is a standalone crate with its own target dir; 2 jobs: the machine has 2
# cores and other work may be running.
cargo build --release -j 2 --quiet --manifest-path loadtest/loadgen/Cargo.toml

"$PY" -m loadtest.bench

# The engine's criterion benchmarks, when the crate has them; skipped in quick mode because
# the fat-LTO build alone takes minutes.
if [ -z "${BENCH_QUICK:-}" ] || [ "${BENCH_QUICK}" = 0 ]; then
    if [ -d core_rs/benches ]; then
        # Only the bench targets: the library's own test harness rejects criterion's options.
        if timeout "$CARGO_BENCH_TIMEOUT_S" cargo bench -j 2 --quiet --bench '*' -- \
                --warm-up-time 1 --measurement-time 3 > "$RESULTS/cargo_bench.txt" 2>&1; then
            "$PY" -m loadtest.criterion_results target/criterion "$RESULTS/cargo_bench.json"
        else
            echo "cargo bench failed or timed out: see $RESULTS/cargo_bench.txt" >&2
            rm -f "$RESULTS/cargo_bench.json"  # never leave figures of an older run behind
        fi
        # The engine's rare slow calls at a steady 200,000 live holds (tables growing, stale
        # heap entries dropped), over 1,000 items and on one hot item: one JSON line each.
        rm -f "$RESULTS/hold_churn.jsonl"
        if cargo build --release -j 2 --quiet --example hold_churn; then
            for items in 1000 1; do
                target/release/examples/hold_churn 200000 600000 "$items"
            done > "$RESULTS/hold_churn.jsonl"
            "$PY" -m loadtest.hold_churn_summary "$RESULTS/hold_churn.jsonl"
        fi
    fi
fi
echo "bench: results in $RESULTS (summary.md, latest.json, throughput.png, latency.png)"
