"""Probe (kept with its output, README): take_journal of 1,000 one-line reserves on 1,000
distinct items, plus what the committer does with the items (the invalidation keys): median
microseconds per batch over 300 rounds.

Run: .venv/bin/python take_bench.py items      (checkouts before JournalBatch.item_keys)
     .venv/bin/python take_bench.py item_keys  (after)
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from service.engine import Engine

ITEMS, SIZE, ROUNDS = 10_000, 1_000, 300


def main(keys_attr: str) -> None:
    engine = Engine()
    for index in range(ITEMS):
        engine.set_stock(f"sku-{index:05d}", "", 10**12, None, 1_000)
    engine.take_journal(ITEMS)
    times, made, count = [], 0, 0
    for _ in range(ROUNDS):
        requests = [(os.urandom(16).hex(), "o", [(f"sku-{(made + k) % ITEMS:05d}", "", 1)],
                     600_000, None) for k in range(SIZE)]
        made += SIZE
        engine.reserve_batch(requests, 2_000)
        start = time.perf_counter()
        batch = engine.take_journal(SIZE)
        if keys_attr == "items":
            keys = [(row[0], row[1]) for row in batch.items]
        else:
            keys = list(batch.item_keys)
        count = len(keys)
        times.append(time.perf_counter() - start)
        del batch
    print(keys_attr, f"{statistics.median(times) * 1e6:.0f} us median,"
          f" min {min(times) * 1e6:.0f}", count)


if __name__ == "__main__":
    main(sys.argv[1])
