"""Group commit: the only writer of engine changes to PostgreSQL, and the owner of the engine.

Calls change the engine in memory, then wait here until their LSN is durable. One task drains
the journal in batches (bounded by operations; under load at most one batch per window), writes
each batch in one transaction on one of `writers` connections (several may be under way; see
docs/PERSISTENCE.md "Parallel writers"), wakes the calls whose LSN a prefix of finished batches
covers, and hands the changed items to the cache invalidator. If a write fails, no call
waiting on it (or after it) is told OK: all get UNAVAILABLE, the engine is thrown away (it
holds changes PostgreSQL may not have), health goes NOT_SERVING and the engine is rebuilt
from PostgreSQL, retrying with backoff until it answers.
Start-up is the same rebuild, so the first load also retries by itself.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from service import metrics, recovery
from service.batch_window import BatchWindow
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
# A second batch is written while one is under way only once this many operations wait:
# parallel writes pay off for large batches (1.66x the reservations/s at 1,000 per batch,
# loadtest/bench_write.py), but two small concurrent commits each took longer than one alone
# and raised per-call latency (p50 6.2 -> 10.0 ms at 1,000 calls/s on 10,000 SKUs).
PARALLEL_WRITE_OPERATIONS_MIN = 500
# A batch of at least this many operations is made durable as one journal_log row (when the
# log has room) instead of in the tables: for 1,000 reservations that cost PostgreSQL 1.75 us
# of CPU each instead of about 40 (docs/PERSISTENCE.md, "The journal log"). Smaller batches,
# the per-call traffic, go into the tables directly: no second write later.
LOG_WRITE_OPERATIONS_MIN = 256
UNAVAILABLE_WRITE_FAILED = "PostgreSQL did not commit this change; retry (with the same request id)"


@dataclasses.dataclass(eq=False)
class Flight:
    """One batch being written on writer connection `writer`."""

    batch: Any
    writer: int
    started: float  # monotonic
    task: asyncio.Task | None = None
    seconds: float = 0.0  # how long its write took, once done
    freed: bool = False  # its writer went back to the free list
    # Set by the write itself the moment PostgreSQL answered, before its task has ended: the
    # committer goes on from there at once (`Committer._write_finished`).
    finished: bool = False
    error: BaseException | None = None  # why it failed, if it did

    def outcome(self) -> str:
        """"running", "committed" or "failed" (a task that ended without finishing failed)."""
        if self.finished:
            return "failed" if self.error is not None else "committed"
        assert self.task is not None
        return "failed" if self.task.done() else "running"


class Committer:
    def __init__(self, persistence: Persistence, invalidator: Any, *, window_ms: int,
                 operations_max: int, backoff_initial_ms: int, backoff_max_ms: int,
                 window_max_ms: int | None = None,
                 on_serving: Callable[[bool], Awaitable[None]], writers: int = 1,
                 journal_log_max_operations: int = 0, holds_presized: int = 0):
        self._persistence = persistence
        self._holds_presized = holds_presized
        self._invalidator = invalidator
        self._window = BatchWindow(window_ms, window_max_ms)
        self._operations_max = operations_max
        self._backoff_initial_s = backoff_initial_ms / 1000
        self._backoff_max_s = backoff_max_ms / 1000
        self._on_serving = on_serving
        self._engine: Engine | None = None
        # Bumped whenever an engine is discarded; a result from an older engine is never durable.
        self._generation = 0
        self._durable_lsn = 0
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        # Read when scraped, not set on every call.
        metrics.DURABILITY_WAITERS.set_function(lambda: len(self._waiters))
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._last_batch_changes = 0
        self._batch_started_at = 0.0  # monotonic time the last batch write began
        self._writers = writers
        self._log_max_operations = journal_log_max_operations
        self._free_writers = list(range(writers))
        self._flights: collections.deque[Flight] = collections.deque()  # in batch order
        # A taken batch that shares rows with a write under way: written once that one is done.
        self._held: Any | None = None
        self._refusing = False
        self._probe_task: asyncio.Task | None = None
        self._tick_task: asyncio.Task | None = None
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

    @property
    def live_engine(self) -> Engine | None:
        """The live engine, or None while there is none; for monitoring only (`engine()`
        is the way for calls)."""
        return self._engine

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
        self._wake.set()
        await waiter

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        assert self._task is None, "started twice"
        self._task = asyncio.create_task(self._run(), name="committer")
        self._probe_task = asyncio.create_task(self._probe_loop(), name="postgres-probe")
        self._tick_task = asyncio.create_task(self._tick_loop(), name="committer-tick")

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
        for task in (self._probe_task, self._tick_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
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
            # Awaited directly, not through wait_for (which wraps it in a task of its own and
            # costs two more turns of a busy loop); _tick_loop bounds the wait instead.
            await self._wake.wait()
            self._wake.clear()
            if not self._collect() or (self._probe_failed and self._engine is not None):
                await self._discard_engine()
                await self._rebuild()
                continue
            linger_s = self._next_write_in()
            if linger_s is None:
                continue  # a finishing write wakes this loop
            if linger_s > 0:
                await asyncio.sleep(linger_s)
                self._wake.set()  # look again from the top: a write may have failed
                continue
            if self._start_write():
                self._wake.set()  # more may be journaled already, and a writer may be free
        await self._finish_writes()

    def _next_write_in(self) -> float | None:
        """When the next batch may start: None (not now: no engine, no free writer, or a small
        batch waiting for the write under way), 0.0 (at once) or the seconds to linger first."""
        if self._engine is None or not self._free_writers:
            return None
        if (self._flights and self._held is None
                and self._pending() < PARALLEL_WRITE_OPERATIONS_MIN):
            return None  # small batches go one at a time
        if self._should_linger():
            # Let concurrent calls join this batch: at most one batch starts per window,
            # so under load each batch carries a window's worth of calls and the fixed cost
            # of a transaction (and of a cache invalidation) is shared by all of them.
            linger_s = self._window.seconds - (time.monotonic() - self._batch_started_at)
            if linger_s > 0:
                return linger_s
        return 0.0

    def _write_finished(self) -> None:
        """Runs in a write's own task the moment PostgreSQL committed it: answers its calls
        and, when the loop would start the next batch at once, starts it here. Through the
        loop (task end, done callback, event, loop task) a busy event loop took about five
        more turns before the next write went out, each turn running every ready gRPC
        callback: most of a hot-SKU write cycle, where each batch must wait for the last.
        Failures, lingering and shutdown are left to `_run`, which the done callback wakes."""
        if self._stopping or self._engine is None or self._probe_failed:
            return
        if self._collect() and self._next_write_in() == 0.0:
            self._start_write()

    async def _tick_loop(self) -> None:
        """Wakes the committer loop at least every IDLE_WAKE_S, and sizes the batch window."""
        while True:
            await asyncio.sleep(IDLE_WAKE_S)
            self._window.update()
            self._wake.set()

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
        if self._stopping or not self._window.seconds or self._pending() >= self._operations_max:
            return False
        return len(self._waiters) > 1 or self._last_batch_changes > 1

    def _pending(self) -> int:
        pending = self._engine.journal_pending() if self._engine is not None else 0
        metrics.JOURNAL_PENDING.set(pending)
        return pending

    def _start_write(self) -> bool:
        """Takes one batch of what is journaled and starts writing it on a free writer
        connection; False if nothing was pending, or if the batch must wait (held) until the
        writes under way that share a row with it have finished.

        Two batches are only ever written at once when they share no item, reservation or
        idempotency record: an item row holds its final levels, which include the effects of
        every earlier batch on that item, so a later batch on the same rows must not commit
        while an earlier one may still fail. Disjoint batches are independent: if one fails,
        what the other committed is consistent on its own (and the engine is rebuilt from
        PostgreSQL anyway)."""
        assert self._engine is not None and self._free_writers, "a live engine and a writer"
        batch, self._held = self._held, None
        if batch is None:
            batch = self._engine.take_journal(self._operations_max)
        if batch is None:
            self._pending()
            return False
        if any(flight.outcome() == "running" and batch.shares_rows_with(flight.batch)
               for flight in self._flights):
            self._held = batch  # a finishing write wakes the loop, which tries again
            return False
        self._batch_started_at = time.monotonic()
        if self._flights:
            metrics.COMMIT_OVERLAPPED.inc()
        flight = Flight(batch, self._free_writers.pop(), self._batch_started_at)
        flight.task = asyncio.create_task(self._write(flight), name="batch-write")
        flight.task.add_done_callback(lambda _: self._wake.set())
        self._flights.append(flight)
        return True

    async def _write(self, flight: Flight) -> None:
        batch = flight.batch
        operations = batch.lsn_last - batch.lsn_first + 1
        try:
            if (operations >= LOG_WRITE_OPERATIONS_MIN and self._persistence.log_operations
                    + operations <= self._log_max_operations):
                await self._persistence.append_log(batch, writer=flight.writer)
                metrics.COMMIT_LOGGED.inc()
            else:
                await self._persistence.write_batch(batch, writer=flight.writer)
        except BaseException as error:
            flight.error = error
            metrics.COMMIT_FAILURES.inc()
            log.error("batch lsn %d..%d not committed; rebuilding the engine",
                      batch.lsn_first, batch.lsn_last, exc_info=error)
            raise
        finally:
            flight.finished = True
        flight.seconds = time.monotonic() - flight.started
        self._write_finished()

    def _collect(self) -> bool:
        """Retires finished writes: frees their writers, and advances the durable LSN over
        the finished ones in batch order (a later batch may commit first; its calls are told
        OK only once every earlier batch is committed too). False if a write failed: nothing
        after the failed batch may be told OK, and the engine must go."""
        for flight in self._flights:
            outcome = flight.outcome()
            if outcome == "running":
                continue
            if outcome == "failed":  # logged and counted where it failed (`_write`)
                return False
            if not flight.freed:
                flight.freed = True
                self._free_writers.append(flight.writer)
        while self._flights and self._flights[0].outcome() == "committed":
            flight = self._flights.popleft()
            batch = flight.batch
            self._record(batch, flight.seconds)
            self._last_batch_changes = batch.lsn_last - batch.lsn_first + 1
            self._contact_at = time.monotonic()
            self._advance(batch.lsn_last)
            self._invalidator.submit(batch.item_keys)
        return True

    async def _settle_writes(self) -> None:
        """After a failure: waits until every write under way has committed or failed (a
        rebuild must not read PostgreSQL while an old engine's batch may still land), then
        frees every writer. Their cache keys are deleted whatever the outcome: a commit may
        have happened before a connection broke, and a needless deletion costs one miss."""
        flights, self._flights = list(self._flights), collections.deque()
        await asyncio.gather(*(flight.task for flight in flights), return_exceptions=True)
        for flight in flights:
            self._invalidator.submit(flight.batch.item_keys)
        self._free_writers = list(range(self._writers))

    async def _finish_writes(self) -> None:
        """On stop: waits for the writes under way, then writes what is still journaled."""
        while self._engine is not None:
            if self._flights:
                await asyncio.wait([flight.task for flight in self._flights])
            if not self._collect():
                await self._discard_engine()
                return
            if not self._start_write():
                return

    def _record(self, batch: Any, seconds: float) -> None:
        metrics.COMMIT_SECONDS.observe(seconds)
        metrics.BATCH_OPERATIONS.observe(batch.lsn_last - batch.lsn_first + 1)
        metrics.BATCH_ROWS.observe(len(batch.item_keys))
        metrics.record_invalidator(self._invalidator.stats())

    def _advance(self, lsn: int) -> None:
        assert lsn >= self._durable_lsn, f"durable LSN went back: {lsn} < {self._durable_lsn}"
        self._durable_lsn = lsn
        while self._waiters and self._waiters[0][0] <= lsn:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():  # a cancelled call (deadline) no longer waits
                waiter.set_result(None)

    def _fail_waiters(self, message: str) -> None:
        waiters, self._waiters = self._waiters, []
        for _, _, waiter in waiters:
            if not waiter.done():
                waiter.set_exception(Unavailable(message))

    async def _discard_engine(self) -> None:
        self._engine = None
        self._held = None  # the discarded engine's: never written
        self._generation += 1
        self._durable_lsn = 0
        self._fail_waiters(UNAVAILABLE_WRITE_FAILED)
        metrics.SERVING.set(0)
        await self._on_serving(False)
        await self._settle_writes()

    async def _rebuild(self) -> None:
        """Loads a fresh engine from PostgreSQL, retrying with backoff until it works."""
        assert self._engine is None, "rebuild only without a live engine"
        backoff_s = self._backoff_initial_s
        while not self._stopping:
            try:
                engine, lsn_last = await recovery.recover(
                    self._persistence, self._write_for_recovery,
                    holds_presized=self._holds_presized)
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
        self._invalidator.submit(batch.item_keys)
