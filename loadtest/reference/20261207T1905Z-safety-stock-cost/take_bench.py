"""Probe (kept with its output, README): take_journal of 1,000 one-line reserves on 1,000 distinct items, plus what the committer
does with the items (the invalidation keys): median microseconds over many rounds.
Run: .venv/bin/python take_bench.py items (checkouts before item_keys) | item_keys"""
import os, statistics, sys, time
from service.engine import Engine
ITEMS, SIZE, ROUNDS = 10_000, 1_000, 300
engine = Engine()
for i in range(ITEMS):
    engine.set_stock(f"sku-{i:05d}", "", 10**12, None, 1_000)
engine.take_journal(ITEMS)
keys_attr = sys.argv[1]
times = []
n = 0
for r in range(ROUNDS):
    requests = [(os.urandom(16).hex(), "o", [(f"sku-{(n + k) % ITEMS:05d}", "", 1)], 600_000, None)
                for k in range(SIZE)]
    n += SIZE
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
print(keys_attr, f"{statistics.median(times) * 1e6:.0f} us median, min {min(times) * 1e6:.0f}", count)
