"""PostgreSQL: the only module with SQL in it.

The engine decides; this module writes what the engine journaled, one transaction per batch
(`write_batch`), loads the state back for recovery (`load_state`), and answers look-ups of
reservations the engine no longer keeps in memory (`find_reservation`).
Every statement is bounded by the pool's command timeout.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import urllib.parse
from collections.abc import Callable
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
# Ended reservations (and their lines) that ended before $1, at most $2 of them, oldest first;
# answers how many went. A row is left while any journal_log row not yet projected is older
# than its last write: projecting that row could write the reservation back (as it was then)
# after it was deleted. The ids go as arrays (`= ANY`), so both deletes look them up in the
# primary keys whatever the planner's statistics say (with none on reservation_lines it
# chose a scan of the whole table for a join: 260 ms instead of 28 ms per 2,000 at 300,000).
PRUNE_RESERVATIONS_STATEMENT = (
    "WITH doomed AS ("
    " DELETE FROM reservations WHERE reservation_id = ANY (ARRAY("
    "  SELECT reservation_id FROM reservations"
    "   WHERE status <> 'active' AND updated_at_ms < $1"
    "     AND stamp < (SELECT coalesce(min(stamp), 9223372036854775807) FROM journal_log)"
    "   ORDER BY updated_at_ms LIMIT $2))"
    " RETURNING reservation_id),"
    " lines AS (DELETE FROM reservation_lines"
    "  WHERE reservation_id = ANY (ARRAY(SELECT reservation_id FROM doomed)))"
    " SELECT count(*) FROM doomed")
# Idempotency records created before $1, at most $2, oldest first, in the same way: the slice
# comes from the index on created_at_ms (without the order, the planner with no statistics
# read the table from its start for each slice).
PRUNE_IDEMPOTENCY_STATEMENT = (
    "DELETE FROM idempotency WHERE request_id = ANY (ARRAY("
    " SELECT request_id FROM idempotency WHERE created_at_ms < $1"
    " ORDER BY created_at_ms LIMIT $2))")

# One journal table: (SQL table, columns with their SQL types, key columns, columns a newer
# row overwrites). Tables and column order are the engine's (`PG_TABLES`,
# core_rs/src/pg_columns.rs): a journal batch arrives as one PostgreSQL array literal per column
# (`JournalBatch.columns`). A table without key columns (the ledger) is append-only.
BatchTable = tuple[str, tuple[tuple[str, str], ...], tuple[str, ...], tuple[str, ...]]
BATCH_TABLES: tuple[BatchTable, ...] = (
    ("items",
     (("sku", "text"), ("location", "text"), ("on_hand", "bigint"), ("reserved", "bigint"),
      ("safety_stock", "bigint")),
     ("location", "sku"), ("on_hand", "reserved", "safety_stock")),
    ("reservations",
     (("reservation_id", "text"), ("order_id", "text"), ("status", "text"),
      ("expires_at_ms", "bigint"), ("created_at_ms", "bigint"), ("updated_at_ms", "bigint"),
      ("request_id", "text")),
     ("reservation_id",), ("status", "expires_at_ms", "updated_at_ms")),
    # line_number is kept from the first write.
    ("reservation_lines",
     (("reservation_id", "text"), ("sku", "text"), ("location", "text"),
      ("quantity", "bigint"), ("quantity_committed", "bigint"), ("line_number", "integer")),
     ("reservation_id", "sku", "location"), ("quantity", "quantity_committed")),
    # A request id seen again after the engine evicted its record was a new request to the
    # engine; its newer record replaces the old one.
    ("idempotency",
     (("request_id", "text"), ("fingerprint", "bigint"), ("operation", "text"),
      ("outcome_json", "text"), ("lsn", "bigint"), ("created_at_ms", "bigint")),
     ("request_id",), ("fingerprint", "operation", "outcome_json", "lsn", "created_at_ms")),
    ("ledger",
     (("lsn", "bigint"), ("at_ms", "bigint"), ("sku", "text"), ("location", "text"),
      ("kind", "text"), ("delta_on_hand", "bigint"), ("delta_reserved", "bigint"),
      ("on_hand_after", "bigint"), ("reserved_after", "bigint"), ("delta_safety", "bigint"),
      ("safety_after", "bigint"), ("reservation_id", "text"),
      ("order_id", "text"), ("request_id", "text"), ("reason", "text"), ("actor", "text")),
     (), ()),
)
assert [(table, [name for name, _ in columns]) for table, columns, _, _ in BATCH_TABLES] == [
    (table, list(columns)) for table, columns in PG_TABLES], "SQL columns differ from the engine's"
# A row's `stamp` is the batch that wrote it: the engine generation's epoch (a PostgreSQL
# sequence value, taken at every load) in the high bits, the batch's last LSN in the low ones.
# Stamps only grow, across batches and restarts alike. A ledger row's stamp has its own
# operation's LSN in the low bits: (stamp, id) is the order in which an item changed.
STAMP_LSN_BITS = 40
STAMP_LSN_MAX = (1 << STAMP_LSN_BITS) - 1


# The order in which the batch statement writes its tables, the same for every batch (so
# that two never wait for each other in a cycle). Items come last: an item row is the one row
# that batches share (the hot item of a flash sale is in nearly every batch), and the lock a
# statement takes on it lasts until its transaction commits, so writing it last shortens
# that wait to the items' own part of the statement plus the commit. Projecting a large
# journal_log row, with items first, held the hot item's lock for the whole projection
# (100-400 ms), and every call on that item waited for it (docs/BENCHMARKS.md, "Projection
# after mixed traffic"). `ON CONFLICT DO UPDATE ... WHERE` locks the row even when its WHERE
# refuses the update, as it does for a projected row older than the table's.
WRITE_ORDER = ("reservations", "reservation_lines", "idempotency", "ledger", "items")


def log_column(table: str, column: str) -> str:
    """The journal_log column holding one table column of a logged batch."""
    return f"{table}__{column}"


def order_key(name: str, sql_type: str) -> str:
    """One key column of the batch statement's sort: text keys byte by byte (collation "C", as
    their columns since migration 0005), which is also their indexes' order."""
    return f't.{name} COLLATE "C"' if sql_type == "text" else f"t.{name}"


