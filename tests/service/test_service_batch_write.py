"""Persistence.write_batch on real journal batches: every table of the batch goes as array
literals in one statement, small or large, and the batch is written whole or not at all."""

from __future__ import annotations

import asyncio
import dataclasses
import os

import asyncpg
import pytest
from stock_helpers import unique

from service.engine import PG_TABLES, Engine
from service.persistence import Persistence

NOW_MS = 1_700_000_000_000
TTL_MS = 60_000
ON_HAND = 1_000_000


@dataclasses.dataclass
class Batch:
    """A journal batch's columns (what write_batch sends) and ledger rows, copied so that one
    column can be spoiled."""

    columns: list
    ledger: list
    lsn_last: int


def journal_of(engine: Engine) -> Batch:
    batch = engine.take_journal(10_000)
    return Batch(list(batch.columns), list(batch.ledger), batch.lsn_last)


def column_index(table: str, column: str) -> int:
    """Position of a table's column in JournalBatch.columns."""
    index = 0
    for name, columns in PG_TABLES:
        if name == table:
            return index + columns.index(column)
        index += len(columns)
    raise KeyError(table)


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
    persistence = Persistence(database_url, pool_size=1, timeout_ms=10_000, writers=2)
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


@pytest.mark.parametrize("count", [1, 63, 1_000])
async def test_batch_is_written_whole_whatever_its_size(persistence, db, count):
    sku = unique("write-batch")
    stocking, reserving = reserve_journal(sku, count)
    assert len(reserving.ledger) == count
    await persistence.write_batch(stocking)
    await persistence.write_batch(reserving)
    assert await stored_counts(db, sku) == (count, count, count, count, count)
    ledger = await db.fetch("SELECT lsn, reservation_id, order_id, reserved_after FROM ledger"
                            " WHERE sku = $1 AND kind = 'reserve' ORDER BY id", sku)
    assert [tuple(row) for row in ledger] == [
        (row[0], row[11], row[12], row[8]) for row in reserving.ledger]


@pytest.mark.parametrize("count", [1, 128])
async def test_refused_ledger_row_leaves_nothing_of_the_batch(persistence, db, count):
    """The ledger CHECK refuses the last row: the reservations, lines, idempotency records and
    item levels written before it in the same batch must be rolled back with it."""
    sku = unique("write-batch-refused")
    stocking, reserving = reserve_journal(sku, count)
    await persistence.write_batch(stocking)
    kinds = column_index("ledger", "kind")
    assert reserving.columns[kinds].endswith('"reserve"}')
    reserving.columns[kinds] = reserving.columns[kinds][:-len('"reserve"}')] + '"not-a-kind"}'
    with pytest.raises(asyncpg.CheckViolationError):
        await persistence.write_batch(reserving)
    assert await stored_counts(db, sku) == (0, 0, 0, 0, 0)


ODD_TEXTS = ('we"ird\\sku,{x} y', "NULL", "", "é€𝄞\nline", "'; DROP TABLE items; --")


async def test_every_row_reaches_postgresql_as_the_engine_rendered_it(persistence, db):
    """Array literals carry any text (quotes, backslashes, braces, commas, newlines, the word
    NULL, non-ASCII) and every table's rows arrive exactly as the journal's own row lists."""
    tag = unique("odd")
    skus = [f"{tag}{text}" for text in ODD_TEXTS]
    engine = Engine()
    for sku in skus:
        engine.set_stock(sku, ODD_TEXTS[0], ON_HAND, None, NOW_MS, reason=ODD_TEXTS[3],
                         actor=ODD_TEXTS[4])
    lines = [(sku, ODD_TEXTS[0], 2) for sku in skus]
    held = engine.reserve(f"{tag}-r1", ODD_TEXTS[4], lines, TTL_MS, NOW_MS, f"{tag}-q\"1")
    engine.reserve(f"{tag}-r2", "", lines[:2], TTL_MS, NOW_MS, None)
    engine.commit(held.reservation_id, [(skus[0], ODD_TEXTS[0], 1)], NOW_MS, f"{tag}-q2")
    engine.release(f"{tag}-r2", NOW_MS, None)
    engine.decrement([(skus[1], ODD_TEXTS[0], 1)], NOW_MS, order_id=ODD_TEXTS[1],
                     request_id=f"{tag}-q3")
    engine.set_safety_stock(skus[2], ODD_TEXTS[0], 3, NOW_MS, reason=ODD_TEXTS[1],
                            request_id=f"{tag}-q4")
    batch = engine.take_journal(10_000)
    await persistence.write_batch(batch)

    items = await db.fetch("SELECT sku, location, on_hand, reserved, safety_stock FROM items"
                           " WHERE sku LIKE $1 ORDER BY sku", f"{tag}%")
    assert sorted(tuple(row) for row in items) == sorted(batch.items)
    reservations = await db.fetch(
        "SELECT reservation_id, order_id, status, expires_at_ms, created_at_ms, updated_at_ms,"
        " request_id FROM reservations WHERE reservation_id LIKE $1", f"{tag}%")
    assert sorted(tuple(row) for row in reservations) == sorted(batch.reservations)
    stored_lines = await db.fetch(
        "SELECT reservation_id, sku, location, quantity, quantity_committed FROM"
        " reservation_lines WHERE reservation_id LIKE $1 ORDER BY reservation_id, line_number",
        f"{tag}%")
    assert [tuple(row) for row in stored_lines] == batch.reservation_lines
    ledger = await db.fetch(
        "SELECT lsn, at_ms, sku, location, kind, delta_on_hand, delta_reserved, on_hand_after,"
        " reserved_after, delta_safety, safety_after, reservation_id, order_id, request_id,"
        " reason, actor FROM ledger"
        " WHERE sku LIKE $1 ORDER BY id", f"{tag}%")
    assert [tuple(row) for row in ledger] == batch.ledger
    records = await db.fetch(
        "SELECT request_id, fingerprint, operation, outcome_json, lsn, created_at_ms"
        " FROM idempotency WHERE request_id LIKE $1", f"{tag}%")
    assert sorted(tuple(row) for row in records) == sorted(batch.idempotency)
    assert len(batch.idempotency) == 4


