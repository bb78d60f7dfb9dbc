"""Background upkeep: expires due holds, and prunes old idempotency records in PostgreSQL.

The engine already ignores due holds in every read and decision; the sweep makes expirations
real (journaled, hence written by the committer, with ledger rows) and gives the stock back
for good. Each round expires at most EXPIRE_BATCH_MAX reservations and then waits for the
committer to catch up before the next round, so the journal stays bounded.
"""

from __future__ import annotations

import asyncio
import logging

from service import metrics
from service.committer import Committer
from service.errors import Unavailable
from service.persistence import Persistence
from service.recovery import EXPIRE_BATCH_MAX, now_ms

log = logging.getLogger(__name__)

# How often old idempotency records are deleted from PostgreSQL.
PRUNE_INTERVAL_S = 600.0
# A full sweep round waits until the committer has written down to this journal backlog.
JOURNAL_BACKLOG_OPERATIONS_MAX = 10_000
BACKLOG_POLL_S = 0.005
# Expiry times are in ms; never spin faster than this waiting for the next one.
SWEEP_PAUSE_MIN_S = 0.01


class Sweeper:
    def __init__(self, committer: Committer, persistence: Persistence, *, interval_ms: int,
                 idempotency_retention_ms: int):
        self._committer = committer
        self._persistence = persistence
        self._interval_s = interval_ms / 1000
        self._retention_ms = idempotency_retention_ms
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._expire_loop(), name="expiry-sweeper"),
                       asyncio.create_task(self._prune_loop(), name="idempotency-pruner")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _expire_loop(self) -> None:
        while True:
            try:
                delay_s = await self.sweep_once()
            except Unavailable:
                delay_s = self._interval_s  # rebuilding: the rebuild expires due holds itself
            except Exception:
                log.exception("expiry sweep failed")
                delay_s = self._interval_s
            await asyncio.sleep(delay_s)

    async def sweep_once(self) -> float:
        """Expires one bounded round; returns how long to sleep before the next."""
        engine, generation = self._committer.engine()
        now = now_ms()
        expired = engine.expire_due(now, EXPIRE_BATCH_MAX)
        if expired:
            metrics.EXPIRATIONS.inc(len(expired))
            self._committer.notify()
            await self._wait_backlog(engine)
        if len(expired) == EXPIRE_BATCH_MAX:
            return 0.0
        next_expiry_ms = engine.next_expiry_ms()
        if next_expiry_ms is None:
            return self._interval_s
        return min(self._interval_s, max(SWEEP_PAUSE_MIN_S, (next_expiry_ms - now) / 1000))

    async def _wait_backlog(self, engine) -> None:
        while (self._committer.serving and self._committer.engine()[0] is engine
               and engine.journal_pending() > JOURNAL_BACKLOG_OPERATIONS_MAX):
            await asyncio.sleep(BACKLOG_POLL_S)

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL_S)
            try:
                deleted = await self._persistence.prune_idempotency(now_ms() - self._retention_ms)
                if deleted:
                    log.info("pruned %d idempotency records", deleted)
            except Exception:
                log.exception("idempotency pruning failed; trying again later")
