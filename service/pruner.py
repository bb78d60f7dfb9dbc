"""Retention: deletes old idempotency records and long-ended reservations from PostgreSQL.

Both tables would otherwise grow with every call for as long as the service runs. Every
PRUNE_INTERVAL_S, idempotency records older than STOCK_IDEMPOTENCY_RETENTION_MS go (a retry
later than that is a new request), and so do reservations that were committed, released or
expired longer than STOCK_RESERVATION_RETENTION_MS ago, with their lines (0 keeps them all).
Active reservations are never deleted. The ledger is append-only and keeps every movement,
with its reservation and order ids, whatever is pruned here.

Rows go in slices of PRUNE_SLICE_ROWS, one short transaction each, and after each full slice
the pruner pauses PRUNE_PAUSE_FACTOR times as long as the slice took: a backlog (the day a
flash sale passes its retention) is worked off by one PostgreSQL backend at most a quarter
of the time, beside the calls' own writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from service import metrics
from service.background import BackgroundLoop
from service.persistence import Persistence
from service.recovery import now_ms

log = logging.getLogger(__name__)

# How often old rows are deleted.
PRUNE_INTERVAL_S = 600.0
# Rows per DELETE: 2,000 ended reservations took 11-24 ms of PostgreSQL here
# (docs/BENCHMARKS.md, "Reservation retention").
PRUNE_SLICE_ROWS = 2_000
# After a full slice, pause this many times as long as it took.
PRUNE_PAUSE_FACTOR = 3.0


async def _pause(seconds: float) -> None:
    await asyncio.sleep(seconds)


class Pruner(BackgroundLoop):
    name = "pruner"

    def __init__(self, persistence: Persistence, *, idempotency_retention_ms: int,
                 reservation_retention_ms: int):
        super().__init__()
        self._persistence = persistence
        self._idempotency_retention_ms = idempotency_retention_ms
        self._reservation_retention_ms = reservation_retention_ms

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL_S)
            await self.prune_round()

    async def prune_round(self) -> None:
        """One round of `prune_once`; a failure is logged and counted, not raised (the next
        round, an interval later, starts again from what is left)."""
        try:
            await self.prune_once()
        except Exception:
            metrics.PRUNE_FAILURES.inc()
            log.exception("pruning failed; trying again later")

    async def prune_once(self) -> dict[str, int]:
        """Deletes what is past its retention now; returns the rows deleted per table."""
        now = now_ms()
        tables: dict[str, tuple[Callable[[int, int], Awaitable[int]], int]] = {
            "idempotency": (self._persistence.prune_idempotency,
                            now - self._idempotency_retention_ms)}
        if self._reservation_retention_ms:
            tables["reservations"] = (self._persistence.prune_reservations,
                                      now - self._reservation_retention_ms)
        deleted = {}
        for table, (prune, cutoff_ms) in tables.items():
            deleted[table] = await self._in_slices(table, prune, cutoff_ms)
            if deleted[table]:
                log.info("pruned %d rows of %s", deleted[table], table)
        return deleted

    async def _in_slices(self, table: str, prune: Callable[[int, int], Awaitable[int]],
                         cutoff_ms: int) -> int:
        """Slice after slice until one comes back short, pausing after each full one."""
        total = 0
        while True:
            started = time.monotonic()
            count = await prune(cutoff_ms, PRUNE_SLICE_ROWS)
            metrics.PRUNED_ROWS.labels(table).inc(count)
            total += count
            if count < PRUNE_SLICE_ROWS:
                return total
            await _pause(PRUNE_PAUSE_FACTOR * (time.monotonic() - started))
