"""Persistence.write_batch on real journal batches: small ones go as one statement, large ones
send the ledger by COPY; either way the batch is one transaction, whole or not at all."""

from __future__ import annotations

import dataclasses
import os

import asyncpg
import pytest
from stock_helpers import unique

from service.engine import Engine
from service.persistence import LEDGER_COPY_ROWS_MIN, Persistence

NOW_MS = 1_700_000_000_000
TTL_MS = 60_000
ON_HAND = 1_000_000


@dataclasses.dataclass
class Batch:
    """A journal batch with the engine's attribute names, so one row can be spoiled."""

    items: list
    reservations: list
    reservation_lines: list
    idempotency: list
    ledger: list


def journal_of(engine: Engine) -> Batch:
    batch = engine.take_journal(10_000)
    return Batch(list(batch.items), list(batch.reservations), list(batch.reservation_lines),
                 list(batch.idempotency), list(batch.ledger))


def reserve_journal(sku: str, count: int) -> tuple[Batch, Batch]:
    """(stocking batch, batch of `count` one-line reservations with request ids) of `sku`."""
    engine = Engine()
    engine.set_stock(sku, "", ON_HAND, None, NOW_MS)
    stocking = journal_of(engine)
    requests = [(os.urandom(16).hex(), f"order-{index}", [(sku, "", 1)], TTL_MS,
                 f"{sku}-request-{index}") for index in range(count)]
    answers = engine.reserve_batch(requests, NOW_MS)
    assert all(not isinstance(answer, Exception) for answer in answers)
    return stocking, journal_of(engine)


@pytest.fixture
async def persistence(database_url, db):
    persistence = Persistence(database_url, pool_size=1, timeout_ms=10_000)
    await persistence.open()
    yield persistence
    await persistence.close()


async def stored_counts(db, sku: str) -> tuple[int, int, int, int, int]:
    """(reserved, reservations, lines, reserve ledger rows, idempotency records) of `sku`."""
    return (await db.fetchval("SELECT reserved FROM items WHERE sku = $1", sku),
            await db.fetchval("SELECT count(*) FROM reservations r JOIN reservation_lines l"
                              " USING (reservation_id) WHERE l.sku = $1", sku),
            await db.fetchval("SELECT count(*) FROM reservation_lines WHERE sku = $1", sku),
            await db.fetchval("SELECT count(*) FROM ledger WHERE sku = $1 AND kind = 'reserve'",
                              sku),
            await db.fetchval("SELECT count(*) FROM idempotency WHERE request_id LIKE $1",
                              f"{sku}-request-%"))


@pytest.mark.parametrize("count", [1, LEDGER_COPY_ROWS_MIN - 1, LEDGER_COPY_ROWS_MIN,
                                   LEDGER_COPY_ROWS_MIN * 8])
async def test_batch_is_written_whole_below_and_above_the_copy_size(persistence, db, count):
    sku = unique("write-batch")
    stocking, reserving = reserve_journal(sku, count)
    assert len(reserving.ledger) == count
    await persistence.write_batch(stocking)
    await persistence.write_batch(reserving)
    assert await stored_counts(db, sku) == (count, count, count, count, count)
    ledger = await db.fetch("SELECT lsn, reservation_id, order_id, reserved_after FROM ledger"
                            " WHERE sku = $1 AND kind = 'reserve' ORDER BY id", sku)
    assert [tuple(row) for row in ledger] == [
        (row[0], row[9], row[10], row[8]) for row in reserving.ledger]


@pytest.mark.parametrize("count", [LEDGER_COPY_ROWS_MIN - 1, LEDGER_COPY_ROWS_MIN * 2])
async def test_refused_ledger_row_leaves_nothing_of_the_batch(persistence, db, count):
    """The ledger CHECK refuses the last row: the reservations, lines, idempotency records and
    item levels written before it in the same batch must be rolled back with it."""
    sku = unique("write-batch-refused")
    stocking, reserving = reserve_journal(sku, count)
    await persistence.write_batch(stocking)
    last = reserving.ledger[-1]
    reserving.ledger[-1] = (*last[:4], "not-a-kind", *last[5:])
    with pytest.raises(asyncpg.CheckViolationError):
        await persistence.write_batch(reserving)
    assert await stored_counts(db, sku) == (0, 0, 0, 0, 0)
