"""The schema guards the invariants a second time and keeps the ledger append-only."""

from __future__ import annotations

import asyncpg
import pytest
from conftest import create_database, drop_database

from service import persistence
from service.engine import Engine
from service.persistence import migration_files


async def test_migrations_are_recorded(db):
    versions = [row["version"] for row in
                await db.fetch("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [version for version, _, _ in migration_files()]


@pytest.mark.parametrize(("on_hand", "reserved"), [(-1, 0), (5, -1), (5, 6)])
async def test_item_check_constraint_refuses_invalid_levels(db, on_hand, reserved):
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("INSERT INTO items (sku, location, on_hand, reserved)"
                         " VALUES ('check-sku', '', $1, $2)", on_hand, reserved)


@pytest.mark.parametrize("statement", ["UPDATE ledger SET reason = 'x'", "DELETE FROM ledger",
                                       "TRUNCATE ledger"])
async def test_ledger_refuses_changes(db, statement):
    # Appending is allowed; a row guarantees the row-level triggers have something to refuse.
    await db.execute(
        "INSERT INTO ledger (lsn, at_ms, sku, location, kind, delta_on_hand, delta_reserved,"
        " on_hand_after, reserved_after, reservation_id, order_id, request_id, reason, actor)"
        " VALUES (0, 0, 'ledger-sku', '', 'adjust', 1, 0, 1, 0, '', '', '', 'test', 'test')")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db.execute(statement)


# One ledger row of item $2 dated $1, for the archive guard's tests.
LEDGER_ROW_AT = ("INSERT INTO ledger (lsn, at_ms, sku, location, kind, delta_on_hand,"
                 " delta_reserved, on_hand_after, reserved_after, reservation_id, order_id,"
                 " request_id, reason, actor)"
                 " VALUES (0, $1, $2, '', 'adjust', 1, 0, 1, 0, '', '', '', 'test', 'test')")


async def test_only_an_archive_transaction_deletes_and_only_rows_older_than_its_cutoff(db):
    """Migration 0008: the ledger trigger lets a DELETE through only inside a transaction that
    set stock.ledger_archive_before_ms (service/ledger_archive.py), and only for older rows;
    UPDATE and TRUNCATE stay refused there too."""
    async with db.acquire() as connection:
        await connection.execute(LEDGER_ROW_AT, 5, "archive-old")
        await connection.execute(LEDGER_ROW_AT, 10, "archive-new")
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.fetchval(
                "SELECT set_config('stock.ledger_archive_before_ms', '10', true)")
            for statement in ("UPDATE ledger SET reason = 'x' WHERE sku = 'archive-old'",
                              "DELETE FROM ledger WHERE sku = 'archive-new'", "TRUNCATE ledger"):
                with pytest.raises(asyncpg.RaiseError, match="append-only"):
                    async with connection.transaction():  # a savepoint: the outer one goes on
                        await connection.execute(statement)
            assert await connection.execute(
                "DELETE FROM ledger WHERE sku = 'archive-old'") == "DELETE 1"
        finally:
            await transaction.rollback()
        # The setting was the transaction's own: outside it the row is protected again.
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await connection.execute("DELETE FROM ledger WHERE sku = 'archive-old'")


async def test_appends_go_on_while_an_archive_transaction_is_open(db):
    """An archive's transaction locks only the rows it deletes: the service's appends (other
    items' and the same item's newer rows) do not wait for it."""
    async with db.acquire() as archiving, db.acquire() as appending:
        await archiving.execute(LEDGER_ROW_AT, 5, "archive-busy")
        transaction = archiving.transaction(isolation="repeatable_read")
        await transaction.start()
        try:
            await archiving.fetchval(
                "SELECT set_config('stock.ledger_archive_before_ms', '10', true)")
            assert await archiving.execute(
                "DELETE FROM ledger WHERE sku = 'archive-busy'") == "DELETE 1"
            for sku in ("archive-busy", "archive-other"):
                await appending.execute(LEDGER_ROW_AT, 20, sku, timeout=5)
        finally:
            await transaction.rollback()


async def test_idempotency_pruning_deletes_only_old_records(database_url, db):
    from service.persistence import Persistence

    await db.execute(
        "INSERT INTO idempotency (request_id, fingerprint, operation, outcome_json, lsn,"
        " created_at_ms) VALUES ('prune-old', 1, 'reserve', '{}', 1, 1000),"
        " ('prune-new', 2, 'reserve', '{}', 2, 5000)")
    persistence = Persistence(database_url, pool_size=1, timeout_ms=5_000)
    await persistence.open()
    try:
        deleted = await persistence.prune_idempotency(created_before_ms=2000, limit=10)
    finally:
        await persistence.close()
    assert deleted == 1
    left = {row["request_id"] for row in await db.fetch(
        "SELECT request_id FROM idempotency WHERE request_id LIKE 'prune-%'")}
    assert left == {"prune-new"}


async def test_identifier_columns_compare_byte_by_byte(db):
    """Migration 0005: every text column in a key or index of the tables the batch statement
    writes is collated "C", so its B-tree comparisons never go through strcoll."""
    rows = await db.fetch(
        "SELECT c.relname AS table_name, a.attname AS column_name,"
        "       coalesce(co.collname, '') AS collation"
        "  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
        "  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey)"
        "  LEFT JOIN pg_collation co ON co.oid = a.attcollation"
        " WHERE c.relname IN ('items', 'reservations', 'reservation_lines', 'idempotency',"
        "                     'ledger') AND a.atttypid = 'text'::regtype")
    indexed = {(row["table_name"], row["column_name"]): row["collation"] for row in rows}
    assert indexed == {
        ("items", "sku"): "C", ("items", "location"): "C",
        ("reservations", "reservation_id"): "C",
        ("reservation_lines", "reservation_id"): "C", ("reservation_lines", "sku"): "C",
        ("reservation_lines", "location"): "C",
        ("idempotency", "request_id"): "C",
        ("ledger", "sku"): "C", ("ledger", "location"): "C"}


# Columns migration 0007 added (safety stock): a version before it wrote batches without them.
SAFETY_COLUMNS = {("items", "safety_stock"), ("ledger", "delta_safety"),
                  ("ledger", "safety_after")}


def tables_before_safety_stock() -> tuple:
    """The journal tables as a version before migration 0007 wrote them."""
    return tuple(
        (table, tuple(c for c in columns if (table, c[0]) not in SAFETY_COLUMNS), key,
         tuple(name for name in updates if (table, name) not in SAFETY_COLUMNS))
        for table, columns, key, updates in persistence.BATCH_TABLES)


def columns_before_safety_stock(columns: list[str]) -> list[str]:
    """A batch's arrays without the safety stock columns (`JournalBatch.columns` order)."""
    names = [(table, name) for table, table_columns, _, _ in persistence.BATCH_TABLES
             for name, _ in table_columns]
    assert len(names) == len(columns)
    return [array for name, array in zip(names, columns, strict=True)
            if name not in SAFETY_COLUMNS]


async def test_collation_migration_keeps_rows_written_before_it(monkeypatch):
    """A database written at migration 0004 (the batch statement of then: no collation in its
    sort) keeps every row through 0005, and takes the current statement's writes after it."""
    dsn = await create_database()
    connection = await asyncpg.connect(dsn)
    try:
        files = migration_files()
        monkeypatch.setattr(persistence, "migration_files", lambda: files[:4])
        await persistence.apply_migrations(connection)
        monkeypatch.setattr(persistence, "migration_files", lambda: files[:5])
        engine = Engine()
        for index in range(20):
            engine.set_stock(f"upgrade-{index:02d}", "" if index % 2 else "WH-b", 10, None, 1_000)
        engine.reserve_batch([(f"r-{index}", f"o-{index}", [(f"upgrade-{index:02d}",
                               "" if index % 2 else "WH-b", 2)], 60_000, f"q-{index}")
                              for index in range(10)], 2_000)
        statement_before_safety = persistence.batch_statement(tables_before_safety_stock())
        old_statement = statement_before_safety.replace(' COLLATE "C"', "")
        assert old_statement != statement_before_safety
        await connection.fetchrow(
            old_statement, *columns_before_safety_stock(engine.take_journal(1_000).columns), 1)
        tables = ("items", "reservations", "reservation_lines", "idempotency", "ledger")
        before = {table: sorted(tuple(row) for row in await connection.fetch(
            f"SELECT * FROM {table}")) for table in tables}

        assert await persistence.apply_migrations(connection) == [files[4][1]]

        after = {table: sorted(tuple(row) for row in await connection.fetch(
            f"SELECT * FROM {table}")) for table in tables}
        assert after == before
        monkeypatch.setattr(persistence, "migration_files", lambda: files)
        await persistence.apply_migrations(connection)
        engine.reserve_batch([(f"r-{index}", f"o-{index}", [(f"upgrade-{index:02d}",
                               "" if index % 2 else "WH-b", 3)], 60_000, f"q-{index}")
                              for index in range(10, 20)], 3_000)
        await connection.fetchrow(persistence.BATCH_STATEMENT,
                                  *engine.take_journal(1_000).columns, 2)
        assert await connection.fetchval("SELECT sum(reserved) FROM items") == 10 * 2 + 10 * 3
        assert await connection.fetchval("SELECT count(*) FROM reservations") == 20
    finally:
        await connection.close()
        await drop_database(dsn)


async def test_safety_stock_migration_fills_logged_batches_and_keeps_rows(monkeypatch):
    """A database at migration 0006 with rows in the tables and a batch still in the journal
    log (both written without safety stock columns) migrates to 0007: rows keep their values
    with safety stock 0, the logged batch projects with zeros in the new columns, the counters
    still equal the ledger's sums, and a safety stock change is then written like any other."""
    dsn = await create_database()
    connection = await asyncpg.connect(dsn)
    try:
        files = migration_files()
        assert files[6][1] == "0007_safety_stock.sql"
        monkeypatch.setattr(persistence, "migration_files", lambda: files[:6])
        await persistence.apply_migrations(connection)
        old_tables = tables_before_safety_stock()
        engine = Engine()
        for index in range(5):
            engine.set_stock(f"old-{index}", "", 10, None, 1_000)
        engine.reserve("r-direct", "o", [("old-0", "", 2)], 60_000, 1_500)
        await connection.fetchrow(persistence.batch_statement(old_tables),
                                  *columns_before_safety_stock(engine.take_journal(100).columns),
                                  1)
        engine.reserve("r-logged", "o", [("old-0", "", 3), ("old-1", "", 1)], 60_000, 2_000)
        logged = engine.take_journal(100)
        await connection.execute(
            persistence.log_append_statement(old_tables), 2, logged.lsn_first,
            logged.lsn_last - logged.lsn_first + 1, *columns_before_safety_stock(logged.columns))

        monkeypatch.setattr(persistence, "migration_files", lambda: files[:7])
        assert await persistence.apply_migrations(connection) == [files[6][1]]

        assert await connection.fetchval("SELECT items__safety_stock FROM journal_log") == \
            "{0,0}"
        projected = await connection.fetchrow(persistence.PROJECT_STATEMENT)
        assert projected[0] == 2
        items = {row["sku"]: tuple(row)[1:] for row in await connection.fetch(
            "SELECT sku, on_hand, reserved, safety_stock FROM items")}
        assert items["old-0"] == (10, 5, 0) and items["old-1"] == (10, 1, 0)
        assert await connection.fetchval(
            "SELECT count(*) FROM ledger WHERE delta_safety <> 0 OR safety_after <> 0") == 0

        view = engine.set_safety_stock("old-0", "", 4, 3_000, reason="buffer")
        assert view.levels == [("old-0", "", 10, 5, 1, 4)]
        await connection.fetchrow(persistence.BATCH_STATEMENT,
                                  *engine.take_journal(100).columns, 3)
        assert tuple(await connection.fetchrow(
            "SELECT on_hand, reserved, safety_stock FROM items WHERE sku = 'old-0'")) == \
            (10, 5, 4)
        row = await connection.fetchrow(
            "SELECT kind, delta_on_hand, delta_reserved, delta_safety, safety_after, reason"
            " FROM ledger WHERE sku = 'old-0' ORDER BY stamp DESC, id DESC LIMIT 1")
        assert tuple(row) == ("safety", 0, 0, 4, 4, "buffer")
        differing = await connection.fetchval(
            "SELECT count(*) FROM items i JOIN (SELECT sku, sum(delta_on_hand) AS on_hand,"
            " sum(delta_reserved) AS reserved, sum(delta_safety) AS safety FROM ledger"
            " GROUP BY sku) s USING (sku) WHERE (i.on_hand, i.reserved, i.safety_stock)"
            " <> (s.on_hand, s.reserved, s.safety)")
        assert differing == 0
    finally:
        await connection.close()
        await drop_database(dsn)
