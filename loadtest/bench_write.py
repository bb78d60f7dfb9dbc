"""Write-path benchmark (not a test): what one group commit of N reservations costs.

Isolates the durable half of the batch API from gRPC: an engine makes batches of one-line
reservations (time-ordered ids and request ids, as the service makes them), and
`Persistence.write_batch` writes each to a fresh PostgreSQL database. Per batch size it reports
reservations written per second of wall time, and the CPU that this Python process and the
PostgreSQL server processes spent per reservation, so the two halves of the cost are apart.

Prints JSON (one object) and a human summary. Usage:
    .venv/bin/python -m loadtest.bench_write [--batches N] [--sizes 100,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid

from loadtest import processes
from loadtest.bench import postgres_cpu_seconds, postgres_cpu_spent
from service.engine import Engine
from service.persistence import Persistence
from service.servicer import new_reservation_id

ITEMS = 10_000
ON_HAND = 1_000_000_000_000
TTL_MS = 600_000
BATCHES_DEFAULT = 20
SIZES_DEFAULT = (100, 1_000)
WARMUP_BATCHES = 2
TIMEOUT_MS = 30_000


def reserve_requests(size: int, start: int) -> list[tuple]:
    return [(new_reservation_id(), f"order-{start + n}",
             [(f"sku-{(start + n) % ITEMS:05d}", "", 1)], TTL_MS, uuid.uuid4().hex)
            for n in range(size)]


async def measure(persistence: Persistence, engine: Engine, size: int, batches: int,
                  counter: list[int]) -> dict:
    async def one_batch() -> None:
        now_ms = int(time.time() * 1000)
        answers = engine.reserve_batch(reserve_requests(size, counter[0]), now_ms)
        counter[0] += size
        assert not any(isinstance(answer, Exception) for answer in answers)
        batch = engine.take_journal(size)
        assert batch is not None and engine.take_journal(size) is None
        await persistence.write_batch(batch)

    for _ in range(WARMUP_BATCHES):
        await one_batch()
    postgres_before = postgres_cpu_seconds()
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    for _ in range(batches):
        await one_batch()
    wall = time.perf_counter() - wall_before
    python_cpu = time.process_time() - cpu_before
    postgres_cpu = postgres_cpu_spent(postgres_before)
    count = size * batches
    return {"batch_size": size, "batches": batches, "reservations": count,
            "reservations_per_s": round(count / wall),
            "wall_ms_per_batch": round(1000 * wall / batches, 2),
            "python_cpu_us_per_reservation": round(1e6 * python_cpu / count, 2),
            "postgres_cpu_us_per_reservation": round(1e6 * postgres_cpu / count, 2)}


async def run(sizes: list[int], batches: int) -> list[dict]:
    with processes.fresh_database("bench_write") as database_url:
        persistence = Persistence(database_url, pool_size=2, timeout_ms=TIMEOUT_MS)
        await persistence.open()
        try:
            engine = Engine(journal_operations_max=max(ITEMS, *sizes))
            now_ms = int(time.time() * 1000)
            for index in range(ITEMS):
                engine.set_stock(f"sku-{index:05d}", "", ON_HAND, None, now_ms)
            while (batch := engine.take_journal(ITEMS)) is not None:
                await persistence.write_batch(batch)
            counter = [0]
            return [await measure(persistence, engine, size, batches, counter) for size in sizes]
        finally:
            await persistence.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=BATCHES_DEFAULT)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES_DEFAULT)))
    arguments = parser.parse_args()
    sizes = [int(size) for size in arguments.sizes.split(",")]
    results = asyncio.run(run(sizes, arguments.batches))
    print(json.dumps({"write_path": results}, indent=2))
    for result in results:
        print(f"batch {result['batch_size']:>5}: {result['reservations_per_s']:>8,} reservations/s"
              f" written; per reservation {result['python_cpu_us_per_reservation']} us Python CPU,"
              f" {result['postgres_cpu_us_per_reservation']} us PostgreSQL CPU",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
