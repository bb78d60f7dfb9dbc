"""`stockctl archive-ledger` (service/ledger_archive.py, migration 0008) against a real
PostgreSQL database: the archived rows land in the file, each item keeps one 'opening' row with
their sums where they were, reconcile still agrees, later rows still chain, and every refusal
leaves the ledger and the file system as they were."""

from __future__ import annotations

import csv
import gzip
import io
import json

import asyncpg
import pytest

from service.engine import PG_TABLES
from service.ledger_archive import ARCHIVE_AGE_MIN_MS
from service.persistence import LOG_APPEND_STATEMENT, apply_migrations

from .conftest import LEDGER_INSERT, run_cli

AT_MS = 1_700_000_000_000
# A: received 10, 3 held by r1, 2 of them committed (day 0, 1, 2), then 4 more in (day 10).
# B: counted at 5, 2 kept back (day 1, 3).
HISTORY = [
    (1, AT_MS, "A", "", "adjust", 10, 0, 10, 0, "", "", "q1", "goods in", "alice", 0, 0),
    (2, AT_MS + 1 * 86_400_000, "A", "", "reserve", 0, 3, 10, 3, "r1", "o1", "q2", "", "", 0, 0),
    (3, AT_MS + 2 * 86_400_000, "A", "", "commit", -2, -2, 8, 1, "r1", "o1", "q3", "", "", 0, 0),
    (4, AT_MS + 10 * 86_400_000, "A", "", "adjust", 4, 0, 12, 1, "", "", "q4", "more", "bob",
     0, 0),
    (5, AT_MS + 1 * 86_400_000, "B", "WH1", "set", 5, 0, 5, 0, "", "", "q5", "count", "bob", 0, 0),
    (6, AT_MS + 3 * 86_400_000, "B", "WH1", "safety", 0, 0, 5, 0, "", "", "q6", "buffer", "bob",
     2, 2),
]
DAY_MS = 86_400_000


@pytest.fixture
async def history(shared_database):
    connection = await asyncpg.connect(shared_database)
    await apply_migrations(connection)
    await connection.execute(
        "INSERT INTO items (sku, location, on_hand, reserved, safety_stock)"
        " VALUES ('A', '', 12, 1, 0), ('B', 'WH1', 5, 0, 2)")
    await connection.execute(
        "INSERT INTO reservations VALUES ('r1', 'o1', 'active', 4000000000000, $1, $1, 'q2')",
        AT_MS)
    await connection.execute("INSERT INTO reservation_lines VALUES ('r1', 'A', '', 1, 0)")
    await connection.executemany(LEDGER_INSERT, HISTORY)
    yield shared_database, connection
    await connection.close()


async def archive_cli(database_url: str, before_ms: int, out, *extra: str):
    result = await run_cli("--database-url", database_url, "--json", "--actor", "carol",
                           "archive-ledger", "--before", str(before_ms), "--out", str(out),
                           "--reason", "yearly archive", *extra)
    return result.returncode, (json.loads(result.stdout) if result.stdout else None), result


async def ledger_rows(connection) -> list[tuple]:
    return [tuple(row) for row in await connection.fetch(
        "SELECT sku, kind, delta_on_hand, delta_reserved, delta_safety, on_hand_after,"
        " reserved_after, safety_after, reason, actor FROM ledger ORDER BY location, sku,"
        " stamp, id")]


async def reconcile_code(database_url: str) -> int:
    result = await run_cli("--database-url", database_url, "reconcile")
    assert result.returncode in (0, 1), result.stderr
    return result.returncode


def read_archive(path) -> list[dict]:
    raw = path.read_bytes()
    text = gzip.decompress(raw).decode() if path.name.endswith(".gz") else raw.decode()
    return list(csv.DictReader(io.StringIO(text)))


async def test_archived_rows_go_to_the_file_and_each_item_keeps_an_opening_row(history,
                                                                               tmp_path):
    database_url, connection = history
    out = tmp_path / "ledger.csv"
    code, report, result = await archive_cli(database_url, AT_MS + 5 * DAY_MS, out)
    assert code == 0, result.stderr
    assert (report["rows"], report["items"]) == (5, 2)
    archived = read_archive(out)
    assert [(row["sku"], row["kind"]) for row in archived] == [
        ("A", "adjust"), ("A", "reserve"), ("A", "commit"), ("B", "set"), ("B", "safety")]
    assert archived[0]["reason"] == "goods in" and archived[0]["actor"] == "alice"
    assert await ledger_rows(connection) == [
        ("A", "opening", 8, 1, 0, 8, 1, 0, "yearly archive", "carol"),
        ("A", "adjust", 4, 0, 0, 12, 1, 0, "more", "bob"),
        ("B", "opening", 5, 0, 2, 5, 0, 2, "yearly archive", "carol"),
    ]
    assert await reconcile_code(database_url) == 0
    # The opening row sits where the last archived row was: its id, stamp, LSN and time.
    opening = await connection.fetchrow(
        "SELECT id, lsn, at_ms FROM ledger WHERE sku = 'A' AND kind = 'opening'")
    assert (opening["id"], opening["lsn"], opening["at_ms"]) == (3, 3, AT_MS + 2 * DAY_MS)


