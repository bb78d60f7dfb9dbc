"""Probe (kept with its output): what migration 0006's index (`reservations_ended`) costs the
write path, and how fast `Persistence.prune_reservations` deletes.

1. Two fresh databases, the same migrations, the index dropped in one ("without"). Rounds
   alternate between them: ten batches of 1,000 one-line reservations are written, then ten
   batches releasing them; the PostgreSQL processes' CPU (all of them, and the writer connection's
   backend alone) is read around each ten writes, and the WAL bytes the releases wrote. Only the
   release's write can touch the index (it holds ended reservations only).
2. In a database with the index: ended reservations are written in batches of 10,000, then
   pruned with a cut-off after all of them, in slices of 2,000 or 10,000, each slice timed
   (the pruner's pauses between slices left out).

Prints one JSON object per line. Run from the repository root:
.venv/bin/python loadtest/reference/20261207T1630Z-reservation-retention/retention_cost.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
import uuid

from loadtest import processes
from loadtest.bench import cpu_seconds, postgres_cpu_seconds, postgres_cpu_spent
from loadtest.bench_write import reserve_requests, stock_items
from service.engine import Engine
from service.persistence import Persistence

BATCH = 1_000
BATCHES_PER_ROUND = 10
WARMUP_ROUNDS = 1
ROUNDS = 8
PER_ROUND = BATCH * BATCHES_PER_ROUND
PRUNE_HOLDS = (100_000, 300_000)
PRUNE_BATCH = 10_000
PRUNE_SLICES = (2_000, 10_000)


class Side:
    def __init__(self, name: str, url: str):
        self.name, self.url = name, url
        self.persistence = Persistence(url, pool_size=2, timeout_ms=60_000)
        self.engine = Engine(journal_operations_max=200_000)
        self.counter = 0

    async def open(self, keep_index: bool) -> None:
        await self.persistence.open()
        await self.persistence.new_epoch()
        if not keep_index:
            async with self.persistence._acquire() as connection:
                await connection.execute("DROP INDEX reservations_ended")
        await stock_items(self.engine, self.persistence)

    async def write(self) -> float:
        """Writes what the engine journaled; returns the PostgreSQL CPU seconds it took."""
        before = postgres_cpu_seconds()
        while (batch := self.engine.take_journal(10_000)) is not None:
            await self.persistence.write_batch(batch)
        return postgres_cpu_spent(before)

    def reserve(self, count: int) -> list[str]:
        now = int(time.time() * 1000)
        requests = reserve_requests(count, self.counter)
        ids = [request[0] for request in requests]
        for start in range(0, count, BATCH):
            answers = self.engine.reserve_batch(requests[start:start + BATCH], now)
            assert not any(isinstance(answer, Exception) for answer in answers)
        self.counter += count
        return ids

    def release(self, ids: list[str]) -> None:
        now = int(time.time() * 1000)
        for start in range(0, len(ids), BATCH):
            answers = self.engine.release_batch(
                [(rid, uuid.uuid4().hex) for rid in ids[start:start + BATCH]], now)
            assert not any(isinstance(answer, Exception) for answer in answers)

    async def writer_pid(self) -> int:
        """The PostgreSQL backend of writer connection 0 (every write here goes there)."""
        return (await self.persistence._writer_connection(0)).get_server_pid()

    async def wal_lsn(self) -> int:
        """The cluster's WAL position in bytes (rounds run one at a time, so the WAL written
        between two readings is this side's)."""
        async with self.persistence._acquire() as connection:
            return await connection.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")

    async def round(self) -> tuple[float, float, float, float, float]:
        """BATCHES_PER_ROUND reservation batches written one by one, then as many release
        batches; PostgreSQL's CPU for all the writes of each kind (its clock ticks are 10 ms:
        reading it around 10,000 reservations resolves 1 us per reservation)."""
        ids = []
        pid = await self.writer_pid()
        before, backend_before = postgres_cpu_seconds(), cpu_seconds(pid)
        for _ in range(BATCHES_PER_ROUND):
            ids.append(self.reserve(BATCH))
            await self.write()
        reserve_cpu, reserve_backend = postgres_cpu_spent(before), cpu_seconds(pid)
        reserve_backend -= backend_before
        wal_before = await self.wal_lsn()
        before, backend_before = postgres_cpu_seconds(), cpu_seconds(pid)
        for batch_ids in ids:
            self.release(batch_ids)
            await self.write()
        release = (postgres_cpu_spent(before), cpu_seconds(pid) - backend_before)
        wal_bytes = float(await self.wal_lsn() - wal_before)
        return reserve_cpu, release[0], reserve_backend, release[1], wal_bytes


