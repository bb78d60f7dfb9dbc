"""Retention: reservations that ended long ago are deleted from PostgreSQL with their lines,
in slices; active ones never, whatever their age; nothing while an older journal_log row
could write one back; the ledger keeps every movement. The pruner passes the right cut-offs
and counts what went."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from test_service_journal_log import fresh_persistence

from service import persistence as persistence_module
from service import pruner as pruner_module
from service.engine import Engine
from service.persistence import Persistence
from service.pruner import Pruner

SKU = "retention-sku"
# Times far in the past (ms since the epoch), so the cut-offs below sit between them.
RESERVED_AT_MS = 1_000_000
ENDED_AT_MS = 2_000_000
CUTOFF_MS = 5_000_000
RECENT_AT_MS = 9_000_000
LONG_TTL_MS = 86_400_000
SHORT_TTL_MS = 1_000
SLICE = 100


@pytest.fixture
async def store():
    async with fresh_persistence() as persistence:
        await persistence.new_epoch()
        yield persistence


async def write(store: Persistence, engine: Engine) -> None:
    while (batch := engine.take_journal(10_000)) is not None:
        await store.write_batch(batch)


async def lifecycle(store: Persistence) -> Engine:
    """r-commit, r-release and r-expire ended at ENDED_AT_MS, r-recent at RECENT_AT_MS;
    r-active (reserved at the same time as the first three) is still active."""
    engine = Engine()
    engine.set_stock(SKU, "", 100, None, RESERVED_AT_MS)
    engine.set_stock("retention-other", "", 10, None, RESERVED_AT_MS)
    engine.reserve("r-commit", "o-commit", [(SKU, "", 2), ("retention-other", "", 1)],
                   LONG_TTL_MS, RESERVED_AT_MS)
    for name in ("release", "active", "recent"):
        engine.reserve(f"r-{name}", f"o-{name}", [(SKU, "", 2)], LONG_TTL_MS, RESERVED_AT_MS)
    engine.reserve("r-expire", "o-expire", [(SKU, "", 3)], SHORT_TTL_MS, RESERVED_AT_MS)
    await write(store, engine)
    engine.commit("r-commit", None, ENDED_AT_MS)
    engine.release("r-release", ENDED_AT_MS)
    assert engine.expire_due(ENDED_AT_MS, 10) == ["r-expire"]
    await write(store, engine)
    engine.release("r-recent", RECENT_AT_MS)
    await write(store, engine)
    return engine


async def rows(store: Persistence, statement: str) -> set:
    async with store._acquire() as connection:
        return {tuple(row) for row in await connection.fetch(statement)}


async def test_only_reservations_ended_before_the_cutoff_go_with_their_lines(store):
    await lifecycle(store)
    ledger_before = await rows(store, "SELECT id, kind, reservation_id FROM ledger")

    assert await store.prune_reservations(CUTOFF_MS, SLICE) == 3

    assert await rows(store, "SELECT reservation_id, status FROM reservations") == {
        ("r-active", "active"), ("r-recent", "released")}
    assert await rows(store, "SELECT reservation_id, sku FROM reservation_lines") == {
        ("r-active", SKU), ("r-recent", SKU)}
    # The ledger still explains every unit of the pruned reservations.
    assert await rows(store, "SELECT id, kind, reservation_id FROM ledger") == ledger_before
    assert {kind for _, kind, reservation in ledger_before if reservation == "r-expire"} == {
        "reserve", "expire"}
    # Nothing else is old enough; a restart loads the same state as before.
    assert await store.prune_reservations(CUTOFF_MS, SLICE) == 0
    state = await store.load_state(1_000)
    assert [hold[0] for hold in state.holds] == ["r-active"]
    assert (SKU, "", 98, 2, 0) in state.items


async def test_an_active_reservation_is_kept_however_old(store):
    await lifecycle(store)
    assert await store.prune_reservations(RECENT_AT_MS + 1, SLICE) == 4
    assert await rows(store, "SELECT reservation_id FROM reservations") == {("r-active",)}
    assert await rows(store, "SELECT reservation_id FROM reservation_lines") == {("r-active",)}


async def test_nothing_goes_while_an_older_journal_log_row_waits(store):
    """A journal_log row older than a reservation's last write may hold an earlier state of
    it: projected after a delete, it would write the reservation back (as active)."""
    await lifecycle(store)
    async with store._acquire() as connection:
        text_columns = [row["column_name"] for row in await connection.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'journal_log' AND data_type = 'text'")]
        await connection.execute(
            f"INSERT INTO journal_log (stamp, lsn_first, operations, {', '.join(text_columns)})"
            f" VALUES (1, 1, 1, {', '.join(['$1'] * len(text_columns))})", "{}")
    assert await store.prune_reservations(CUTOFF_MS, SLICE) == 0
    assert len(await rows(store, "SELECT reservation_id FROM reservations")) == 5

    async with store._acquire() as connection:
        await connection.execute("DELETE FROM journal_log")
    assert await store.prune_reservations(CUTOFF_MS, SLICE) == 3


async def test_a_slice_takes_the_oldest_ended_first_and_no_more_than_asked(store):
    engine = Engine()
    engine.set_stock(SKU, "", 100, None, RESERVED_AT_MS)
    for index in range(7):
        engine.reserve(f"r-{index}", "o", [(SKU, "", 1)], LONG_TTL_MS, RESERVED_AT_MS)
        engine.release(f"r-{index}", ENDED_AT_MS + index)
    await write(store, engine)
    assert await store.prune_reservations(CUTOFF_MS, 3) == 3
    assert await rows(store, "SELECT reservation_id FROM reservations") == {
        (f"r-{index}",) for index in range(3, 7)}
    assert await rows(store, "SELECT reservation_id FROM reservation_lines") == {
        (f"r-{index}",) for index in range(3, 7)}


async def test_the_pruner_deletes_a_backlog_slice_by_slice(store, monkeypatch):
    monkeypatch.setattr(pruner_module, "PRUNE_SLICE_ROWS", 2)
    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(pruner_module, "_pause", pause)
    monkeypatch.setattr(pruner_module, "now_ms", lambda: CUTOFF_MS + LONG_TTL_MS)
    engine = Engine()
    engine.set_stock(SKU, "", 100, None, RESERVED_AT_MS)
    for index in range(7):
        engine.reserve(f"r-{index}", "o", [(SKU, "", 1)], LONG_TTL_MS, RESERVED_AT_MS,
                       f"q-{index}")
        engine.release(f"r-{index}", ENDED_AT_MS)
    await write(store, engine)
    pruner = Pruner(store, idempotency_retention_ms=LONG_TTL_MS,
                    reservation_retention_ms=LONG_TTL_MS)

    assert await pruner.prune_once() == {"idempotency": 7, "reservations": 7}

    assert await rows(store, "SELECT reservation_id FROM reservations") == set()
    assert await rows(store, "SELECT request_id FROM idempotency") == set()
    # 7 rows in slices of 2 per table: three full slices (each followed by a pause), one short.
    assert len(pauses) == 6 and all(pause > 0 for pause in pauses)


@pytest.mark.parametrize(("statement", "index", "arguments"), [
    ("PRUNE_RESERVATIONS_STATEMENT", "reservations_ended",
     (CUTOFF_MS, 10)),
    ("PRUNE_IDEMPOTENCY_STATEMENT", "idempotency_created", (CUTOFF_MS, 10))])
async def test_a_prune_statement_can_use_its_index(store, statement, index, arguments):
    """The statements' filter and order match their indexes (migration 0006's partial index
    for ended reservations), so a slice is found without reading the table (the planner is
    told to avoid scans where it can)."""
    async with store._acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL enable_seqscan = off")
        await connection.execute("SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(row[0] for row in await connection.fetch(
            "EXPLAIN " + getattr(persistence_module, statement), *arguments))
    assert f"Index Scan using {index}" in plan, plan


async def test_an_idempotency_slice_takes_the_oldest_records(store):
    async with store._acquire() as connection:
        await connection.execute(
            "INSERT INTO idempotency (request_id, fingerprint, operation, outcome_json, lsn,"
            " created_at_ms) SELECT 'q-' || n, n, 'reserve', '{}', n, 1000 + n"
            "   FROM generate_series(5, 1, -1) n")  # newest first in the table
    assert await store.prune_idempotency(CUTOFF_MS, 2) == 2
    assert await rows(store, "SELECT request_id FROM idempotency") == {("q-3",), ("q-4",),
                                                                        ("q-5",)}


class RecordingStore:
    """Answers prunes with fixed counts and records the cut-offs asked for."""

    def __init__(self):
        self.cutoffs: dict[str, int] = {}

    async def prune_idempotency(self, created_before_ms: int, limit: int) -> int:
        self.cutoffs["idempotency"] = created_before_ms
        return 4

    async def prune_reservations(self, ended_before_ms: int, limit: int) -> int:
        self.cutoffs["reservations"] = ended_before_ms
        return 6


def pruned(table: str) -> float:
    return REGISTRY.get_sample_value("stock_pruned_rows_total", {"table": table}) or 0.0


@pytest.mark.parametrize("reservation_retention_ms", [0, LONG_TTL_MS * 30])
async def test_the_pruner_asks_for_each_table_past_its_own_retention(
        monkeypatch, reservation_retention_ms):
    now = 10_000_000_000_000
    monkeypatch.setattr("service.pruner.now_ms", lambda: now)
    store = RecordingStore()
    before = {table: pruned(table) for table in ("idempotency", "reservations")}
    pruner = Pruner(store, idempotency_retention_ms=LONG_TTL_MS * 7,  # type: ignore[arg-type]
                    reservation_retention_ms=reservation_retention_ms)

    deleted = await pruner.prune_once()

    expected_cutoffs = {"idempotency": now - LONG_TTL_MS * 7}
    if reservation_retention_ms:  # 0 keeps every reservation
        expected_cutoffs["reservations"] = now - reservation_retention_ms
    assert store.cutoffs == expected_cutoffs
    assert deleted == {table: 4 if table == "idempotency" else 6 for table in expected_cutoffs}
    assert pruned("idempotency") == before["idempotency"] + 4
    assert pruned("reservations") == before["reservations"] + (
        6 if reservation_retention_ms else 0)


class FailingStore(RecordingStore):
    async def prune_reservations(self, ended_before_ms: int, limit: int) -> int:
        raise ConnectionError("PostgreSQL went away")


async def test_a_failed_round_is_counted_and_the_pruner_goes_on():
    failures = REGISTRY.get_sample_value("stock_prune_failures_total") or 0.0
    pruner = Pruner(FailingStore(), idempotency_retention_ms=1,  # type: ignore[arg-type]
                    reservation_retention_ms=LONG_TTL_MS)
    await pruner.prune_round()  # does not raise
    assert REGISTRY.get_sample_value("stock_prune_failures_total") == failures + 1
