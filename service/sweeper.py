"""Expiry: makes due holds expire for good, in bounded rounds written through to PostgreSQL.

The engine already ignores due holds in every read and decision; the sweep makes expirations
real (journaled, hence written by the committer, with ledger rows) and gives the stock back
for good. Each round expires at most EXPIRE_BATCH_MAX reservations, in engine calls of at most
EXPIRE_CALL_MAX, each written down before the next, so expirations never crowd the journal.
"""

from __future__ import annotations

import asyncio
import logging

from service import metrics
from service.background import BackgroundLoop
from service.committer import Committer
from service.errors import Unavailable
from service.recovery import EXPIRE_BATCH_MAX, now_ms

log = logging.getLogger(__name__)

# Holds expired by one engine call, written down before the next call: the requests' changes
# journaled meanwhile share a PostgreSQL transaction with at most this many expirations. With
# 60,000-124,000 holds falling due at once, Reserve calls at 1,000/s had p99 132-257 ms when a
# call expired 10,000 (the journal then waited only once 10,000 were pending), 71-104 ms at
# 500 and 18-52 ms at 100 (one run of ten 113 ms): docs/BENCHMARKS.md, "Expiry rounds in
# short calls".
EXPIRE_CALL_MAX = 100
# Expiry times are in ms; never spin faster than this waiting for the next one.
SWEEP_PAUSE_MIN_S = 0.01


class Sweeper(BackgroundLoop):
    name = "expiry-sweeper"

    def __init__(self, committer: Committer, *, interval_ms: int):
        super().__init__()
        self._committer = committer
        self._interval_s = interval_ms / 1000

    async def _run(self) -> None:
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
        """Expires one bounded round; returns how long to sleep before the next.

        A round expires up to EXPIRE_BATCH_MAX holds in engine calls of at most
        EXPIRE_CALL_MAX each, and waits until PostgreSQL holds each call's expirations before
        the next call: the journal never holds more than one call's worth ahead of the
        requests' own changes, so a request's write never waits behind a large batch of
        expirations (a flash sale's abandoned holds falling due at once)."""
        now = now_ms()
        expired_total = 0
        while expired_total < EXPIRE_BATCH_MAX:
            engine, generation = self._committer.engine()
            wanted = min(EXPIRE_CALL_MAX, EXPIRE_BATCH_MAX - expired_total)
            expired = len(engine.expire_due(now, wanted))
            if expired:
                expired_total += expired
                metrics.EXPIRATIONS.inc(expired)
                await self._committer.wait_durable(engine.lsn_last(), generation)
            if expired < wanted:
                break
        # The engine of the last call: a rebuild since would have failed its wait_durable.
        next_expiry_ms = engine.next_expiry_ms()
        overdue_ms = 0 if next_expiry_ms is None else max(0, now_ms() - next_expiry_ms)
        metrics.EXPIRY_LAG_SECONDS.set(overdue_ms / 1000)
        if expired_total == EXPIRE_BATCH_MAX:
            return 0.0
        if next_expiry_ms is None:
            return self._interval_s
        return min(self._interval_s, max(SWEEP_PAUSE_MIN_S, (next_expiry_ms - now) / 1000))
