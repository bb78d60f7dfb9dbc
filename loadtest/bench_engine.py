"""Engine benchmark through the binding (not a test).

Measures, in one run on this machine:
- reserve calls per second from a plain Python loop through ``service.engine.Engine``;
- the same loop against a pure-Python dict implementation of reserve (the baseline), as a ratio;
- bulk ``load`` of items + active holds: seconds and the process RSS it adds;
- ``take_journal`` of full batches (reserve with a request id + release, as the service
  journals them): milliseconds per batch, the time the committer's call takes.

Prints JSON (one object) and a human summary. Usage:
    .venv/bin/python -m loadtest.bench_engine [--calls N] [--load-items N] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

from service.engine import LIMITS, Engine

NOW_MS = 1_700_000_000_000
TTL_MS = LIMITS["TTL_MS_DEFAULT"]
ITEMS = 1_000
CALLS_DEFAULT = 1_000_000
CALLS_QUICK = 100_000
# The journal is drained between chunks (outside the timed section), as the service's committer
# would; its cost is reported separately.
CHUNK_CALLS = 100_000
LOAD_ITEMS_DEFAULT = 1_000_000
LOAD_ITEMS_QUICK = 100_000
TARGET_RESERVES_PER_S = 1_000_000
TARGET_LOAD_S = 5.0
TARGET_LOAD_RSS_BYTES = 1 << 30
JOURNAL_BATCHES = 20
JOURNAL_BATCHES_QUICK = 5


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class DictEngine:
    """Baseline: the simplest correct reserve in pure Python (dicts, no journal, no expiry)."""

    def __init__(self, skus: list[str]) -> None:
        self.on_hand = {(sku, ""): 10**12 for sku in skus}
        self.reserved = dict.fromkeys(self.on_hand, 0)
        self.holds: dict[str, tuple] = {}

    def reserve(self, reservation_id, order_id, lines, ttl_ms, now_ms):
        if reservation_id in self.holds:
            raise KeyError(reservation_id)
        wanted: dict[tuple[str, str], int] = {}
        for sku, location, quantity in lines:
            wanted[(sku, location)] = wanted.get((sku, location), 0) + quantity
        for key, quantity in wanted.items():
            if self.on_hand[key] - self.reserved[key] < quantity:
                raise ValueError(key)
        for key, quantity in wanted.items():
            self.reserved[key] += quantity
        self.holds[reservation_id] = (order_id, lines, now_ms + ttl_ms)
        return self.holds[reservation_id]


def run_reserves(reserve, ids: list[str], lines: list[list[tuple]], drain) -> tuple[float, float]:
    """Returns (seconds in reserve calls, seconds draining the journal)."""
    reserve_s = drain_s = 0.0
    line_count = len(lines)
    for chunk_start in range(0, len(ids), CHUNK_CALLS):
        chunk = ids[chunk_start:chunk_start + CHUNK_CALLS]
        start = time.perf_counter()
        for index, reservation_id in enumerate(chunk):
            reserve(reservation_id, "order", lines[index % line_count], TTL_MS, NOW_MS)
        reserve_s += time.perf_counter() - start
        start = time.perf_counter()
        drain()
        drain_s += time.perf_counter() - start
    return reserve_s, drain_s


def bench_reserve(calls: int) -> dict:
    skus = [f"sku-{i:06}" for i in range(ITEMS)]
    lines = [[(sku, "", 1)] for sku in skus]
    ids = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(calls)]
    engine = Engine(reservations_active_max=max(calls, 1), journal_operations_max=CHUNK_CALLS * 2)
    for sku in skus:
        engine.set_stock(sku, "", 10**12, None, NOW_MS)

    def drain() -> None:
        while engine.take_journal(LIMITS["JOURNAL_TAKE_OPERATIONS_MAX"]) is not None:
            pass

    drain()
    gc.collect()
    gc.disable()
    try:
        engine_s, drain_s = run_reserves(engine.reserve, ids, lines, drain)
        baseline = DictEngine(skus)
        baseline_s, _ = run_reserves(baseline.reserve, ids, lines, lambda: None)
    finally:
        gc.enable()
    return {
        "calls": calls,
        "engine_reserves_per_s": calls / engine_s,
        "engine_journal_drain_s": drain_s,
        "engine_reserves_per_s_including_drain": calls / (engine_s + drain_s),
        "baseline_dict_reserves_per_s": calls / baseline_s,
        "ratio_engine_to_baseline": baseline_s / engine_s,
        "target_reserves_per_s": TARGET_RESERVES_PER_S,
    }


def bench_load(count: int) -> dict:
    gc.collect()
    rss_start = rss_bytes()
    start = time.perf_counter()
    items = [(f"sku-{i:08}", "", 10, 1, 0) for i in range(count)]
    holds = [(f"{i:08x}-0000-4000-8000-000000000000", f"order-{i}", NOW_MS + TTL_MS, NOW_MS,
              [(f"sku-{i:08}", "", 1)]) for i in range(count)]
    build_s = time.perf_counter() - start
    rss_inputs = rss_bytes()
    engine = Engine(items_max=max(count, 1), reservations_active_max=max(count, 1))
    start = time.perf_counter()
    engine.load(items, holds, [], NOW_MS)
    load_s = time.perf_counter() - start
    rss_loaded = rss_bytes()
    del items, holds
    gc.collect()
    rss_engine_only = rss_bytes()
    stats = engine.stats()
    assert stats["items"] == count and stats["reservations_active"] == count
    return {
        "items": count,
        "holds": count,
        "python_inputs_build_s": build_s,
        "load_s": load_s,
        "rss_delta_load_bytes": rss_loaded - rss_inputs,
        "rss_delta_engine_after_inputs_freed_bytes": rss_engine_only - rss_start,
        "target_load_s": TARGET_LOAD_S,
        "target_rss_bytes": TARGET_LOAD_RSS_BYTES,
    }


def bench_take_journal(batches: int) -> dict:
    """Milliseconds per take_journal of JOURNAL_TAKE_OPERATIONS_MAX operations (median)."""
    operations = LIMITS["JOURNAL_TAKE_OPERATIONS_MAX"]
    skus = [f"sku-{i:06}" for i in range(ITEMS)]
    engine = Engine(journal_operations_max=operations * 2)
    for sku in skus:
        engine.set_stock(sku, "", 10**12, None, NOW_MS)
    while engine.take_journal(operations) is not None:
        pass
    times = []
    for batch in range(batches):
        for i in range(operations // 2):
            reservation_id = f"{batch:04x}{i:04x}-0000-4000-8000-000000000000"
            engine.reserve(reservation_id, "order", [(skus[i % ITEMS], "", 1)], TTL_MS, NOW_MS,
                           reservation_id)
            engine.release(reservation_id, NOW_MS)
        gc.disable()
        start = time.perf_counter()
        taken = engine.take_journal(operations)
        times.append(time.perf_counter() - start)
        gc.enable()
        assert taken is not None and len(taken.ledger) == operations
    times.sort()
    return {
        "operations_per_batch": operations,
        "batches": batches,
        "take_journal_ms_median": times[len(times) // 2] * 1e3,
        "take_journal_ms_min": times[0] * 1e3,
    }


def summary(results: dict) -> str:
    reserve = results["reserve"]
    load = results["load"]
    journal = results["take_journal"]
    mib = 1 << 20
    return "\n".join([
        f"reserve through the binding: {reserve['engine_reserves_per_s']:,.0f} calls/s "
        f"(target {TARGET_RESERVES_PER_S:,}); "
        f"{reserve['engine_reserves_per_s_including_drain']:,.0f}/s including journal drains",
        f"pure-Python dict baseline:   {reserve['baseline_dict_reserves_per_s']:,.0f} calls/s "
        f"-> engine is {reserve['ratio_engine_to_baseline']:.2f}x the baseline",
        f"load {load['items']:,} items + {load['holds']:,} holds: {load['load_s']:.2f} s "
        f"(target {TARGET_LOAD_S} s), RSS +{load['rss_delta_load_bytes'] / mib:,.0f} MiB during "
        f"load, engine alone +{load['rss_delta_engine_after_inputs_freed_bytes'] / mib:,.0f} MiB "
        f"(target {TARGET_LOAD_RSS_BYTES / mib:,.0f} MiB)",
        f"take_journal of {journal['operations_per_batch']:,} operations: "
        f"{journal['take_journal_ms_median']:.2f} ms median "
        f"(min {journal['take_journal_ms_min']:.2f} ms)",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int)
    parser.add_argument("--load-items", type=int)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the harness")
    args = parser.parse_args(argv)
    calls = args.calls or (CALLS_QUICK if args.quick else CALLS_DEFAULT)
    load_items = args.load_items or (LOAD_ITEMS_QUICK if args.quick else LOAD_ITEMS_DEFAULT)
    batches = JOURNAL_BATCHES_QUICK if args.quick else JOURNAL_BATCHES
    results = {"reserve": bench_reserve(calls), "load": bench_load(load_items),
               "take_journal": bench_take_journal(batches)}
    print(json.dumps(results, indent=2))
    print(summary(results), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
