"""Probe (kept with its output): each instance under the closed loop on spread with holds of
2 s for 15 s, then seconds until PostgreSQL held no active hold past its expiry. Run from the
repository root: .venv/bin/python loadtest/reference/20261207T1440Z-mass-expiry/steady_expiry.py
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from pathlib import Path

from loadtest import bench, processes
from loadtest.mass_expiry import overdue_cleared_s

CHECKOUTS = {"A": Path("/tmp/base"), "B": processes.ROOT}
TTL_MS = 2_000


def main() -> None:
    with tempfile.TemporaryDirectory() as logs, contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(bench.serving("service", "t", Path(logs), name,
                                                           checkout=checkout))
                   for name, checkout in CHECKOUTS.items()}
        for round_number in range(2):
            for name in "AB" if round_number % 2 == 0 else "BA":
                address, process, database = servers[name]
                result = bench.loadgen(["run", *bench.scenario_arguments(address, "spread",
                                                                         TTL_MS),
                                        "--mode", "closed", "--concurrency", "128",
                                        "--duration-s", "15"], process.pid)
                cleared = overdue_cleared_s(database, time.time())
                print(json.dumps({"config": name, "calls_ok_per_s": result["calls_ok_per_s"],
                                  "p99": result["latency_ms"]["p99"],
                                  "overdue_cleared_after_run_end_s": cleared}), flush=True)


if __name__ == "__main__":
    main()
