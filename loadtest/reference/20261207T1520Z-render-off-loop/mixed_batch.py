"""Probe (kept with its output): single Reserve calls on the hot SKU at a fixed rate while
ReserveBatch calls (1,000 reservations each) run on spread, on checkout A and B in turn, a
fresh pair of instances per round. Prints one JSON line per run: the singles' latency and the
batches' reservations/s. Run from the repository root:
.venv/bin/python loadtest/reference/20261207T1520Z-render-off-loop/mixed_batch.py /tmp/base2
(/tmp/base2: a built worktree of the checkout to compare against)
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from loadtest import bench, processes

ROUNDS = 3
DURATION_S = 8
SINGLES_PER_S = 500
BATCH = 1_000
BATCHES_IN_FLIGHT = 2


def measure(address: str, process) -> dict:
    batches = subprocess.Popen(
        [str(bench.LOADGEN), "run", *bench.scenario_arguments(address, "spread"),
         "--duration-s", str(DURATION_S), "--batch", str(BATCH), "--concurrency",
         str(BATCHES_IN_FLIGHT)], stdout=subprocess.PIPE, text=True)
    singles = bench.loadgen(["run", *bench.scenario_arguments(address, "hot"), "--duration-s",
                             str(DURATION_S), "--mode", "open", "--rate", str(SINGLES_PER_S),
                             "--concurrency", str(bench.OPEN_IN_FLIGHT_MAX)], process.pid)
    batch_result = json.loads(batches.communicate()[0])
    return {"singles_ok": singles["calls_ok"], **{f"singles_{name}": value for name, value
                                                   in singles["latency_ms"].items()},
            "batch_reservations_per_s": round(batch_result["operations_ok_per_s"])}


def main() -> None:
    checkouts = {"A": Path(sys.argv[1]), "B": processes.ROOT}
    with tempfile.TemporaryDirectory() as logs:
        for round_number in range(ROUNDS):
            with contextlib.ExitStack() as stack:
                order = "AB" if round_number % 2 == 0 else "BA"
                servers = {name: stack.enter_context(bench.serving(
                    "service", "t", Path(logs), f"{name}{round_number}",
                    checkout=checkouts[name]))[:2] for name in order}
                for name in order:
                    print(json.dumps({"config": name, "round": round_number,
                                      **measure(*servers[name])}), flush=True)


if __name__ == "__main__":
    main()
