"""Group commit: the only writer of engine changes to PostgreSQL, and the owner of the engine.

Calls change the engine in memory, then wait here until their LSN is durable. One task drains
the journal in batches (bounded by operations and by a short window), writes each batch in one
transaction, wakes the calls whose LSN it covered, and hands the changed items to the cache
invalidator. If a write fails, no call waiting on it (or after it) is told OK: all get
UNAVAILABLE, the engine is thrown away (it holds changes PostgreSQL may not have), health goes
NOT_SERVING and the engine is rebuilt from PostgreSQL, retrying with backoff until it answers.
Start-up is the same rebuild, so the first load also retries by itself.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from service import metrics, recovery
from service.engine import Engine
from service.errors import Unavailable
from service.persistence import Persistence

log = logging.getLogger(__name__)

# Changes journaled without a waiting call (expirations inside refused calls) still get
# written within this time.
IDLE_WAKE_S = 0.1
# A quiet service still notices a lost PostgreSQL within about this time (probe interval
# plus the statement timeout), so health does not claim SERVING while writes would fail.
PROBE_INTERVAL_S = 1.0
UNAVAILABLE_REBUILDING = "the service is (re)loading its state from PostgreSQL; retry"
UNAVAILABLE_SHUTTING_DOWN = "the service is shutting down; retry on another instance or later"
# While draining for shutdown, how often to check whether the last calls were answered.
DRAIN_POLL_S = 0.01
# Draining ends once no call was refused for this long: calls queued inside gRPC are answered
# UNAVAILABLE by us first, instead of CANCELLED by gRPC's stop.
DRAIN_QUIET_S = 0.1
UNAVAILABLE_WRITE_FAILED = "PostgreSQL did not commit this change; retry (with the same request id)"


class Committer:
    def __init__(self, persistence: Persistence, invalidator: Any, *, window_ms: int,
                 operations_max: int, backoff_initial_ms: int, backoff_max_ms: int,
                 on_serving: Callable[[bool], Awaitable[None]]):
        self._persistence = persistence
        self._invalidator = invalidator
        self._window_s = window_ms / 1000
        self._operations_max = operations_max
        self._backoff_initial_s = backoff_initial_ms / 1000
        self._backoff_max_s = backoff_max_ms / 1000
        self._on_serving = on_serving
        self._engine: Engine | None = None
        # Bumped whenever an engine is discarded; a result from an older engine is never durable.
        self._generation = 0
        self._durable_lsn = 0
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._last_batch_changes = 0
        self._batch_started_at = 0.0  # monotonic time the last batch write began
        self._refusing = False
        self._probe_task: asyncio.Task | None = None
        self._probe_failed = False
        self._contact_at = 0.0  # monotonic time of the last statement PostgreSQL answered
        self._refused_at = 0.0

    # --- what the servicer and the sweeper use -------------------------------------------

    def engine(self) -> tuple[Engine, int]:
        """The live engine and its generation; UNAVAILABLE while there is none."""
        if self._refusing:
            self._refused_at = time.monotonic()
            raise Unavailable(UNAVAILABLE_SHUTTING_DOWN)
        if self._engine is None:
            raise Unavailable(UNAVAILABLE_REBUILDING)
        return self._engine, self._generation

    @property
    def serving(self) -> bool:
        return self._engine is not None

    def notify(self) -> None:
        """Something was journaled: write it soon."""
        self._wake.set()

    async def wait_durable(self, lsn: int, generation: int) -> None:
        """Returns once PostgreSQL holds every change up to `lsn` of that engine generation."""
        if generation != self._generation:
            raise Unavailable(UNAVAILABLE_WRITE_FAILED)
        if lsn <= self._durable_lsn:
            return
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (lsn, next(self._order), waiter))
        metrics.DURABILITY_WAITERS.set(len(self._waiters))
        self._wake.set()
        await waiter

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        assert self._task is None, "started twice"
        self._task = asyncio.create_task(self._run(), name="committer")
        self._probe_task = asyncio.create_task(self._probe_loop(), name="postgres-probe")

    async def drain(self, timeout_s: float) -> None:
        """Refuses new engine work (UNAVAILABLE, which clients retry) and waits, at most
        `timeout_s`, until every accepted change is written, every waiting call answered and
        no new call came for DRAIN_QUIET_S. gRPC's own stop would answer calls still queued
        with CANCELLED instead."""
        self._refusing = True
        self._refused_at = time.monotonic()
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        while self.serving and (self._waiters or self._pending()
                                or time.monotonic() - self._refused_at < DRAIN_QUIET_S):
            if time.monotonic() >= deadline:
                log.warning("drain: %d calls still waiting after %.1f s", len(self._waiters),
                            timeout_s)
                return
            await asyncio.sleep(DRAIN_POLL_S)

    async def stop(self) -> None:
        """Writes what is still journaled (if the engine is healthy), then ends the task."""
        self._stopping = True
        self._wake.set()
        if self._probe_task is not None:
            self._probe_task.cancel()
            await asyncio.gather(self._probe_task, return_exceptions=True)
        if self._task is not None:
            if self._engine is None:  # still rebuilding: nothing of ours is pending
                self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._fail_waiters(UNAVAILABLE_REBUILDING)

    async def _run(self) -> None:
        await self._rebuild()
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), IDLE_WAKE_S)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._probe_failed and self._engine is not None:
                await self._discard_engine()
                await self._rebuild()
                continue
            if self._should_linger():
                # Let concurrent calls join this batch: at most one batch starts per window,
                # so under load each batch carries a window's worth of calls and the fixed cost
                # of a transaction (and of a cache invalidation) is shared by all of them.
                linger_s = self._window_s - (time.monotonic() - self._batch_started_at)
                if linger_s > 0:
                    await asyncio.sleep(linger_s)
            written = await self._write_one()
            if written is None:
                await self._rebuild()
            elif written:
                self._wake.set()  # more may be journaled already: look again
        while await self._write_one():
            pass

    async def _probe_loop(self) -> None:
        """Pings PostgreSQL when no batch was written for a while; a failure makes the
        committer treat PostgreSQL as lost (NOT_SERVING, rebuild with retries)."""
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            if self._engine is None or time.monotonic() - self._contact_at < PROBE_INTERVAL_S:
                continue
            try:
                await self._persistence.ping()
                self._contact_at = time.monotonic()
            except Exception as exc:
                log.warning("PostgreSQL probe failed: %r; rebuilding once it answers", exc)
                self._probe_failed = True
                self._wake.set()

    def _should_linger(self) -> bool:
        """Wait the window only under concurrency (more than one call waiting, or the last
        batch held more than one change): a lone call is written at once, so a quiet service
        answers in one commit time instead of one window plus one commit."""
        if self._stopping or not self._window_s or self._pending() >= self._operations_max:
            return False
        return len(self._waiters) > 1 or self._last_batch_changes > 1

    def _pending(self) -> int:
        pending = self._engine.journal_pending() if self._engine is not None else 0
        metrics.JOURNAL_PENDING.set(pending)
        return pending

    async def _write_one(self) -> bool | None:
        """Writes one batch of what is journaled. True: a batch was written; False: nothing was
        pending; None: the write failed and the engine was discarded."""
        if self._engine is None:
            return False
        batch = self._engine.take_journal(self._operations_max)
        if batch is None:
            self._pending()
            return False
        started = self._batch_started_at = time.monotonic()
        try:
            await self._persistence.write_batch(batch)
        except Exception:
            metrics.COMMIT_FAILURES.inc()
            log.exception("batch lsn %d..%d not committed; rebuilding the engine",
                          batch.lsn_first, batch.lsn_last)
            # The commit may have happened before the connection broke: drop cache keys
            # of its items too; a needless deletion costs one cache miss.
            self._invalidator.submit((row[0], row[1]) for row in batch.items)
            await self._discard_engine()
            return None
        self._record(batch, time.monotonic() - started)
        self._last_batch_changes = batch.lsn_last - batch.lsn_first + 1
        self._contact_at = time.monotonic()
        self._advance(batch.lsn_last)
        self._invalidator.submit((row[0], row[1]) for row in batch.items)
        return True

    def _record(self, batch: Any, seconds: float) -> None:
        metrics.COMMIT_SECONDS.observe(seconds)
        metrics.BATCH_OPERATIONS.observe(batch.lsn_last - batch.lsn_first + 1)
        metrics.BATCH_ROWS.observe(len(batch.items))
        metrics.record_invalidator(self._invalidator.stats())

    def _advance(self, lsn: int) -> None:
        assert lsn >= self._durable_lsn, f"durable LSN went back: {lsn} < {self._durable_lsn}"
        self._durable_lsn = lsn
        while self._waiters and self._waiters[0][0] <= lsn:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():  # a cancelled call (deadline) no longer waits
                waiter.set_result(None)
        metrics.DURABILITY_WAITERS.set(len(self._waiters))

    def _fail_waiters(self, message: str) -> None:
        waiters, self._waiters = self._waiters, []
        for _, _, waiter in waiters:
            if not waiter.done():
                waiter.set_exception(Unavailable(message))
        metrics.DURABILITY_WAITERS.set(0)

    async def _discard_engine(self) -> None:
        self._engine = None
        self._generation += 1
        self._durable_lsn = 0
        self._fail_waiters(UNAVAILABLE_WRITE_FAILED)
        metrics.SERVING.set(0)
        await self._on_serving(False)

    async def _rebuild(self) -> None:
        """Loads a fresh engine from PostgreSQL, retrying with backoff until it works."""
        assert self._engine is None, "rebuild only without a live engine"
        backoff_s = self._backoff_initial_s
        while not self._stopping:
            try:
                engine, lsn_last = await recovery.recover(self._persistence,
                                                          self._write_for_recovery)
                break
            except Exception as exc:
                # One line per attempt: an outage of minutes must not flood the log.
                log.warning("recovery from PostgreSQL failed (%r); retrying in %.1f s",
                            exc, backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, self._backoff_max_s)
        else:
            return
        metrics.REBUILDS.inc()
        self._probe_failed = False
        self._contact_at = time.monotonic()
        self._durable_lsn = lsn_last
        self._engine = engine
        metrics.SERVING.set(1)
        await self._on_serving(True)

    async def _write_for_recovery(self, batch: Any) -> None:
        await self._persistence.write_batch(batch)
        self._invalidator.submit((row[0], row[1]) for row in batch.items)
