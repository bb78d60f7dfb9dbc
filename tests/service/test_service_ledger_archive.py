"""Property: archiving the ledger (service/ledger_archive.py) at any cutoff, once or twice, over
any history the engine writes, keeps every invariant the ledger is for. Random engine
operations (reserves, commits, releases, expiries, adjustments, counts, safety stock) an hour
apart are written into PostgreSQL as the committer writes them; then:

- the rows in the file are exactly each item's oldest rows, up to the last one dated before
  the cutoff, as they were;
- what stays plus what went is the history, every row once;
- each item's ledger still sums to its counters, and still chains from zero;
- a second archive at a later cutoff folds the first one's opening row in and keeps all that.
"""

from __future__ import annotations

import csv
import gzip
import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stock_helpers import unique
from test_service_journal_log import connection_of, fresh_persistence

from service.audit import ITEM_AUDIT_STATEMENT
from service.engine import Engine, EngineError
from service.ledger_archive import archive

START_MS = 1_700_000_000_000
HOUR_MS = 3_600_000
TTL_MS = 2 * HOUR_MS  # some holds expire on later steps, so 'expire' rows appear too
LATER_MS = 4_000_000_000_000  # "now" for the archive: every cutoff is old enough
COLUMNS = ("id", "kind", "delta_on_hand", "delta_reserved", "delta_safety", "on_hand_after",
           "reserved_after", "safety_after", "at_ms", "reservation_id", "reason")

STEP = st.tuples(
    st.sampled_from(["reserve", "reserve", "release", "commit", "adjust", "set", "safety"]),
    st.integers(min_value=0, max_value=2),  # which sku
    st.integers(min_value=0, max_value=7),  # which earlier reservation (release, commit)
    st.integers(min_value=0, max_value=4),  # quantity
)


def apply_step(engine: Engine, skus: list[str], held: list[str], step, now_ms: int) -> None:
    """One engine operation at `now_ms`; refusals (short stock, wrong state) change nothing."""
    kind, sku, which, quantity = step
    try:
        if kind == "reserve":
            [answer] = engine.reserve_batch([(os.urandom(16).hex(), "order", [
                (skus[sku], "", quantity + 1)], TTL_MS, None)], now_ms)
            if not isinstance(answer, Exception):
                held.append(answer.reservation_id)
        elif kind == "adjust":
            engine.adjust(skus[sku], "", quantity + 1, now_ms, reason="in")
        elif kind == "set":
            engine.set_stock(skus[sku], "", quantity * 3, None, now_ms, reason="count")
        elif kind == "safety":
            engine.set_safety_stock(skus[sku], "", quantity, now_ms, reason="buffer")
        elif held:
            reservation_id = held[which % len(held)]
            if kind == "release":
                engine.release_batch([(reservation_id, None)], now_ms)
            else:
                engine.commit_batch([(reservation_id, None, None)], now_ms)
    except EngineError:  # refused (short stock, on hand below reserved, ...): journals nothing
        pass


async def ledger_of(connection, skus: list[str]) -> dict[str, list[tuple]]:
    rows = await connection.fetch(
        f"SELECT sku, {', '.join(COLUMNS)} FROM ledger WHERE sku = ANY($1)"
        " ORDER BY sku, stamp, id", skus)
    found: dict[str, list[tuple]] = {sku: [] for sku in skus}
    for row in rows:
        found[row["sku"]].append(tuple(str(row[name]) for name in COLUMNS))
    return found


def archived_rows(path, skus: list[str]) -> dict[str, list[tuple]]:
    found: dict[str, list[tuple]] = {sku: [] for sku in skus}
    for row in csv.DictReader(io.StringIO(gzip.decompress(path.read_bytes()).decode())):
        if row["sku"] in found:
            found[row["sku"]].append(tuple(row[name] for name in COLUMNS))
    return found


def prefix_before(rows: list[tuple], cutoff_ms: int) -> list[tuple]:
    """The rows up to the last one dated before the cutoff (in change order)."""
    last = max((index for index, row in enumerate(rows) if int(row[8]) < cutoff_ms),
               default=-1)
    return rows[:last + 1]


def check_sums_and_chain(rows: list[tuple], counters: tuple) -> None:
    levels = [0, 0, 0]
    for row in rows:
        deltas, after = [int(v) for v in row[2:5]], [int(v) for v in row[5:8]]
        assert [level + delta for level, delta in zip(levels, deltas, strict=True)] == after, row
        levels = after
    assert tuple(levels) == counters


async def check_item_audit(connection, tag: str, skus: list[str]) -> dict[str, tuple]:
    audit = {row["sku"]: row for row in await connection.fetch(ITEM_AUDIT_STATEMENT, f"{tag}-%")}
    assert all(not row["counters_differ"] and not row["holds_differ"] for row in audit.values())
    return {sku: (audit[sku]["on_hand"], audit[sku]["reserved"], audit[sku]["safety_stock"])
            if sku in audit else (0, 0, 0) for sku in skus}


# Ledger rows each example wrote: the property must not pass on empty histories.
WRITTEN: list[int] = []


@pytest.fixture(scope="module")
async def database():
    async with fresh_persistence() as persistence:
        yield persistence
    assert sum(WRITTEN) >= 6 * len(WRITTEN), f"histories too thin: {WRITTEN}"


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=8, max_size=24),
       cutoffs=st.tuples(st.integers(min_value=-1, max_value=25),
                         st.integers(min_value=-1, max_value=25)))
async def test_an_archive_at_any_cutoff_keeps_the_ledger_whole(database, tmp_path_factory,
                                                               steps, cutoffs):
    tag = unique("archive")
    skus = [f"{tag}-{index}" for index in range(3)]
    engine = Engine()
    for sku in skus:  # every item starts counted, so reserves can succeed from the first step
        engine.set_stock(sku, "", 6, None, START_MS - HOUR_MS, reason="count")
    held: list[str] = []
    for number, step in enumerate(steps):
        apply_step(engine, skus, held, step, START_MS + number * HOUR_MS)
        batch = engine.take_journal(10_000)
        if batch is not None:
            await database.write_batch(batch)
    first, second = sorted(START_MS + hours * HOUR_MS for hours in cutoffs)
    folder = tmp_path_factory.mktemp(tag)
    async with connection_of(database) as connection:
        history = await ledger_of(connection, skus)
        WRITTEN.append(sum(len(rows) for rows in history.values()))
        counters = await check_item_audit(connection, tag, skus)
        for sku in skus:
            check_sums_and_chain(history[sku], counters[sku])

        before = history
        for number, cutoff in enumerate((first, second)):
            path = folder / f"{number}.csv.gz"
            done = await archive(connection, cutoff, path, reason="property", actor="test",
                                 now_ms=LATER_MS)
            after = await ledger_of(connection, skus)
            went = archived_rows(path, skus) if done.path else {sku: [] for sku in skus}
            assert await check_item_audit(connection, tag, skus) == counters
            for sku in skus:
                assert went[sku] == prefix_before(before[sku], cutoff)
                stayed = after[sku][1:] if went[sku] else after[sku]
                assert stayed == before[sku][len(went[sku]):]
                if went[sku]:
                    opening = after[sku][0]
                    assert (opening[0], opening[1], opening[5:8]) == (
                        went[sku][-1][0], "opening", went[sku][-1][5:8])
                check_sums_and_chain(after[sku], counters[sku])
            # Every row of the history is in the table or in a file, once.
            before = after
