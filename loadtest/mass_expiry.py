"""A flash sale's abandoned holds, expiring at once: the latency of the calls that arrive
meanwhile. Each round reserves a burst of holds with a short TTL through ReserveBatch, waits
until the service has written it all down (its journal log projected) and the burst is
`--lead-s` from falling due, then offers Reserve calls on the hot SKU at a fixed rate for a
span that covers the moment the burst falls due, and records their latency (p50, p99,
p99.9, max), the slowest call of each 100 ms, and how long after the due moment PostgreSQL
held every expiration. Two checkouts (or the same one twice, `--a`/`--b` setting STOCK_
variables) serve side by side, each on its own port and database, and their rounds
alternate, as in loadtest/compare_configs.py.

    git worktree add /tmp/base HEAD~1 && make -C /tmp/base build
    .venv/bin/python -m loadtest.mass_expiry --a-checkout /tmp/base --rounds 3

The probe behind docs/BENCHMARKS.md, "Expiry rounds in short calls"; `make bench` runs
`expiry_round` on the service alone. Needs the load generator built
(`cargo build --release --manifest-path loadtest/loadgen/Cargo.toml`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from loadtest import bench, processes
from loadtest.compare_configs import parse_env, run_order
from loadtest.db_check import OVERDUE

TOKEN = "mass-expiry"
BURST_BATCH = 1_000
BURST_IN_FLIGHT = 4
FIGURES = ("p50", "p99", "p999", "max")
OVERDUE_POLL_S = 0.1
OVERDUE_WAIT_S = 120.0


def burst(address: str, process, ttl_ms: int) -> int:
    """Reserves about a second's worth of batched holds that fall due after `ttl_ms`; returns
    how many."""
    result = bench.loadgen(["run", *bench.scenario_arguments(address, "spread", ttl_ms),
                            "--warmup-s", "0", "--duration-s", "1", "--batch",
                            str(BURST_BATCH), "--concurrency", str(BURST_IN_FLIGHT)],
                           process.pid)
    return int(result["calls_ok"] * BURST_BATCH)


def overdue_cleared_s(database: str, due_at: float) -> float:
    """Seconds from `due_at` (epoch s) until PostgreSQL holds no active reservation past its
    expiry: how long the sweeper took to write the burst's expirations down."""
    async def wait() -> float:
        connection = await asyncpg.connect(database)
        try:
            deadline = time.monotonic() + OVERDUE_WAIT_S
            while time.monotonic() < deadline:
                overdue = await connection.fetchval(OVERDUE, "%", int(time.time() * 1000))
                if overdue == 0:
                    return time.time() - due_at
                await asyncio.sleep(OVERDUE_POLL_S)
            raise RuntimeError(f"holds still active past expiry after {OVERDUE_WAIT_S} s")
        finally:
            await connection.close()

    return round(asyncio.run(wait()), 2)


def expiry_round(address: str, process, database: str, *, ttl_ms: int, lead_s: float,
                 rate: int, span_s: int) -> dict:
    """One round on one instance: the burst, the wait until it is written down and
    `lead_s` from falling due, the calls meanwhile, the wait until its expirations are."""
    started_at = time.time()
    holds = burst(address, process, ttl_ms)
    projected_s = bench.journal_log_drained(database)
    due_at = started_at + ttl_ms / 1000
    due_in_s = due_at - time.time()
    if due_in_s < lead_s:
        raise RuntimeError(f"the burst was written down {due_in_s:.1f} s before it fell due:"
                           " raise the TTL")
    time.sleep(due_in_s - lead_s)
    # Reserve calls on hot at `rate` for `span_s`, past the burst's expiry.
    result = bench.open_loop(address, process, "hot", rate, duration_s=span_s, warmup_s=0)
    cleared_s = overdue_cleared_s(database, due_at)
    latency = result["latency_ms"]
    return {"started_at": round(started_at, 3), "holds": holds, "projected_s": projected_s,
            "overdue_cleared_s": cleared_s, "rate": rate, "calls_ok": result["calls_ok"],
            "errors": result.get("errors", {}),
            **{figure: latency[figure] for figure in FIGURES},
            "slowest_per_100ms": (result.get("timeline") or {}).get("max_ms")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", nargs="*", default=[], help="STOCK_NAME=value for A")
    parser.add_argument("--b", nargs="*", default=[], help="STOCK_NAME=value for B")
    parser.add_argument("--a-checkout", type=Path, default=processes.ROOT)
    parser.add_argument("--b-checkout", type=Path, default=processes.ROOT)
    parser.add_argument("--rounds", type=int, default=4, help="bursts on each, alternating")
    parser.add_argument("--ttl-ms", type=int, default=20_000, help="the burst's holds' TTL")
    parser.add_argument("--lead-s", type=float, default=2.0,
                        help="the calls start this long before the burst falls due")
    parser.add_argument("--span-s", type=int, default=6, help="seconds of calls")
    parser.add_argument("--rate", type=int, default=1_000, help="Reserve calls/s meanwhile")
    arguments = parser.parse_args()
    checkouts = {"A": arguments.a_checkout.resolve(), "B": arguments.b_checkout.resolve()}
    configs = {"A": parse_env(arguments.a), "B": parse_env(arguments.b)}
    runs: dict[str, list[dict]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory() as logs, contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(bench.serving(
            "service", TOKEN, Path(logs), name, extra_env=configs[name],
            checkout=checkouts[name]))
            for name in "AB"}
        for round_number in range(arguments.rounds):
            for name in run_order(0, round_number):
                address, process, database = servers[name]
                run = {"checkout": str(checkouts[name]), "env": configs[name],
                       **expiry_round(address, process, database, ttl_ms=arguments.ttl_ms,
                                      lead_s=arguments.lead_s, rate=arguments.rate,
                                      span_s=arguments.span_s)}
                runs[name].append(run)
                print(json.dumps({"config": name, "round": round_number, **run}), flush=True)
    for name in "AB":
        medians = ", ".join(f"{figure} {statistics.median(run[figure] for run in runs[name]):.2f}"
                            for figure in FIGURES)
        ranges = ", ".join(f"{figure} {min(run[figure] for run in runs[name]):.2f}-"
                           f"{max(run[figure] for run in runs[name]):.2f}" for figure in FIGURES)
        print(f"{name} {checkouts[name]} {configs[name]}: median ms {medians};"
              f" ranges {ranges}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
