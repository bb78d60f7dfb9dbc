"""Builds a live engine from PostgreSQL: at start-up and after a failed batch.

Projects the journal log into the tables, loads items, active holds and idempotency records
into a fresh engine, then expires the holds that fell due while nobody was watching and writes
those expirations, all before the service reports SERVING. The engine checks that every
item's `reserved` equals the sum of its loaded holds (`RecoveryMismatch`): a database that
disagrees with itself is never served from; the committer keeps retrying (and logging why)
with health NOT_SERVING until an operator repairs it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from service import metrics
from service.engine import Engine
from service.persistence import Persistence
from service.validation import limit

log = logging.getLogger(__name__)

# Kept equal on both sides: what the engine remembers and what recovery loads into it.
IDEMPOTENCY_RECORDS_MAX = limit("IDEMPOTENCY_RECORDS_MAX_DEFAULT")
EXPIRE_BATCH_MAX = limit("EXPIRE_BATCH_MAX")
JOURNAL_TAKE_OPERATIONS_MAX = limit("JOURNAL_TAKE_OPERATIONS_MAX")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_engine(holds_presized: int = 0) -> Engine:
    return Engine(idempotency_records_max=IDEMPOTENCY_RECORDS_MAX, holds_presized=holds_presized)


async def recover(persistence: Persistence,
                  write_batch: Callable[[Any], Awaitable[None]], *,
                  holds_presized: int = 0) -> tuple[Engine, int]:
    """A loaded engine with no overdue hold left, and the last LSN written while doing so.
    `holds_presized`: holds its tables have room for on top of those loaded
    (STOCK_ENGINE_HOLDS_PRESIZED)."""
    await persistence.open()
    await persistence.new_epoch()  # this engine's batches are stamped after every earlier one
    started = time.monotonic()
    projected = await persistence.project_all()  # the tables then hold every durable change
    if projected:
        log.info("projected %d journal log rows (%d operations) in %.3f s", len(projected),
                 sum(entry.operations for entry in projected), time.monotonic() - started)
    state = await persistence.load_state(IDEMPOTENCY_RECORDS_MAX)
    engine = new_engine(holds_presized)
    engine.load(state.items, state.holds, state.idempotency_records, now_ms())
    log.info("loaded %d items, %d active holds, %d idempotency records in %.3f s",
             len(state.items), len(state.holds), len(state.idempotency_records),
             time.monotonic() - started)
    expired, lsn_last = await expire_overdue(engine, write_batch)
    if expired:
        log.info("expired %d overdue reservations before serving", expired)
    return engine, lsn_last


async def expire_overdue(engine: Engine,
                         write_batch: Callable[[Any], Awaitable[None]]) -> tuple[int, int]:
    """Expires due holds in bounded rounds, writing each round before the next."""
    expired_total, lsn_last = 0, 0
    while True:
        expired = engine.expire_due(now_ms(), EXPIRE_BATCH_MAX)
        expired_total += len(expired)
        metrics.EXPIRATIONS.inc(len(expired))
        while (batch := engine.take_journal(JOURNAL_TAKE_OPERATIONS_MAX)) is not None:
            await write_batch(batch)
            lsn_last = batch.lsn_last
        if len(expired) < EXPIRE_BATCH_MAX:
            return expired_total, lsn_last
