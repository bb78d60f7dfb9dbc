"""Two configurations (or two checkouts) of the service side by side: both serve at once (each
on its own port, database and Redis prefix), and load generator runs alternate between them
(A B, B A, ..., and B A, A B, ... in the next pair of instances, so that each takes every
place in the sequence), so a busy moment of the shared host falls on both alike. Use at least
two pairs (`--pairs`, 3 by default) for open-loop p99. Prints one JSON line
per run and a summary per rate; the figures are per call: the service's, PostgreSQL's and the
load generator's CPU, the machine's busy share and the event loop thread's.

    python -m loadtest.compare_configs --b STOCK_BATCH_WINDOW_MAX_MS=3 --scenario hot
    python -m loadtest.compare_configs --b STOCK_BATCH_WINDOW_MAX_MS=3 --mode open \
        --rates 2000,4200 --rounds 2
    git worktree add /tmp/base HEAD~1 && make -C /tmp/base build
    python -m loadtest.compare_configs --a-checkout /tmp/base --scenario spread

Not a test and not part of `make bench`: a tool for the experiments docs/BENCHMARKS.md
reports (for example "The batch window"). Needs the load generator built
(`cargo build --release --manifest-path loadtest/loadgen/Cargo.toml`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from loadtest import bench, processes

TOKEN = "compare-configs"
FIGURES = ("calls_per_s", "p50_ms", "p99_ms", "service_cpu_us", "postgres_cpu_us",
           "loadgen_cpu_us", "machine_busy", "loop_busy")


def machine_times() -> tuple[int, int]:
    """(total, idle + iowait) jiffies of all processors, from /proc/stat."""
    values = [int(field) for field in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(values), values[3] + values[4]


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name.startswith("STOCK_"):
            raise SystemExit(f"--a/--b take STOCK_NAME=value, not {pair!r}")
        env[name] = value
    return env


def measure(address: str, process, arguments: argparse.Namespace, rate: int | None) -> dict:
    load = ["run", *bench.scenario_arguments(address, arguments.scenario),
            "--duration-s", str(arguments.duration_s)]
    if rate is None:
        load += ["--mode", "closed", "--concurrency", str(bench.CLOSED_CONCURRENCY)]
    else:
        load += ["--mode", "open", "--rate", str(rate), "--concurrency",
                 str(bench.OPEN_IN_FLIGHT_MAX)]
    started_at = time.time()
    total_before, idle_before = machine_times()
    loop_before, wall_before = bench.cpu_seconds(process.pid, thread=process.pid), time.monotonic()
    result = bench.loadgen(load, process.pid)
    total_after, idle_after = machine_times()
    wall = time.monotonic() - wall_before
    loop = bench.cpu_seconds(process.pid, thread=process.pid) - loop_before
    # CPU counters span the warm-up too: per call over warm-up plus measured time.
    calls = result["calls_ok_per_s"] * (arguments.duration_s + bench.WARMUP_S)
    per_call_us = 1e6 / max(calls, 1.0)
    return {
        "started_at": round(started_at, 3),
        "calls_per_s": result["calls_ok_per_s"],
        "p50_ms": result["latency_ms"]["p50"],
        "p99_ms": result["latency_ms"]["p99"],
        "service_cpu_us": result["server_cpu_s"] * per_call_us,
        "postgres_cpu_us": result["postgres_cpu_s"] * per_call_us,
        "loadgen_cpu_us": result["loadgen_cpu_s"] * per_call_us,
        "machine_busy": 1 - (idle_after - idle_before) / max(total_after - total_before, 1),
        "loop_busy": loop / wall,
    }


def b_better(a: dict, b: dict, closed: bool) -> bool:
    """More calls/s in the closed loop; a lower p99 at a fixed rate."""
    return b["calls_per_s"] > a["calls_per_s"] if closed else b["p99_ms"] < a["p99_ms"]


def run_order(pair: int, round_number: int) -> str:
    """Which configuration runs first in a round. The order flips every round and, from one
    pair of instances to the next, every position flips too: with the order fixed per round
    (A at runs 1, 4, 5 and 8 of every pair), A/A controls had the B slot better in 26 of 32
    open-loop runs (docs/BENCHMARKS.md, "Comparison runs' order")."""
    return "AB" if (round_number + pair) % 2 == 0 else "BA"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", nargs="*", default=[], help="STOCK_NAME=value for A")
    parser.add_argument("--b", nargs="*", default=[], help="STOCK_NAME=value for B")
    parser.add_argument("--a-checkout", type=Path, default=processes.ROOT,
                        help="run A from this checkout (its .venv built: `make build`)")
    parser.add_argument("--b-checkout", type=Path, default=processes.ROOT)
    parser.add_argument("--scenario", choices=bench.SCENARIOS, default="hot")
    parser.add_argument("--mode", choices=("closed", "open"), default="closed")
    parser.add_argument("--rates", default="2000", help="open loop: calls/s, comma-separated")
    parser.add_argument("--pairs", type=int, default=3, help="fresh pairs of instances")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each per pair and rate")
    parser.add_argument("--duration-s", type=int, default=5)
    arguments = parser.parse_args()
    configs = {"A": parse_env(arguments.a), "B": parse_env(arguments.b)}
    rates: list[int | None] = ([None] if arguments.mode == "closed"
                               else [int(rate) for rate in arguments.rates.split(",")])
    checkouts = {"A": arguments.a_checkout.resolve(), "B": arguments.b_checkout.resolve()}
    runs: dict[int | None, dict[str, list[dict]]] = {rate: {"A": [], "B": []} for rate in rates}
    with tempfile.TemporaryDirectory() as logs:
        # Two instances of the same configuration differed by up to 15 % in calls/s (their
        # placement on the cores, their databases): each pair of instances is new, started
        # in alternating order, and the summary takes every pair's rounds together.
        for pair in range(arguments.pairs):
            with contextlib.ExitStack() as stack:
                # (address, process) of each; its main thread is its event loop's.
                servers = {name: stack.enter_context(bench.serving(
                    "service", TOKEN, Path(logs), f"{name}{pair}", extra_env=configs[name],
                    checkout=checkouts[name]))[:2]
                    for name in run_order(pair, 0)}
                for rate in rates:
                    for round_number in range(arguments.rounds):
                        for name in run_order(pair, round_number):
                            run = measure(*servers[name], arguments, rate)
                            runs[rate][name].append(run)
                            print(json.dumps({"config": name, "env": configs[name], "pair": pair,
                                              "rate": rate, "scenario": arguments.scenario,
                                              **run}), flush=True)
    for rate in rates:
        by_name = runs[rate]
        wins = sum(b_better(a, b, rate is None)
                   for a, b in zip(by_name["A"], by_name["B"], strict=True))
        for name in "AB":
            medians = ", ".join(
                f"{figure} {statistics.median(run[figure] for run in by_name[name]):,.2f}"
                for figure in FIGURES)
            print(f"{arguments.scenario} {arguments.mode} {rate or ''} {name} {configs[name]}:"
                  f" median {medians}", file=sys.stderr)
        print(f"B better in {wins} of {len(by_name['B'])} runs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
