"""Probe (kept with its output): the latency of Reserve calls while the pruner works off a
backlog of ended reservations, against the same calls with nothing to prune.

One service instance (a fresh database, as `make bench` serves it). Each round runs two
spans of Reserve calls on the hot SKU at a fixed rate, in turned order: one while
`service.pruner.Pruner.prune_once` (its slices and pauses as shipped, run in this process
against the service's database) deletes BACKLOG ended reservations written into the tables
just before, and one with nothing to prune. Prints one JSON line per span. Run from the
repository root (needs the load generator built):
.venv/bin/python loadtest/reference/20261207T1630Z-reservation-retention/prune_latency.py
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import asyncpg

from loadtest import bench
from service.persistence import Persistence
from service.pruner import Pruner

ROUNDS = 3
RATE = 1_000
SPAN_S = 8
BACKLOG = 300_000
RETENTION_MS = 86_400_000
ENDED_AT_MS = 1_000_000  # long before any cut-off
FIGURES = ("p50", "p90", "p99", "p999", "max")


async def write_backlog(database: str, round_number: int) -> None:
    """BACKLOG released one-line reservations (and their lines), ended long ago."""
    connection = await asyncpg.connect(database)
    try:
        await connection.execute(
            "INSERT INTO reservations (reservation_id, order_id, status, expires_at_ms,"
            " created_at_ms, updated_at_ms, request_id)"
            " SELECT 'old-' || $1 || '-' || n, 'o', 'released', $2, $2, $2, NULL"
            "   FROM generate_series(1, $3) n", str(round_number), ENDED_AT_MS, BACKLOG)
        await connection.execute(
            "INSERT INTO reservation_lines (reservation_id, sku, location, quantity)"
            " SELECT 'old-' || $1 || '-' || n, 'sku-' || (n % 100), '', 1"
            "   FROM generate_series(1, $2) n", str(round_number), BACKLOG)
        await connection.execute("VACUUM ANALYZE reservations")
    finally:
        await connection.close()


async def span(address: str, process, database: str, prune: bool) -> dict:
    persistence = Persistence(database, pool_size=1, timeout_ms=60_000)
    await persistence.open()
    try:
        load = asyncio.create_task(asyncio.to_thread(
            bench.open_loop, address, process, "hot", RATE, duration_s=SPAN_S, warmup_s=0))
        deleted, prune_s = {}, 0.0
        if prune:
            await asyncio.sleep(0.5)
            pruner = Pruner(persistence, idempotency_retention_ms=RETENTION_MS * 3650,
                            reservation_retention_ms=RETENTION_MS)
            started = time.monotonic()
            deleted = await pruner.prune_once()
            prune_s = time.monotonic() - started
        result = await load
    finally:
        await persistence.close()
    latency = result["latency_ms"]
    return {"pruning": prune, "deleted": deleted, "prune_s": round(prune_s, 2),
            "rate": RATE, "calls_ok": result["calls_ok"], "errors": result.get("errors", {}),
            "postgres_cpu_s": result["postgres_cpu_s"],
            **{figure: latency[figure] for figure in FIGURES}}


def main() -> None:
    with tempfile.TemporaryDirectory() as logs, bench.serving(
            "service", "retention", Path(logs), "prune") as (address, process, database):
        for round_number in range(ROUNDS):
            asyncio.run(write_backlog(database, round_number))
            order = (True, False) if round_number % 2 == 0 else (False, True)
            for prune in order:
                result = asyncio.run(span(address, process, database, prune))
                print(json.dumps({"round": round_number, **result}), flush=True)


if __name__ == "__main__":
    main()
