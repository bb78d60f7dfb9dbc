"""PostgreSQL: the only module with SQL in it.

The engine decides; this module writes what the engine journaled, one transaction per batch
(`write_batch`), loads the state back for recovery (`load_state`), and answers look-ups of
reservations the engine no longer keeps in memory (`find_reservation`).
Every statement is bounded by the pool's command timeout.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from service.engine import PG_TABLES

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any constant works; it only has to be the same for every instance migrating this database.
MIGRATION_LOCK_KEY = 0x5_70C_0001
# Idempotency pruning deletes in slices so it never holds long locks or a long transaction.
PRUNE_ROWS_PER_STATEMENT_MAX = 10_000

# One journal table: (SQL table, columns with their SQL types, what to do on a key conflict).
# Tables and column order are the engine's (`PG_TABLES`, core_rs/src/pg_columns.rs): a
# journal batch arrives as one PostgreSQL array literal per column (`JournalBatch.columns`).
BatchTable = tuple[str, tuple[tuple[str, str], ...], str]
BATCH_TABLES: tuple[BatchTable, ...] = (
    ("items",
     (("sku", "text"), ("location", "text"), ("on_hand", "bigint"), ("reserved", "bigint")),
     "ON CONFLICT (location, sku) DO UPDATE"
     " SET on_hand = EXCLUDED.on_hand, reserved = EXCLUDED.reserved"),
    ("reservations",
     (("reservation_id", "text"), ("order_id", "text"), ("status", "text"),
      ("expires_at_ms", "bigint"), ("created_at_ms", "bigint"), ("updated_at_ms", "bigint"),
      ("request_id", "text")),
     "ON CONFLICT (reservation_id) DO UPDATE SET status = EXCLUDED.status,"
     " expires_at_ms = EXCLUDED.expires_at_ms, updated_at_ms = EXCLUDED.updated_at_ms"),
    # line_number is kept from the first write.
    ("reservation_lines",
     (("reservation_id", "text"), ("sku", "text"), ("location", "text"),
      ("quantity", "bigint"), ("quantity_committed", "bigint"), ("line_number", "integer")),
     "ON CONFLICT (reservation_id, sku, location) DO UPDATE"
     " SET quantity = EXCLUDED.quantity, quantity_committed = EXCLUDED.quantity_committed"),
    # A request id seen again after the engine evicted its record was a new request to the
    # engine; its newer record replaces the old one.
    ("idempotency",
     (("request_id", "text"), ("fingerprint", "bigint"), ("operation", "text"),
      ("outcome_json", "text"), ("lsn", "bigint"), ("created_at_ms", "bigint")),
     "ON CONFLICT (request_id) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,"
     " operation = EXCLUDED.operation, outcome_json = EXCLUDED.outcome_json,"
     " lsn = EXCLUDED.lsn, created_at_ms = EXCLUDED.created_at_ms"),
    ("ledger",
     (("lsn", "bigint"), ("at_ms", "bigint"), ("sku", "text"), ("location", "text"),
      ("kind", "text"), ("delta_on_hand", "bigint"), ("delta_reserved", "bigint"),
      ("on_hand_after", "bigint"), ("reserved_after", "bigint"), ("reservation_id", "text"),
      ("order_id", "text"), ("request_id", "text"), ("reason", "text"), ("actor", "text")),
     ""),
)
assert [(table, [name for name, _ in columns]) for table, columns, _ in BATCH_TABLES] == [
    (table, list(columns)) for table, columns in PG_TABLES], "SQL columns differ from the engine's"


def batch_statement(tables: tuple[BatchTable, ...] = BATCH_TABLES) -> str:
    """The whole batch as ONE statement: one data-modifying CTE per table, each a multi-row
    INSERT from unnest()ed arrays. One statement is one round trip and is atomic on its own
    (constraints are checked at its end), so a batch costs a single await on a busy loop.
    Each array comes as text and is parsed by PostgreSQL (`$n::text::bigint[]`): the driver
    then sends one string per column, whatever the batch size (measured: converting rows to
    Python objects and encoding arrays element by element was most of the write path's CPU)."""
    parts, number = [], 0
    for table, table_columns, on_conflict in tables:
        arrays = []
        for _, sql_type in table_columns:
            number += 1
            arrays.append(f"${number}::text::{sql_type}[]")
        names = ", ".join(name for name, _ in table_columns)
        parts.append(f"write_{table} AS (INSERT INTO {table} ({names})"
                     f" SELECT * FROM unnest({', '.join(arrays)}) {on_conflict})")
    return "WITH " + ",\n     ".join(parts) + "\nSELECT 1"


BATCH_STATEMENT = batch_statement()


@dataclass(frozen=True)
class StoredReservation:
    """A reservation as PostgreSQL has it; same attribute names as the engine's ReservationView."""

    reservation_id: str
    order_id: str
    status: str
    lines: list[tuple[str, str, int]]
    committed_lines: list[tuple[str, str, int]]
    expires_at_ms: int
    lsn: int = 0  # already durable
    replayed: bool = False


@dataclass(frozen=True)
class LoadedState:
    """What recovery hands to `Engine.load`, in its argument shapes."""

    items: list[tuple[str, str, int, int]]
    holds: list[tuple[str, str, int, int, list[tuple[str, str, int]]]]
    idempotency_records: list[tuple[str, int, str, str, int]]


# The batch statement is planned once per writer connection, not on every batch: its plan
# never depends on the arrays' contents, and planning the five-table statement again cost more
# PostgreSQL time per batch than writing a small batch.
WRITER_SETTINGS = {"plan_cache_mode": "force_generic_plan"}

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def ssl_setting(database_url: str) -> bool | None:
    """TLS to a PostgreSQL on this machine buys nothing and costs write-path CPU (measured: 40% more
    batched reservations/s without it), so a loopback URL without an explicit sslmode connects in
    plain text.
    Anything else keeps asyncpg's default (None: the URL's sslmode, else "prefer")."""
    parsed = urllib.parse.urlsplit(database_url)
    if "sslmode" in urllib.parse.parse_qs(parsed.query):
        return None
    return False if parsed.hostname in LOOPBACK_HOSTS else None


class Persistence:
    def __init__(self, database_url: str, *, pool_size: int, timeout_ms: int):
        self._database_url = database_url
        self._pool_size = pool_size
        self._timeout_s = timeout_ms / 1000
        self._pool: asyncpg.Pool | None = None
        self._writer: asyncpg.Connection | None = None

    async def open(self) -> None:
        """Connects (bounded by the timeout) and applies pending migrations."""
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self._database_url, min_size=1, max_size=self._pool_size,
                timeout=self._timeout_s, command_timeout=self._timeout_s,
                ssl=ssl_setting(self._database_url))
        async with self._acquire() as connection:
            await apply_migrations(connection)

    async def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                await writer.close(timeout=self._timeout_s)
            except Exception:  # a dead server must not stop shutdown
                writer.terminate()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await pool.close()
            except Exception:  # a dead server must not stop shutdown
                log.exception("closing the PostgreSQL pool failed; terminating it")
                pool.terminate()

    def _acquire(self):
        assert self._pool is not None, "Persistence.open() first"
        return self._pool.acquire(timeout=self._timeout_s)

    async def ping(self) -> None:
        """Raises unless PostgreSQL answers a trivial query within the timeout."""
        async with self._acquire() as connection:
            await connection.fetchval("SELECT 1")

    async def _writer_connection(self) -> asyncpg.Connection:
        """The one connection batches are written on, kept out of the pool: a pool hands a
        connection back with a reset query, one more round trip per batch (measured: about a
        third of the committer's time on small batches). Re-made after any failure."""
        if self._writer is None or self._writer.is_closed():
            self._writer = await asyncpg.connect(
                self._database_url, timeout=self._timeout_s, command_timeout=self._timeout_s,
                ssl=ssl_setting(self._database_url), server_settings=WRITER_SETTINGS)
        return self._writer

    async def _drop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.terminate()  # its state is unknown: never reuse it

    async def write_batch(self, batch: Any) -> None:
        """Writes one journal batch in one statement: all of it or, on error, none of it."""
        connection = await self._writer_connection()
        try:
            await connection.execute(BATCH_STATEMENT, *batch.columns)
        except BaseException:
            await self._drop_writer()
            raise

    async def load_state(self, idempotency_records_max: int) -> LoadedState:
        """Everything the engine needs after a start or a rebuild, read in one snapshot."""
        async with self._acquire() as connection, connection.transaction(
                isolation="repeatable_read", readonly=True):
            items = await connection.fetch("SELECT sku, location, on_hand, reserved FROM items")
            holds = await connection.fetch(
                "SELECT r.reservation_id, r.order_id, r.expires_at_ms, r.created_at_ms,"
                "       array_agg(l.sku ORDER BY l.line_number) AS skus,"
                "       array_agg(l.location ORDER BY l.line_number) AS locations,"
                "       array_agg(l.quantity ORDER BY l.line_number) AS quantities"
                "  FROM reservations r JOIN reservation_lines l USING (reservation_id)"
                " WHERE r.status = 'active'"
                " GROUP BY r.reservation_id")
            # The newest records, handed over oldest first so the engine evicts in age order.
            records = await connection.fetch(
                "SELECT request_id, fingerprint, operation, outcome_json, created_at_ms"
                "  FROM idempotency ORDER BY created_at_ms DESC, request_id LIMIT $1",
                idempotency_records_max)
        return LoadedState(
            items=[tuple(row) for row in items],
            holds=[(row["reservation_id"], row["order_id"], row["expires_at_ms"],
                    row["created_at_ms"],
                    list(zip(row["skus"], row["locations"], row["quantities"], strict=True)))
                   for row in holds],
            idempotency_records=[tuple(row) for row in reversed(records)])

    async def find_reservation(self, reservation_id: str) -> StoredReservation | None:
        async with self._acquire() as connection:
            head = await connection.fetchrow(
                "SELECT order_id, status, expires_at_ms FROM reservations"
                " WHERE reservation_id = $1", reservation_id)
            if head is None:
                return None
            lines = await connection.fetch(
                "SELECT sku, location, quantity, quantity_committed FROM reservation_lines"
                " WHERE reservation_id = $1 ORDER BY line_number", reservation_id)
        committed = head["status"] == "committed"
        return StoredReservation(
            reservation_id=reservation_id, order_id=head["order_id"], status=head["status"],
            lines=[(row["sku"], row["location"], row["quantity"]) for row in lines],
            committed_lines=[(row["sku"], row["location"], row["quantity_committed"])
                             for row in lines if committed and row["quantity_committed"] > 0],
            expires_at_ms=head["expires_at_ms"])

    async def prune_idempotency(self, created_before_ms: int) -> int:
        """Deletes records older than the cut-off in bounded slices; returns how many went."""
        deleted_total = 0
        while True:
            async with self._acquire() as connection:
                status = await connection.execute(
                    "DELETE FROM idempotency WHERE request_id IN ("
                    " SELECT request_id FROM idempotency WHERE created_at_ms < $1 LIMIT $2)",
                    created_before_ms, PRUNE_ROWS_PER_STATEMENT_MAX)
            deleted = int(status.split()[-1])
            deleted_total += deleted
            if deleted < PRUNE_ROWS_PER_STATEMENT_MAX:
                return deleted_total


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every file in service/migrations, in version order."""
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        assert match, f"migration file name must look like 0001_name.sql: {path.name}"
        found.append((int(match.group(1)), path.name, path.read_text()))
    versions = [version for version, _, _ in found]
    assert versions == list(range(1, len(found) + 1)), f"migrations must be 1..n: {versions}"
    return found


async def apply_migrations(connection: asyncpg.Connection) -> list[str]:
    """Applies every migration not yet in schema_migrations: one transaction, one savepoint each."""
    applied_now = []
    async with connection.transaction():
        # Two instances starting together must not both migrate.
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())")
        done = {row["version"] for row in
                await connection.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migration_files():
            if version in done:
                continue
            async with connection.transaction():  # a savepoint: one migration, whole or not
                await connection.execute(sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    version, name)
            applied_now.append(name)
            log.info("applied migration %s", name)
    return applied_now