def batch_statement(tables: tuple[BatchTable, ...] = BATCH_TABLES, *,
                    from_log: bool = False) -> str:
    """The whole batch as ONE statement: one data-modifying CTE per table, each a multi-row
    INSERT from unnest()ed arrays. One statement is one round trip and is atomic on its own,
    so a batch costs a single await on a busy loop.

    Each array comes as text and is parsed by PostgreSQL (`$n::text::bigint[]`): the driver
    then sends one string per column, whatever the batch size (measured: converting rows to
    Python objects and encoding arrays element by element was most of the write path's CPU).
    `from_log`: the arrays and the stamp come from the oldest row of journal_log instead,
    which the same statement deletes (projection: see `Persistence.project_next`); it answers
    that row's stamp and operation count (NULL when the log was empty) and the items it wrote.

    Several batches may be written at once on different connections (STOCK_DATABASE_WRITERS),
    and a later batch may commit first (or be projected from the log after a later batch was
    written directly). So a keyed row is only overwritten by a row of a later batch
    (`WHERE t.stamp <= EXCLUDED.stamp`: the final value wins whatever the commit order), and
    two batches never wait for each other in a cycle: every batch locks its rows table by
    table in the same order (`WRITE_ORDER`; each CTE starts after the previous one finished:
    its one-time filter counts the previous CTE's rows) and key by key within a table."""
    first_parameter, number = {}, 0
    for table, table_columns, _, _ in tables:
        first_parameter[table] = number
        number += len(table_columns)
    parts, previous = [], None
    if from_log:
        parts.append("entry AS (DELETE FROM journal_log"
                     " WHERE stamp = (SELECT min(stamp) FROM journal_log) RETURNING *)")
        stamp = "(SELECT stamp FROM entry)"
    else:
        stamp = f"${number + 1}::bigint"  # after every column's array
    for table, table_columns, key, updates in sorted(
            tables, key=lambda entry: WRITE_ORDER.index(entry[0])):
        arrays, number = [], first_parameter[table]
        for name, sql_type in table_columns:
            number += 1
            arrays.append(f"(SELECT {log_column(table, name)} FROM entry)::{sql_type}[]"
                          if from_log else f"${number}::text::{sql_type}[]")
        names = [name for name, _ in table_columns]
        types = dict(table_columns)
        after = f" WHERE (SELECT count(*) FROM write_{previous}) >= 0" if previous else ""
        source = f"unnest({', '.join(arrays)}) AS t({', '.join(names)})"
        if key:
            sets = ", ".join(f"{name} = EXCLUDED.{name}" for name in (*updates, "stamp"))
            parts.append(
                f"write_{table} AS (INSERT INTO {table} ({', '.join(names)}, stamp)"
                f" SELECT t.*, {stamp} FROM {source}{after}"
                f" ORDER BY {', '.join(order_key(name, types[name]) for name in key)}"
                f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"
                f" WHERE {table}.stamp <= EXCLUDED.stamp RETURNING {', '.join(key)})")
        else:  # the ledger: each row stamped with its own operation's LSN (and returned,
            # so that the next table's filter can count them)
            parts.append(f"write_{table} AS (INSERT INTO {table} ({', '.join(names)}, stamp)"
                         f" SELECT t.*, ({stamp} & {~STAMP_LSN_MAX}) | t.lsn"
                         f" FROM {source}{after} RETURNING lsn)")
        previous = table
    answer = ("SELECT (SELECT stamp FROM entry), (SELECT operations FROM entry),"
              " array(SELECT sku FROM write_items), array(SELECT location FROM write_items)"
              if from_log else "SELECT 1")
    return "WITH " + ",\n     ".join(parts) + "\n" + answer


