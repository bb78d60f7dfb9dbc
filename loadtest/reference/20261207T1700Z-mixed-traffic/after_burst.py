"""Probe (kept with its output): single Reserve calls right after a ReserveBatch burst, while
the service projects the burst's journal log into the tables, on two configurations side by
side (`--a`/`--b` STOCK_ settings, as in loadtest/compare_configs.py), rounds alternating.
Each round: ReserveBatch calls (1,000 reservations each, 2 in flight, on spread) for
BURST_S (with `--singles-in-burst`, Reserve on hot at SINGLES_PER_S beside them), then
Reserve on hot at SINGLES_PER_S for SPAN_S at once (the projection runs meanwhile), then the
wait until the journal log is empty. `--a-checkout`/`--b-checkout` serve other checkouts.
Prints one JSON line per run.
Run from the repository root, e.g.:
.venv/bin/python loadtest/reference/20261207T1700Z-mixed-traffic/after_burst.py \\
    --b STOCK_PROJECTION_PAUSE_PERCENT=100
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import tempfile
import time
from pathlib import Path

from loadtest import bench, processes
from loadtest.compare_configs import parse_env, run_order

BURST_S = 6
SPAN_S = 8
SINGLES_PER_S = 500
BATCH = 1_000
BATCHES_IN_FLIGHT = 2


def singles(address: str, process, seconds: int) -> dict:
    return bench.open_loop(address, process, "hot", SINGLES_PER_S, duration_s=seconds,
                           warmup_s=0)


def one_round(address: str, process, database: str, singles_in_burst: bool) -> dict:
    in_burst = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        during = pool.submit(singles, address, process, BURST_S) if singles_in_burst else None
        burst = bench.loadgen(["run", *bench.scenario_arguments(address, "spread"),
                               "--warmup-s", "0", "--duration-s", str(BURST_S), "--batch",
                               str(BATCH), "--concurrency", str(BATCHES_IN_FLIGHT)], process.pid)
        burst_end = time.monotonic()
        if during is not None:
            latency = during.result()["latency_ms"]
            in_burst = {f"in_burst_{name}_ms": latency[name] for name in ("p50", "p99", "max")}
    after = singles(address, process, SPAN_S)
    bench.journal_log_drained(database)
    return {"burst_reservations_per_s": round(burst["operations_ok_per_s"]),
            "projected_after_burst_s": round(time.monotonic() - burst_end, 2),
            "singles_ok": after["calls_ok"], **in_burst,
            **{f"singles_{name}_ms": value for name, value in after["latency_ms"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", nargs="*", default=[])
    parser.add_argument("--b", nargs="*", default=[])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--a-checkout", type=Path, default=processes.ROOT)
    parser.add_argument("--b-checkout", type=Path, default=processes.ROOT)
    parser.add_argument("--singles-in-burst", action="store_true",
                        help="Reserve on hot during the burst too (its journal_log rows then "
                             "hold the hot item)")
    arguments = parser.parse_args()
    configs = {"A": parse_env(arguments.a), "B": parse_env(arguments.b)}
    checkouts = {"A": arguments.a_checkout.resolve(), "B": arguments.b_checkout.resolve()}
    with tempfile.TemporaryDirectory() as logs, contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(bench.serving(
            "service", "burst", Path(logs), name, extra_env=configs[name],
            checkout=checkouts[name])) for name in "AB"}
        for round_number in range(arguments.rounds):
            for name in run_order(0, round_number):
                print(json.dumps({"config": name, "checkout": str(checkouts[name]),
                                  "env": configs[name], "round": round_number,
                                  **one_round(*servers[name], arguments.singles_in_burst)}),
                      flush=True)


if __name__ == "__main__":
    main()
