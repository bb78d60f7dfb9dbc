"""Probe (kept with its output): the ReserveBatch burst of `make bench` (batches of 1,000 on
spread, BATCH_CONCURRENCY in flight, BATCH_DURATION_S, a fresh instance per run) on two
checkouts in turn, the order turned each pair, to tell a change of the code from the host.
Prints one JSON line per run. Run from the repository root:
.venv/bin/python loadtest/reference/20261207T1750Z-batch-ab/batch_ab.py /tmp/base [pairs]
(/tmp/base: a built worktree of the checkout to compare against)
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from loadtest import bench, processes

BATCH = 1_000


def burst(checkout: Path, logs: Path, part: str) -> dict:
    with bench.serving("service", "batch-ab", logs, part, checkout=checkout) as (
            address, process, database):
        result = bench.loadgen(["run", *bench.scenario_arguments(address, "spread"),
                                "--mode", "closed", "--batch", str(BATCH), "--concurrency",
                                str(bench.BATCH_CONCURRENCY), "--duration-s",
                                str(bench.BATCH_DURATION_S)], process.pid)
        return {"reservations_per_s": round(result["operations_ok_per_s"]),
                "calls_p50_ms": result["latency_ms"]["p50"],
                "calls_p99_ms": result["latency_ms"]["p99"],
                "server_cpu_s": result["server_cpu_s"],
                "postgres_cpu_s": result["postgres_cpu_s"],
                "projected_after_s": bench.journal_log_drained(database)}


def main() -> None:
    checkouts = {"A": Path(sys.argv[1]).resolve(), "B": processes.ROOT}
    pairs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory() as logs:
        for pair in range(pairs):
            for name in ("AB" if pair % 2 == 0 else "BA"):
                print(json.dumps({"config": name, "checkout": str(checkouts[name]),
                                  "pair": pair,
                                  **burst(checkouts[name], Path(logs), f"{name}{pair}")}),
                      flush=True)


if __name__ == "__main__":
    main()