async def test_a_later_batch_committed_first_keeps_its_final_values(persistence, db):
    """Two writers: the batch that released a hold commits before the batch that made it.
    Every keyed row must end as the later batch left it; the ledger keeps both."""
    sku = unique("out-of-order")
    engine = Engine()
    engine.set_stock(sku, "", 10, None, NOW_MS)
    await persistence.write_batch(engine.take_journal(100))
    engine.reserve(f"{sku}-r", "o", [(sku, "", 4)], TTL_MS, NOW_MS, f"{sku}-q1")
    earlier = engine.take_journal(100)
    engine.commit(f"{sku}-r", [(sku, "", 3)], NOW_MS, f"{sku}-q2")
    later = engine.take_journal(100)
    await persistence.write_batch(later, writer=1)
    await persistence.write_batch(earlier, writer=0)
    assert tuple(await db.fetchrow("SELECT on_hand, reserved FROM items WHERE sku = $1",
                                   sku)) == (7, 0)
    assert await db.fetchval("SELECT status FROM reservations WHERE reservation_id = $1",
                             f"{sku}-r") == "committed"
    assert tuple(await db.fetchrow(
        "SELECT quantity, quantity_committed FROM reservation_lines WHERE reservation_id = $1",
        f"{sku}-r")) == (4, 3)
    # Appended in commit order (ids), read in change order (stamps).
    by_id = await db.fetch("SELECT kind FROM ledger WHERE sku = $1 ORDER BY id", sku)
    assert [row["kind"] for row in by_id] == ["set", "commit", "reserve"]
    chain = await db.fetch("SELECT kind, reserved_after FROM ledger WHERE sku = $1"
                           " ORDER BY stamp, id", sku)
    assert [tuple(row) for row in chain] == [("set", 0), ("reserve", 4), ("commit", 0)]
    assert await db.fetchval("SELECT count(*) FROM idempotency WHERE request_id LIKE $1",
                             f"{sku}-q%") == 2


async def test_a_new_epoch_stamps_after_every_earlier_batch(persistence, db):
    """After a reload the engine's LSNs start again from 1; its batches must still overwrite
    rows written by the previous engine with larger LSNs."""
    sku = unique("epoch")
    engine = Engine()
    for on_hand in range(1, 60):
        engine.set_stock(sku, "", on_hand, None, NOW_MS)
    await persistence.write_batch(engine.take_journal(100))
    await persistence.new_epoch()
    reloaded = Engine()
    reloaded.set_stock(sku, "", 5, None, NOW_MS)
    batch = reloaded.take_journal(100)
    assert batch.lsn_last == 1
    await persistence.write_batch(batch)
    assert await db.fetchval("SELECT on_hand FROM items WHERE sku = $1", sku) == 5


ROUNDS = 20
CROSSED_ITEMS = 30


async def test_concurrent_batches_on_the_same_items_never_deadlock(persistence, db):
    """Batches touching the same items in opposite orders, written at the same time on two
    connections: rows are locked in key order table by table, so neither waits in a cycle
    (PostgreSQL would abort one with a deadlock, failing a whole group commit)."""
    tag = unique("crossed")
    skus = [f"{tag}-{index:03d}" for index in range(CROSSED_ITEMS)]
    engine = Engine()
    for sku in skus:
        engine.set_stock(sku, "", ON_HAND, None, NOW_MS)
    await persistence.write_batch(engine.take_journal(1_000))
    for round_number in range(ROUNDS):
        for order, suffix in ((skus, "a"), (skus[::-1], "b")):
            for sku in order:
                engine.reserve(f"{sku}-{round_number}{suffix}", "o", [(sku, "", 1)], TTL_MS,
                               NOW_MS, None)
        # The first batch holds the "a" reservations, the second the reversed "b" ones.
        first = engine.take_journal(CROSSED_ITEMS)
        second = engine.take_journal(CROSSED_ITEMS)
        await asyncio.gather(persistence.write_batch(first, writer=0),
                             persistence.write_batch(second, writer=1))
    reserved = await db.fetch("SELECT reserved FROM items WHERE sku LIKE $1", f"{tag}-%")
    assert [row["reserved"] for row in reserved] == [2 * ROUNDS] * CROSSED_ITEMS