def log_append_statement(tables: tuple[BatchTable, ...] = BATCH_TABLES) -> str:
    """One batch as one journal_log row: its stamp, first LSN, operation count, then one
    array literal per table column (`JournalBatch.columns` order)."""
    names = [log_column(table, name) for table, columns, _, _ in tables for name, _ in columns]
    values = ", ".join(f"${number}" for number in range(1, len(names) + 4))
    return (f"INSERT INTO journal_log (stamp, lsn_first, operations, {', '.join(names)})"
            f" VALUES ({values})")


BATCH_STATEMENT = batch_statement()
PROJECT_STATEMENT = batch_statement(from_log=True)
LOG_APPEND_STATEMENT = log_append_statement()
# Whether a journal_log row holds a change of reservation $1 (every change of a reservation
# writes its reservations row, so its id is then in that row's reservation_id column). $2 is
# the id when it has no quote or backslash, and then appears verbatim in the column's array
# literal: a substring test that skips parsing the rows that cannot hold it. An id with such a
# character (never a service-made one) is looked for by parsing every row.
_LOGGED_IDS = log_column("reservations", "reservation_id")
LOG_HOLDS_RESERVATION_STATEMENT = (
    "SELECT EXISTS (SELECT 1 FROM journal_log WHERE CASE"
    f" WHEN $2::text IS NULL OR strpos({_LOGGED_IDS}, $2) > 0"
    f" THEN $1 = ANY ({_LOGGED_IDS}::text[]) ELSE false END)")


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
class Projected:
    """One journal_log row projected into the tables."""

    stamp: int
    operations: int
    items: list[tuple[str, str]]  # (sku, location) of the item rows it wrote