async def test_a_second_archive_folds_the_opening_row_in_and_later_rows_still_chain(history,
                                                                                    tmp_path):
    database_url, connection = history
    code, _, result = await archive_cli(database_url, AT_MS + 2 * DAY_MS, tmp_path / "1.csv")
    assert code == 0, result.stderr
    # A new change after the first archive continues the chain.
    await connection.execute(LEDGER_INSERT, 7, AT_MS + 20 * DAY_MS, "A", "", "adjust", 1, 0,
                             13, 1, "", "", "q7", "late", "bob", 0, 0)
    await connection.execute("UPDATE items SET on_hand = 13 WHERE sku = 'A'")
    assert await reconcile_code(database_url) == 0
    code, report, result = await archive_cli(database_url, AT_MS + 15 * DAY_MS,
                                             tmp_path / "2.csv.gz")
    assert code == 0, result.stderr
    assert [row["kind"] for row in read_archive(tmp_path / "2.csv.gz")] == [
        "opening", "commit", "adjust", "opening", "safety"]
    assert await ledger_rows(connection) == [
        ("A", "opening", 12, 1, 0, 12, 1, 0, "yearly archive", "carol"),
        ("A", "adjust", 1, 0, 0, 13, 1, 0, "late", "bob"),
        ("B", "opening", 5, 0, 2, 5, 0, 2, "yearly archive", "carol"),
    ]
    assert await reconcile_code(database_url) == 0


async def test_a_dry_run_counts_and_changes_nothing(history, tmp_path):
    database_url, connection = history
    before = await ledger_rows(connection)
    code, report, result = await archive_cli(database_url, AT_MS + 5 * DAY_MS,
                                             tmp_path / "dry.csv", "--dry-run")
    assert code == 0, result.stderr
    assert (report["rows"], report["items"], report["out"], report["dry_run"]) == (
        5, 2, None, True)
    assert not (tmp_path / "dry.csv").exists()
    assert await ledger_rows(connection) == before


async def test_nothing_old_enough_writes_no_file(history, tmp_path):
    database_url, connection = history
    before = await ledger_rows(connection)
    code, report, result = await archive_cli(database_url, AT_MS, tmp_path / "none.csv")
    assert code == 0, result.stderr
    assert (report["rows"], report["out"]) == (0, None)
    assert not (tmp_path / "none.csv").exists()
    assert await ledger_rows(connection) == before


async def test_refusals_change_nothing(history, tmp_path):
    database_url, connection = history
    before = await ledger_rows(connection)

    existing = tmp_path / "existing.csv"
    existing.write_text("keep me")
    code, report, _ = await archive_cli(database_url, AT_MS + 5 * DAY_MS, existing)
    assert (code, report["error"]["code"]) == (3, "REFUSED")
    assert existing.read_text() == "keep me"

    columns = sum(len(columns) for _, columns in PG_TABLES)
    await connection.execute(LOG_APPEND_STATEMENT, 1, 1, 5, *["{}"] * columns)
    code, report, _ = await archive_cli(database_url, AT_MS + 5 * DAY_MS, tmp_path / "log.csv")
    assert (code, report["error"]["code"]) == (3, "REFUSED")
    assert "journal log" in report["error"]["message"]
    assert not (tmp_path / "log.csv").exists()
    await connection.execute("DELETE FROM journal_log")

    # A row that does not continue from the one before it (10 + 5 is not 16).
    await connection.execute(LEDGER_INSERT, 8, AT_MS + 4 * DAY_MS, "B", "WH1", "adjust", 5, 0,
                             16, 0, "", "", "q8", "odd", "bob", 0, 2)
    before = await ledger_rows(connection)
    code, report, _ = await archive_cli(database_url, AT_MS + 5 * DAY_MS, tmp_path / "gap.csv")
    assert (code, report["error"]["code"]) == (3, "REFUSED")
    assert "do not chain" in report["error"]["message"] and "B@WH1" in report["error"]["message"]
    assert not (tmp_path / "gap.csv").exists()
    assert await ledger_rows(connection) == before


async def test_a_recent_cutoff_is_refused(history, tmp_path):
    database_url, connection = history
    before = await ledger_rows(connection)
    result = await run_cli("--database-url", database_url, "archive-ledger", "--before",
                           "2999-01-01T00:00:00Z", "--out", str(tmp_path / "x.csv"),
                           "--reason", "too soon")
    assert result.returncode == 3 and f"{ARCHIVE_AGE_MIN_MS // 3_600_000} h" in result.stderr
    assert not (tmp_path / "x.csv").exists()
    assert await ledger_rows(connection) == before


@pytest.mark.parametrize("argv", [
    ["--before", "yesterday", "--out", "x.csv", "--reason", "r"],
    ["--before", "1", "--out", "x.csv", "--reason", "r" * 257],
    ["--before", "1", "--out", "x.csv", "--reason", " "],
    ["--before", "1", "--out", "x.csv"],
])
async def test_bad_arguments_are_usage_errors(argv):
    result = await run_cli("--database-url", "postgresql://unused/none", "archive-ledger", *argv)
    assert result.returncode == 2, result.stderr


async def test_iso_times_name_the_same_cutoff_as_milliseconds(history, tmp_path):
    database_url, _ = history
    code, report, result = await archive_cli(database_url, "2023-11-14T22:13:20Z",
                                             tmp_path / "iso.csv")
    assert code == 0, result.stderr
    assert report["before_ms"] == AT_MS and report["rows"] == 0


def test_the_cli_bounds_what_it_writes_as_the_engine_does():
    """stockctl cannot import the engine; its copies of the engine's bounds must not drift."""
    from service import cli
    from service.engine import LIMITS

    assert (cli.REASON_BYTES_MAX, cli.ACTOR_BYTES_MAX) == (LIMITS["REASON_BYTES_MAX"],
                                                           LIMITS["ACTOR_BYTES_MAX"])
