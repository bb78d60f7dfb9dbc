"""Probe (kept with its output): each instance under the closed loop on spread with holds of 2 s for
15 s, then seconds until PostgreSQL held no active hold past its expiry. Run from the
repository root: .venv/bin/python loadtest/reference/20261207T1440Z-mass-expiry/steady_expiry.py"""
import contextlib, json, sys, tempfile, time
from pathlib import Path
from loadtest import bench, processes
from loadtest.mass_expiry import overdue_cleared_s
checkouts = {"A": Path("/tmp/base"), "B": processes.ROOT}
with tempfile.TemporaryDirectory() as logs, contextlib.ExitStack() as stack:
    servers = {n: stack.enter_context(bench.serving("service", "t", Path(logs), n, checkout=c)) for n, c in checkouts.items()}
    for rnd in range(2):
        for name in ("AB" if rnd % 2 == 0 else "BA"):
            address, process, database = servers[name]
            r = bench.loadgen(["run", *bench.scenario_arguments(address, "spread", 2000), "--mode", "closed", "--concurrency", "128", "--duration-s", "15"], process.pid)
            end = time.time()
            cleared = overdue_cleared_s(database, end)
            print(json.dumps({"config": name, "calls_ok_per_s": r["calls_ok_per_s"], "p99": r["latency_ms"]["p99"], "overdue_cleared_after_run_end_s": cleared}), flush=True)
