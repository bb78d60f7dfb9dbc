"""The Locust run's database check (loadtest/db_check.py) and the invariants it feeds
(RunState.check_database), against a real PostgreSQL database holding a small written history.
The check reads the same audit statement as `stockctl reconcile`
(service/audit.py ITEM_AUDIT_STATEMENT); each test breaks one thing and expects the
check to name it, so the checks can fail."""

from __future__ import annotations

import asyncpg
import pytest
from ops.conftest import LEDGER_INSERT

from loadtest import db_check, processes
from loadtest.run_state import RunState
from service.persistence import apply_migrations

AT_MS = 1_700_000_000_000
FAR_FUTURE_MS = 4_000_000_000_000  # r2 never expires during the test
# lt-A: counted at 10, 2 committed, 3 received, 4 held by an active hold, 1 kept back.
# other-B: outside the run's prefix, and inconsistent (no ledger rows): never looked at.
HISTORY = [
    (1, AT_MS, "lt-A", "", "set", 10, 0, 10, 0, "", "", "q1", "count", "op", 0, 0),
    (2, AT_MS + 1, "lt-A", "", "reserve", 0, 2, 10, 2, "r1", "lt-o1", "q2", "", "", 0, 0),
    (3, AT_MS + 2, "lt-A", "", "commit", -2, -2, 8, 0, "r1", "lt-o1", "q3", "", "", 0, 0),
    (4, AT_MS + 3, "lt-A", "", "adjust", 3, 0, 11, 0, "", "", "q4", "goods in", "op", 0, 0),
    (5, AT_MS + 4, "lt-A", "", "reserve", 0, 4, 11, 4, "r2", "lt-o2", "q5", "", "", 0, 0),
    (6, AT_MS + 5, "lt-A", "", "safety", 0, 0, 11, 4, "", "", "q6", "buffer", "op", 1, 1),
]


@pytest.fixture
async def history():
    """A database with the history above; yields (url, connection)."""
    with processes.fresh_database("db_check") as url:
        connection = await asyncpg.connect(url)
        try:
            await apply_migrations(connection)
            await connection.execute(
                "INSERT INTO items (sku, location, on_hand, reserved, safety_stock)"
                " VALUES ('lt-A', '', 11, 4, 1), ('other-B', '', 7, 0, 0)")
            await connection.execute(
                "INSERT INTO reservations VALUES ('r1', 'lt-o1', 'committed', $1, $1, $1, 'q3'),"
                " ('r2', 'lt-o2', 'active', $2, $1, $1, 'q5')", AT_MS, FAR_FUTURE_MS)
            await connection.execute(
                "INSERT INTO reservation_lines VALUES ('r1', 'lt-A', '', 2, 0),"
                " ('r2', 'lt-A', '', 4, 0)")
            await connection.executemany(LEDGER_INSERT, HISTORY)
            yield url, connection
        finally:
            await connection.close()


async def violations(url: str) -> list[str]:
    found = await db_check.read(url, "lt-", "lt-", overdue_allowance_ms=0)
    state = RunState(sku_prefix="lt-", order_prefix="lt-", initial={"lt-A": 10})
    state.received["lt-A"] = 3
    state.committed["lt-A"] = 2
    state.check_database(found)
    return state.violations


async def test_a_consistent_history_passes_and_other_prefixes_are_left_out(history):
    url, _ = history
    found = await db_check.read(url, "lt-", "lt-", overdue_allowance_ms=0)
    assert list(found["items"]) == ["lt-A"]
    row = found["items"]["lt-A"]
    assert (row["ledger_set"], row["ledger_received"], row["ledger_committed"], row["held"],
            row["ledger_safety_stock"]) == (10, 3, 2, 4, 1)
    assert await violations(url) == []


async def test_a_counter_the_ledger_does_not_explain_is_named(history):
    url, connection = history
    await connection.execute("UPDATE items SET safety_stock = 2 WHERE sku = 'lt-A'")
    assert [v for v in await violations(url) if "!= ledger sums" in v] == [
        "database lt-A: counters on_hand/reserved/safety_stock 11/4/2 != ledger sums 11/4/1"]


async def test_reserved_units_no_active_hold_explains_are_named(history):
    url, connection = history
    await connection.execute("UPDATE reservations SET status = 'released' WHERE reservation_id"
                             " = 'r2'")
    assert await violations(url) == [
        "database lt-A: reserved 4 != units of active holds 0"]


async def test_ledger_rows_without_their_item_row_are_named(history):
    url, connection = history
    await connection.execute("DELETE FROM items WHERE sku = 'lt-A'")
    assert await violations(url) == ["database lt-A: ledger rows or holds but no item row"]


async def test_units_the_run_did_not_send_are_named(history):
    url, connection = history
    await connection.execute(LEDGER_INSERT, 7, AT_MS + 6, "lt-A", "", "adjust", 5, 0, 16, 4,
                             "", "", "q7", "stray", "op", 0, 1)
    await connection.execute("UPDATE items SET on_hand = 16 WHERE sku = 'lt-A'")
    assert await violations(url) == [
        "database lt-A: ledger adjust rows = units received fails (8 != 3)",
        "database lt-A: on_hand + committed = initial + received fails (18 != 13)"]