async def write_cost() -> None:
    with contextlib.ExitStack() as stack:
        sides = [Side(name, stack.enter_context(processes.fresh_database(f"retention_{name}")))
                 for name in ("with", "without")]
        for side in sides:
            await side.open(keep_index=side.name == "with")
        samples = {side.name: ([], [], [], [], []) for side in sides}
        for round_number in range(WARMUP_ROUNDS + ROUNDS):
            order = sides if round_number % 2 == 0 else sides[::-1]
            for side in order:
                measured = await side.round()
                if round_number >= WARMUP_ROUNDS:
                    for series, value in zip(samples[side.name], measured, strict=True):
                        series.append(value)
        for side in sides:
            reserve, release, reserve_backend, release_backend, wal = samples[side.name]
            def median_us(values: list[float]) -> float:
                return round(1e6 * statistics.median(values) / PER_ROUND, 2)

            def each_us(values: list[float]) -> list[float]:
                return [round(1e6 * value / PER_ROUND, 2) for value in values]

            print(json.dumps({
                "probe": "write_cost", "index": side.name, "rounds": ROUNDS, "batch": BATCH,
                "reservations_per_round": PER_ROUND,
                "reserve_pg_cpu_us_per_reservation_median": median_us(reserve),
                "release_pg_cpu_us_per_reservation_median": median_us(release),
                "release_pg_cpu_us_per_reservation_all": each_us(release),
                "writer_backend_reserve_us_per_reservation_median": median_us(reserve_backend),
                "writer_backend_release_us_per_reservation_median": median_us(release_backend),
                "writer_backend_release_us_per_reservation_all": each_us(release_backend),
                "release_wal_bytes_per_reservation_median":
                    round(statistics.median(wal) / PER_ROUND, 1)}), flush=True)
            await side.persistence.close()


async def prune_speed(holds: int, slice_rows: int) -> None:
    with processes.fresh_database("retention_prune") as url:
        side = Side("with", url)
        await side.open(keep_index=True)
        for _ in range(holds // PRUNE_BATCH):
            ids = side.reserve(PRUNE_BATCH)
            side.release(ids)
            await side.write()
        cutoff = int(time.time() * 1000) + 1
        before = postgres_cpu_seconds()
        slices: list[float] = []
        deleted = count = slice_rows
        while count == slice_rows:
            started = time.perf_counter()
            count = await side.persistence.prune_reservations(cutoff, slice_rows)
            slices.append(time.perf_counter() - started)
            deleted += count
        deleted -= slice_rows
        cpu = postgres_cpu_spent(before)
        print(json.dumps({
            "probe": "prune_speed", "ended_reservations": holds, "slice_rows": slice_rows,
            "deleted": deleted, "seconds": round(sum(slices), 2),
            "reservations_per_s": round(deleted / sum(slices)), "slices": len(slices),
            "ms_per_slice_median": round(1000 * statistics.median(slices), 1),
            "ms_per_slice_max": round(1000 * max(slices), 1),
            "pg_cpu_us_per_reservation": round(1e6 * cpu / deleted, 2)}), flush=True)
        await side.persistence.close()


async def main() -> None:
    await write_cost()
    for holds in PRUNE_HOLDS:
        for slice_rows in PRUNE_SLICES:
            await prune_speed(holds, slice_rows)


if __name__ == "__main__":
    asyncio.run(main())