@dataclass(frozen=True)
class LoadedState:
    """What recovery hands to `Engine.load`, in its argument shapes."""

    items: list[tuple[str, str, int, int, int]]  # sku, location, on_hand, reserved, safety_stock
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
    def __init__(self, database_url: str, *, pool_size: int, timeout_ms: int, writers: int = 1):
        assert writers >= 1, "at least one writer connection"
        self._database_url = database_url
        self._pool_size = pool_size
        self._timeout_s = timeout_ms / 1000
        self._pool: asyncpg.Pool | None = None
        # Writer connections, then one more: the projector's (`PROJECTOR`).
        self._writers: list[asyncpg.Connection | None] = [None] * (writers + 1)
        self._projector = writers
        self._projection_lock = asyncio.Lock()  # one projection at a time, in stamp order
        self._epoch = 0
        # Operations appended to journal_log by this process and not projected yet (0 after
        # every complete projection, which recovery does before each load).
        self.log_operations = 0
        self.log_appended_at = 0.0  # monotonic time of the last append
        # Called with every projected row: the server deletes its items' cache keys again, as
        # a reader that filled its cache from the tables meanwhile saw older levels.
        self.on_projected: Callable[[Projected], None] = lambda projected: None

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
        for index, writer in enumerate(self._writers):
            self._writers[index] = None
            if writer is None:
                continue
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

    async def _writer_connection(self, writer: int) -> asyncpg.Connection:
        """A connection batches are written on, kept out of the pool: a pool hands a
        connection back with a reset query, one more round trip per batch (measured: about a
        third of the committer's time on small batches). Re-made after any failure."""
        connection = self._writers[writer]
        if connection is None or connection.is_closed():
            connection = self._writers[writer] = await asyncpg.connect(
                self._database_url, timeout=self._timeout_s, command_timeout=self._timeout_s,
                ssl=ssl_setting(self._database_url), server_settings=WRITER_SETTINGS)
        return connection

    def _drop_writer(self, writer: int) -> None:
        connection, self._writers[writer] = self._writers[writer], None
        if connection is not None:
            connection.terminate()  # its state is unknown: never reuse it

    async def new_epoch(self) -> int:
        """Starts stamping a new engine generation's batches (call at every engine load)."""
        async with self._acquire() as connection:
            self._epoch = await connection.fetchval("SELECT nextval('engine_epochs')")
        return self._epoch

    def _stamp(self, batch: Any) -> int:
        assert batch.lsn_last <= STAMP_LSN_MAX, "an engine generation ran out of LSNs"
        return (self._epoch << STAMP_LSN_BITS) | batch.lsn_last

    async def _execute(self, writer: int, statement: str, *arguments: Any) -> Any:
        """Runs one statement on connection `writer`; a failed connection is never reused."""
        connection = await self._writer_connection(writer)
        try:
            return await connection.fetchrow(statement, *arguments)
        except BaseException:
            self._drop_writer(writer)
            raise

    async def write_batch(self, batch: Any, writer: int = 0) -> None:
        """Writes one journal batch into the tables in one statement on writer connection
        `writer` (0..writers-1): all of it or, on error, none of it."""
        await self._execute(writer, BATCH_STATEMENT, *batch.columns, self._stamp(batch))

    async def append_log(self, batch: Any, writer: int = 0) -> None:
        """Makes one journal batch durable as one journal_log row (all or nothing), to be
        projected into the tables later (`project_next`). For a large batch this costs
        PostgreSQL a small fraction of `write_batch` (docs/PERSISTENCE.md, "The journal
        log")."""
        operations = batch.lsn_last - batch.lsn_first + 1
        await self._execute(writer, LOG_APPEND_STATEMENT, self._stamp(batch), batch.lsn_first,
                            operations, *batch.columns)
        self.log_operations += operations
        self.log_appended_at = time.monotonic()

    async def project_next(self) -> Projected | None:
        """Projects the oldest journal_log row into the tables and deletes it, in one
        statement; None when the log is empty."""
        async with self._projection_lock:
            row = await self._execute(self._projector, PROJECT_STATEMENT)
        if row[0] is None:
            self.log_operations = 0
            return None
        self.log_operations = max(0, self.log_operations - row[1])
        projected = Projected(stamp=row[0], operations=row[1],
                              items=list(zip(row[2], row[3], strict=True)))
        self.on_projected(projected)
        return projected

    async def project_all(self) -> list[Projected]:
        """Projects the whole journal_log (recovery does this before every load)."""
        projected = []
        while (entry := await self.project_next()) is not None:
            projected.append(entry)
        return projected

    async def load_state(self, idempotency_records_max: int) -> LoadedState:
        """Everything the engine needs after a start or a rebuild, read in one snapshot."""
        async with self._acquire() as connection, connection.transaction(
                isolation="repeatable_read", readonly=True):
            items = await connection.fetch(
                "SELECT sku, location, on_hand, reserved, safety_stock FROM items")
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
        """The reservation as the tables hold it. When the journal log holds a change of it
        (its newest state may be there), the log is projected first; an id the log does not
        hold (an unknown one, or one last changed before the burst) is read at once, so that
        such look-ups neither wait for nor force a projection during a burst."""
        if self.log_operations and await self._log_holds(reservation_id):
            await self.project_all()
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

    async def _log_holds(self, reservation_id: str) -> bool:
        verbatim = None if '"' in reservation_id or "\\" in reservation_id else reservation_id
        async with self._acquire() as connection:
            return await connection.fetchval(LOG_HOLDS_RESERVATION_STATEMENT, reservation_id,
                                             verbatim)

    async def prune_idempotency(self, created_before_ms: int, limit: int) -> int:
        """Deletes up to `limit` records created before the cut-off, oldest first; returns how
        many went."""
        async with self._acquire() as connection:
            status = await connection.execute(PRUNE_IDEMPOTENCY_STATEMENT, created_before_ms,
                                              limit)
        return int(status.split()[-1])

    async def prune_reservations(self, ended_before_ms: int, limit: int) -> int:
        """Deletes up to `limit` reservations that ended (committed, released, expired)
        before the cut-off, oldest first, with their lines; returns how many went. Active
        ones are never touched, whatever their age."""
        async with self._acquire() as connection:
            return await connection.fetchval(PRUNE_RESERVATIONS_STATEMENT, ended_before_ms,
                                             limit)


# How often `wait_projected` looks at the journal log.
PROJECTED_POLL_S = 0.02


async def wait_projected(connection: Any, timeout_s: float) -> float:
    """For readers of the tables (tests, benchmarks, the Locust check): waits until the
    service has projected every journal_log row, and answers how long that took. A database
    without the journal log (not migrated) has nothing to wait for. `connection`: an asyncpg
    connection or pool. Raises TimeoutError after `timeout_s`."""
    started = time.monotonic()
    if not await connection.fetchval("SELECT to_regclass('journal_log') IS NOT NULL"):
        return 0.0
    while await connection.fetchval("SELECT EXISTS (SELECT 1 FROM journal_log)"):
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"journal_log not projected within {timeout_s} s")
        await asyncio.sleep(PROJECTED_POLL_S)
    return time.monotonic() - started


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
