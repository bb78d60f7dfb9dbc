"""Write-path benchmark (not a test): what one group commit of N reservations costs.

Isolates the durable half of the batch API from gRPC: an engine makes batches of one-line
reservations (time-ordered ids and request ids, as the service makes them), and
`Persistence.write_batch` writes them to a fresh PostgreSQL database, `writers` batches at once
on as many connections (as the committer does with STOCK_DATABASE_WRITERS). Per batch size and
writer count it reports reservations written per second of wall time, and the CPU that this
Python process and the PostgreSQL server processes spent per reservation.

Prints JSON (one object) and a human summary. Usage:
    .venv/bin/python -m loadtest.bench_write [--batches N] [--sizes 100,1000] [--writers 1,2]
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
WRITERS_DEFAULT = (1, 2)
WARMUP_BATCHES = 2
TIMEOUT_MS = 30_000


def reserve_requests(size: int, start: int) -> list[tuple]:
    return [(new_reservation_id(), f"order-{start + n}",
             [(f"sku-{(start + n) % ITEMS:05d}", "", 1)], TTL_MS, uuid.uuid4().hex)
            for n in range(size)]


async def stock_items(engine: Engine, persistence: Persistence) -> None:
    """ITEMS items (the skus `reserve_requests` names) with ON_HAND each, written down."""
    now_ms = int(time.time() * 1000)
    for index in range(ITEMS):
        engine.set_stock(f"sku-{index:05d}", "", ON_HAND, None, now_ms)
    while (batch := engine.take_journal(ITEMS)) is not None:
        await persistence.write_batch(batch)


async def measure(persistence: Persistence, engine: Engine, size: int, writers: int,
                  batches: int, counter: list[int]) -> dict:
    async def one_round() -> None:
        """`writers` batches made one after another, then written at once."""
        taken = []
        for _ in range(writers):
            now_ms = int(time.time() * 1000)
            answers = engine.reserve_batch(reserve_requests(size, counter[0]), now_ms)
            counter[0] += size
            assert not any(isinstance(answer, Exception) for answer in answers)
            taken.append(engine.take_journal(size))
        assert all(batch is not None for batch in taken) and engine.take_journal(size) is None
        await asyncio.gather(*(persistence.write_batch(batch, writer=writer)
                               for writer, batch in enumerate(taken)))

    rounds = max(1, batches // writers)
    for _ in range(WARMUP_BATCHES):
        await one_round()
    postgres_before = postgres_cpu_seconds()
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        await one_round()
    wall = time.perf_counter() - wall_before
    python_cpu = time.process_time() - cpu_before
    postgres_cpu = postgres_cpu_spent(postgres_before)
    count = size * writers * rounds
    return {"batch_size": size, "writers": writers, "batches": writers * rounds,
            "reservations": count, "reservations_per_s": round(count / wall),
            "wall_ms_per_round": round(1000 * wall / rounds, 2),
            "python_cpu_us_per_reservation": round(1e6 * python_cpu / count, 2),
            "postgres_cpu_us_per_reservation": round(1e6 * postgres_cpu / count, 2)}


async def run(sizes: list[int], writer_counts: list[int], batches: int) -> list[dict]:
    with processes.fresh_database("bench_write") as database_url:
        persistence = Persistence(database_url, pool_size=2, timeout_ms=TIMEOUT_MS,
                                  writers=max(writer_counts))
        await persistence.open()
        try:
            engine = Engine(journal_operations_max=max(ITEMS, *sizes) * max(writer_counts))
            await stock_items(engine, persistence)
            counter = [0]
            return [await measure(persistence, engine, size, writers, batches, counter)
                    for size in sizes for writers in writer_counts]
        finally:
            await persistence.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=BATCHES_DEFAULT)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES_DEFAULT)))
    parser.add_argument("--writers", default=",".join(map(str, WRITERS_DEFAULT)))
    arguments = parser.parse_args()
    sizes = [int(size) for size in arguments.sizes.split(",")]
    writer_counts = [int(count) for count in arguments.writers.split(",")]
    results = asyncio.run(run(sizes, writer_counts, arguments.batches))
    print(json.dumps({"write_path": results}, indent=2))
    for result in results:
        print(f"batch {result['batch_size']:>5}, {result['writers']} writer(s): "
              f"{result['reservations_per_s']:>8,} reservations/s"
              f" written; per reservation {result['python_cpu_us_per_reservation']} us Python CPU,"
              f" {result['postgres_cpu_us_per_reservation']} us PostgreSQL CPU",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
