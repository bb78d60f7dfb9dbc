"""A sweep round expires its holds in short engine calls, each written down (durable) before
the next call, so that expirations never crowd the journal ahead of the requests' changes;
a round still expires up to EXPIRE_BATCH_MAX, and reports how far behind it is."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from service.errors import Unavailable
from service.recovery import EXPIRE_BATCH_MAX, now_ms
from service.sweeper import EXPIRE_CALL_MAX, Sweeper

INTERVAL_MS = 250
GENERATION = 7


# How long the due holds of a DueEngine have been due.
OVERDUE_MS = 3_000


class DueEngine:
    """An engine with `due` holds due since OVERDUE_MS and, once they are expired, the next
    expiry `next_in_ms` after the engine was made. Each expiration is one journaled operation
    (an LSN)."""

    def __init__(self, due: int, next_in_ms: int | None) -> None:
        self.due = due
        # A fixed moment, as an engine's next expiry is (not `next_in_ms` after each look).
        self.next_at_ms = None if next_in_ms is None else now_ms() + next_in_ms
        self.lsn = 0
        self.committer: WritingCommitter | None = None
        # (max_count, the durable LSN when called)
        self.calls: list[tuple[int, int]] = []

    def expire_due(self, now: int, max_count: int) -> list[str]:
        assert self.committer is not None
        self.calls.append((max_count, self.committer.durable_lsn))
        expired = min(self.due, max_count)
        self.due -= expired
        self.lsn += expired
        return [f"r{index}" for index in range(expired)]

    def lsn_last(self) -> int:
        return self.lsn

    def next_expiry_ms(self) -> int | None:
        if self.due:
            return now_ms() - OVERDUE_MS
        return self.next_at_ms


class WritingCommitter:
    """The committer's side a sweeper uses: writes whatever is journaled when waited on, a
    loop turn later."""

    def __init__(self, engine: DueEngine, *, failing: bool = False) -> None:
        self._engine = engine
        engine.committer = self
        self.durable_lsn = 0
        self.waits: list[int] = []
        self._failing = failing

    def engine(self) -> tuple[DueEngine, int]:
        return self._engine, GENERATION

    async def wait_durable(self, lsn: int, generation: int) -> None:
        assert generation == GENERATION
        self.waits.append(lsn)
        await asyncio.sleep(0)
        if self._failing:
            raise Unavailable("write failed")
        self.durable_lsn = self._engine.lsn


def expiry_lag_s() -> float | None:
    return REGISTRY.get_sample_value("stock_expiry_lag_seconds")


async def sweep(engine: DueEngine, committer: WritingCommitter) -> float:
    sweeper = Sweeper(committer, interval_ms=INTERVAL_MS)  # type: ignore[arg-type]
    return await sweeper.sweep_once()


async def test_a_full_round_is_short_calls_each_written_before_the_next():
    engine = DueEngine(EXPIRE_BATCH_MAX * 2, next_in_ms=None)
    committer = WritingCommitter(engine)
    delay_s = await sweep(engine, committer)
    calls = EXPIRE_BATCH_MAX // EXPIRE_CALL_MAX
    assert [max_count for max_count, _ in engine.calls] == [EXPIRE_CALL_MAX] * calls
    # Each call came once everything before it was durable.
    assert [durable for _, durable in engine.calls] == [
        index * EXPIRE_CALL_MAX for index in range(calls)]
    assert committer.waits == [(index + 1) * EXPIRE_CALL_MAX for index in range(calls)]
    assert engine.due == EXPIRE_BATCH_MAX  # the round stopped at its bound
    assert delay_s == 0.0  # a full round: the next one starts at once
    # The holds left due show as the sweeper's lag.
    assert OVERDUE_MS / 1000 <= expiry_lag_s() < OVERDUE_MS / 1000 + 1


async def test_a_partial_round_stops_at_the_first_short_call():
    due = EXPIRE_CALL_MAX * 2 + 7
    engine = DueEngine(due, next_in_ms=40)
    committer = WritingCommitter(engine)
    delay_s = await sweep(engine, committer)
    assert [max_count for max_count, _ in engine.calls] == [EXPIRE_CALL_MAX] * 3
    assert engine.due == 0
    assert committer.waits[-1] == due and committer.durable_lsn == due
    assert 0.0 < delay_s <= 0.04  # sleeps until the next hold is due
    assert expiry_lag_s() == 0.0  # nothing left due


async def test_nothing_due_is_one_call_and_no_wait():
    engine = DueEngine(0, next_in_ms=None)
    committer = WritingCommitter(engine)
    delay_s = await sweep(engine, committer)
    assert len(engine.calls) == 1
    assert committer.waits == []
    assert delay_s == INTERVAL_MS / 1000


async def test_a_failed_write_ends_the_round_before_another_call():
    engine = DueEngine(EXPIRE_CALL_MAX * 3, next_in_ms=None)
    committer = WritingCommitter(engine, failing=True)
    with pytest.raises(Unavailable):
        await sweep(engine, committer)
    assert len(engine.calls) == 1  # nothing more expired on an engine whose writes fail
