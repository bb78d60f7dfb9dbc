"""stockctl as an operator runs it: a subprocess (`python -m service.cli`). The gRPC commands
talk to a recording stand-in server (what is sent, what is printed); the PostgreSQL commands
read a fresh database migrated with the service's own migrations. The end-to-end path against
the real service is in test_service_ops.py."""

from __future__ import annotations

import json

import asyncpg
import grpc
import pytest
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from service.cli import LEDGER_LIMIT_MAX
from service.engine import PG_TABLES
from service.gen.stock.v1 import stock_pb2, stock_pb2_grpc
from service.persistence import LOG_APPEND_STATEMENT, apply_migrations

from .conftest import (
    ADMIN_TOKEN,
    LEDGER_INSERT,
    SHARED_REDIS_URL,
    free_port,
    requires_service,
    run_cli,
)

TOKEN = "cli-test-token"


# ---- gRPC commands against a recording stand-in ----------------------------------------------


class RecordingServicer(stock_pb2_grpc.StockServiceServicer):
    """Answers like the service would and remembers each request with its metadata."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object, dict[str, str]]] = []

    def record(self, name: str, request, context) -> None:
        self.calls.append((name, request, dict(context.invocation_metadata())))

    async def GetStock(self, request, context):
        self.record("GetStock", request, context)
        return stock_pb2.GetStockResponse(levels=[
            stock_pb2.StockLevel(sku=sku, location=request.location, on_hand=10, reserved=3,
                                 available=5, safety_stock=2)
            for sku in request.skus if sku != "UNKNOWN"])

    async def GetReservation(self, request, context):
        self.record("GetReservation", request, context)
        if request.reservation_id != "r1":
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no reservation {request.reservation_id}")
        return stock_pb2.Reservation(
            reservation_id="r1", order_id="o1", status=stock_pb2.RESERVATION_STATUS_COMMITTED,
            lines=[stock_pb2.Line(sku="A", quantity=4), stock_pb2.Line(sku="B", quantity=2,
                                                                     location="WH1")],
            committed_lines=[stock_pb2.Line(sku="A", quantity=3)],
            expires_at=timestamp_pb2.Timestamp(seconds=1_800_000_000))

    async def Adjust(self, request, context):
        self.record("Adjust", request, context)
        return stock_pb2.AdjustResponse(level=stock_pb2.StockLevel(
            sku=request.sku, location=request.location, on_hand=10 + request.delta, reserved=0,
            available=10 + request.delta))

    async def SetStock(self, request, context):
        self.record("SetStock", request, context)
        if request.HasField("expected_on_hand") and request.expected_on_hand != 10:
            await context.abort(grpc.StatusCode.ABORTED, "expected 99, actual 10")
        return stock_pb2.AdjustResponse(level=stock_pb2.StockLevel(
            sku=request.sku, location=request.location, on_hand=request.on_hand, reserved=0,
            available=request.on_hand))

    async def SetSafetyStock(self, request, context):
        self.record("SetSafetyStock", request, context)
        return stock_pb2.AdjustResponse(level=stock_pb2.StockLevel(
            sku=request.sku, location=request.location, on_hand=10, reserved=0,
            available=max(0, 10 - request.safety_stock), safety_stock=request.safety_stock))


@pytest.fixture
async def stand_in():
    servicer = RecordingServicer()
    health_servicer = health.aio.HealthServicer()
    server = grpc.aio.server()
    stock_pb2_grpc.add_StockServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.address = f"127.0.0.1:{port}"
    servicer.health = health_servicer
    yield servicer
    await server.stop(0)


async def test_stock_prints_levels_and_names_unknown_skus(stand_in):
    result = await run_cli("--address", stand_in.address, "stock", "A", "UNKNOWN",
                           "--location", "WH1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0].split() == [
        "SKU", "LOCATION", "ON_HAND", "RESERVED", "SAFETY", "AVAILABLE"]
    assert result.stdout.split("\n")[1].split() == ["A", "WH1", "10", "3", "2", "5"]
    assert "unknown at location 'WH1': UNKNOWN" in result.stdout
    name, request, _ = stand_in.calls[0]
    assert (name, list(request.skus), request.location) == ("GetStock", ["A", "UNKNOWN"], "WH1")


async def test_stock_json_is_machine_readable(stand_in):
    result = await run_cli("stock", "A", "--json", "--address", stand_in.address)
    assert json.loads(result.stdout) == [
        {"sku": "A", "location": "", "on_hand": 10, "reserved": 3, "available": 5,
         "safety_stock": 2}]


async def test_reservation_shows_held_and_committed_per_line(stand_in):
    result = await run_cli("--address", stand_in.address, "--json", "reservation", "r1")
    data = json.loads(result.stdout)
    assert data["status"] == "committed"
    assert data["expires_at"].startswith("2027-01-15T08:00:00")
    text = (await run_cli("--address", stand_in.address, "reservation", "r1")).stdout
    assert ["A", '""', "4", "3"] in [line.split() for line in text.splitlines()]
    assert ["B", "WH1", "2", "0"] in [line.split() for line in text.splitlines()]


async def test_a_grpc_error_exits_3_with_the_status(stand_in):
    result = await run_cli("--address", stand_in.address, "reservation", "nope")
    assert result.returncode == 3
    assert "NOT_FOUND: no reservation nope" in result.stderr


async def test_adjust_sends_token_actor_reason_and_request_id(stand_in):
    result = await run_cli("adjust", "A", "-4", "--reason", "broken in transit",
                           "--address", stand_in.address, "--token", TOKEN, "--actor", "alice",
                           "--request-id", "adj-1", "--location", "WH1")
    assert result.returncode == 0, result.stderr
    name, request, sent = stand_in.calls[0]
    assert name == "Adjust"
    assert (request.sku, request.location, request.delta, request.reason, request.request_id) == (
        "A", "WH1", -4, "broken in transit", "adj-1")
    assert sent["authorization"] == f"Bearer {TOKEN}"
    assert sent["x-stock-actor"] == "alice"
    assert "request adj-1" in result.stdout and " 6 " in result.stdout


async def test_adjust_makes_a_fresh_request_id_each_time(stand_in):
    for _ in range(2):
        await run_cli("--address", stand_in.address, "--token", TOKEN, "adjust", "A", "1",
                      "--reason", "found")
    ids = [request.request_id for _, request, _ in stand_in.calls]
    assert len(set(ids)) == 2 and all(i.startswith("stockctl-") for i in ids)


async def test_adjust_without_token_is_refused_before_any_call(stand_in):
    env = {"PATH": "/usr/bin:/bin"}  # no STOCK_ADMIN_TOKEN inherited
    result = await run_cli("--address", stand_in.address, "adjust", "A", "1", "--reason", "x",
                           env=env)
    assert result.returncode == 3 and "admin token is required" in result.stderr
    assert stand_in.calls == []


async def test_adjust_requires_a_reason(stand_in):
    result = await run_cli("--address", stand_in.address, "--token", TOKEN, "adjust", "A", "1")
    assert result.returncode == 2 and "--reason" in result.stderr


async def test_set_sends_expected_on_hand_only_when_given(stand_in):
    base = ("--address", stand_in.address, "--token", TOKEN, "set", "A", "12", "--reason", "count")
    assert (await run_cli(*base)).returncode == 0
    refused = await run_cli(*base, "--expected", "99")
    assert refused.returncode == 3 and "ABORTED" in refused.stderr
    first, second = (request for _, request, _ in stand_in.calls)
    assert not first.HasField("expected_on_hand")
    assert second.expected_on_hand == 99 and second.on_hand == 12


async def test_safety_sends_the_safety_stock_with_token_reason_and_request_id(stand_in):
    result = await run_cli("--address", stand_in.address, "--token", TOKEN, "--json", "safety",
                           "A", "4", "--reason", "miscounts", "--request-id", "safe-1",
                           "--location", "WH1")
    assert result.returncode == 0, result.stderr
    name, request, sent = stand_in.calls[0]
    assert name == "SetSafetyStock"
    assert (request.sku, request.location, request.safety_stock, request.reason,
            request.request_id) == ("A", "WH1", 4, "miscounts", "safe-1")
    assert sent["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(result.stdout) == {"request_id": "safe-1", "level": {
        "sku": "A", "location": "WH1", "on_hand": 10, "reserved": 0, "available": 6,
        "safety_stock": 4}}
    unauthorized = await run_cli("--address", stand_in.address, "safety", "A", "1", "--reason",
                                 "x", env={"PATH": "/usr/bin:/bin"})
    assert unauthorized.returncode == 3 and len(stand_in.calls) == 1


async def test_health_exit_code_follows_serving(stand_in):
    assert (await run_cli("--address", stand_in.address, "health")).returncode == 0
    await stand_in.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    result = await run_cli("--address", stand_in.address, "--json", "health")
    assert result.returncode == 1
    assert json.loads(result.stdout)["status"] == "NOT_SERVING"


async def test_unreachable_service_suggests_retrying_with_the_same_request_id():
    address = f"127.0.0.1:{free_port()}"
    result = await run_cli("--address", address, "--token", TOKEN, "--timeout", "1", "adjust",
                           "A", "1", "--reason", "x", "--request-id", "retry-me")
    assert result.returncode == 3
    assert "UNAVAILABLE" in result.stderr and "--request-id retry-me" in result.stderr


# ---- PostgreSQL commands ----------------------------------------------------------------------


AT_MS = 1_700_000_000_000


@pytest.fixture
async def ledger_database(shared_database):
    """A consistent little history: A received 10 and 3 of them held by r1; B counted at 5,
    2 of them kept back as safety stock."""
    connection = await asyncpg.connect(shared_database)
    await apply_migrations(connection)
    await connection.execute(
        "INSERT INTO items (sku, location, on_hand, reserved, safety_stock)"
        " VALUES ('A', '', 10, 3, 0), ('B', 'WH1', 5, 0, 2)")
    await connection.execute(
        "INSERT INTO reservations VALUES ('r1', 'o1', 'active', $1, $1, $1, 'q1')", AT_MS)
    await connection.execute("INSERT INTO reservation_lines VALUES ('r1', 'A', '', 3, 0)")
    rows = [
        (1, AT_MS, "A", "", "adjust", 10, 0, 10, 0, "", "", "q0", "goods in", "alice", 0, 0),
        (2, AT_MS + 1, "A", "", "reserve", 0, 3, 10, 3, "r1", "o1", "q1", "", "", 0, 0),
        (3, AT_MS + 2, "B", "WH1", "set", 5, 0, 5, 0, "", "", "q2", "count", "bob", 0, 0),
        (4, AT_MS + 3, "B", "WH1", "safety", 0, 0, 5, 0, "", "", "q3", "buffer", "bob", 2, 2),
    ]
    await connection.executemany(LEDGER_INSERT, rows)
    yield shared_database, connection
    await connection.close()


async def reconcile(database_url: str) -> tuple[int, dict]:
    result = await run_cli("--database-url", database_url, "--json", "reconcile")
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


async def test_ledger_tells_the_story_of_an_item_oldest_first(ledger_database):
    database_url, _ = ledger_database
    result = await run_cli("--database-url", database_url, "ledger", "A")
    assert result.returncode == 0, result.stderr
    assert "on_hand 10 reserved 3" in result.stdout
    kinds = [line.split()[2] for line in result.stdout.splitlines()[3:]]
    assert kinds == ["adjust", "reserve"]
    assert "goods in" in result.stdout and "alice" in result.stdout


async def test_ledger_limit_keeps_the_newest_and_location_selects_the_item(ledger_database):
    database_url, _ = ledger_database
    newest = json.loads((await run_cli("--database-url", database_url, "--json", "ledger", "A",
                                       "--limit", "1")).stdout)
    assert [entry["kind"] for entry in newest["entries"]] == ["reserve"]
    other = json.loads((await run_cli("--database-url", database_url, "--json", "ledger", "B",
                                      "--location", "WH1")).stdout)
    assert other["item"] == {"on_hand": 5, "reserved": 0, "safety_stock": 2}
    assert [(entry["kind"], entry["delta_safety"], entry["safety_after"])
            for entry in other["entries"]] == [("set", 0, 0), ("safety", 2, 2)]
    too_many = await run_cli("--database-url", database_url, "ledger", "A",
                             "--limit", str(LEDGER_LIMIT_MAX + 1))
    assert too_many.returncode == 2


async def test_reconcile_of_a_consistent_database_is_clean(ledger_database):
    database_url, _ = ledger_database
    code, report = await reconcile(database_url)
    assert (code, report["differences"], report["items_checked"]) == (0, 0, 2)
    text = await run_cli("--database-url", database_url, "reconcile")
    assert "2 items checked, 0 difference(s)" in text.stdout


async def test_reconcile_finds_a_counter_the_ledger_does_not_explain(ledger_database):
    database_url, connection = ledger_database
    await connection.execute("UPDATE items SET on_hand = 11 WHERE sku = 'A'")
    code, report = await reconcile(database_url)
    assert code == 1
    assert report["counters_vs_ledger"] == [{
        "sku": "A", "location": "", "on_hand": 11, "reserved": 3, "safety_stock": 0,
        "ledger_on_hand": 10, "ledger_reserved": 3, "ledger_safety_stock": 0}]
    assert report["reserved_vs_active_holds"] == [] and report["ledger_chain_breaks"] == []
    text = await run_cli("--database-url", database_url, "reconcile")
    assert text.returncode == 1 and "counters_vs_ledger: 1" in text.stdout


async def test_reconcile_finds_reserved_that_no_active_hold_explains(ledger_database):
    database_url, connection = ledger_database
    await connection.execute(
        "UPDATE reservations SET status = 'released' WHERE reservation_id = 'r1'")
    code, report = await reconcile(database_url)
    assert code == 1
    assert report["reserved_vs_active_holds"] == [
        {"sku": "A", "location": "", "reserved": 3, "held": 0}]


async def test_reconcile_finds_a_hold_on_an_item_that_does_not_exist(ledger_database):
    database_url, connection = ledger_database
    await connection.execute(
        "INSERT INTO reservations VALUES ('r2', 'o2', 'active', $1, $1, $1, NULL)", AT_MS)
    await connection.execute("INSERT INTO reservation_lines VALUES ('r2', 'GHOST', '', 1, 0)")
    code, report = await reconcile(database_url)
    assert code == 1
    assert report["reserved_vs_active_holds"] == [
        {"sku": "GHOST", "location": "", "reserved": None, "held": 1}]


async def test_reconcile_finds_ledger_rows_whose_item_row_is_gone(ledger_database):
    database_url, connection = ledger_database
    await connection.execute("DELETE FROM items WHERE sku = 'B'")
    code, report = await reconcile(database_url)
    assert code == 1
    assert report["counters_vs_ledger"] == [{
        "sku": "B", "location": "WH1", "on_hand": None, "reserved": None, "safety_stock": None,
        "ledger_on_hand": 5, "ledger_reserved": 0, "ledger_safety_stock": 2}]
    # No hold names B: nothing to say about its reserved units.
    assert report["reserved_vs_active_holds"] == []


async def test_reconcile_finds_a_gap_in_the_ledger_chain(ledger_database):
    database_url, connection = ledger_database
    # +1 but the level jumps from 5 to 7: one change is missing from the ledger.
    await connection.execute(LEDGER_INSERT, 5, AT_MS + 4, "B", "WH1", "adjust", 1, 0, 7, 0,
                             "", "", "q4", "found", "bob", 0, 2)
    await connection.execute("UPDATE items SET on_hand = 7 WHERE sku = 'B'")
    code, report = await reconcile(database_url)
    assert code == 1
    breaks = report["ledger_chain_breaks"]
    assert [(b["sku"], b["previous_on_hand"], b["on_hand_after"]) for b in breaks] == [
        ("B", 5, 7)]
    assert [row["sku"] for row in report["counters_vs_ledger"]] == ["B"]


async def test_reconcile_finds_a_safety_stock_the_ledger_does_not_explain(ledger_database):
    database_url, connection = ledger_database
    await connection.execute("UPDATE items SET safety_stock = 3 WHERE sku = 'B'")
    code, report = await reconcile(database_url)
    assert code == 1
    assert [(row["sku"], row["safety_stock"], row["ledger_safety_stock"])
            for row in report["counters_vs_ledger"]] == [("B", 3, 2)]
    assert report["ledger_chain_breaks"] == []
    # A change of the safety stock whose row does not continue from the one before it: the
    # sums agree again (2 + 1), the chain does not (2 + 1 is not 4).
    await connection.execute(LEDGER_INSERT, 5, AT_MS + 4, "B", "WH1", "safety", 0, 0, 5, 0,
                             "", "", "q4", "buffer", "bob", 1, 4)
    code, report = await reconcile(database_url)
    assert code == 1 and report["counters_vs_ledger"] == []
    assert [(b["sku"], b["previous_safety"], b["delta_safety"], b["safety_after"])
            for b in report["ledger_chain_breaks"]] == [("B", 2, 1, 4)]


async def test_reconcile_and_ledger_report_operations_not_yet_projected(ledger_database):
    database_url, connection = ledger_database
    code, report = await reconcile(database_url)
    assert (code, report["journal_log_operations"]) == (0, 0)
    columns = sum(len(columns) for _, columns in PG_TABLES)
    await connection.execute(LOG_APPEND_STATEMENT, 1, 1, 5, *["{}"] * columns)
    code, report = await reconcile(database_url)
    assert (code, report["journal_log_operations"]) == (0, 5)
    result = await run_cli("--database-url", database_url, "reconcile")
    assert "5 operations are durable in the journal log" in result.stdout
    result = await run_cli("--database-url", database_url, "ledger", "A")
    assert result.returncode == 0, result.stderr
    assert "5 operations are durable in the journal log" in result.stdout


async def test_database_commands_need_a_database():
    result = await run_cli("--database-url", "", "reconcile", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 3 and "database is required" in result.stderr


async def test_an_unreachable_database_exits_3():
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    result = await run_cli("--database-url", url, "--timeout", "2", "reconcile")
    assert result.returncode == 3 and "database:" in result.stderr


# ---- end to end against the real service ------------------------------------------------------


@requires_service
async def test_operator_session_against_the_real_service(
    shared_database, redis_prefix, service_factory
):
    service = service_factory(database_url=shared_database, redis_url=SHARED_REDIS_URL,
                              redis_prefix=redis_prefix)
    await service.start()
    common = ("--address", service.address, "--token", ADMIN_TOKEN, "--actor", "carol",
              "--database-url", shared_database)
    assert (await run_cli(*common, "health")).returncode == 0
    counted = await run_cli(*common, "set", "E2E", "100", "--expected", "0", "--reason", "count")
    assert counted.returncode == 0, counted.stderr
    written_off = await run_cli(*common, "--json", "adjust", "E2E", "-5", "--reason", "damaged")
    assert json.loads(written_off.stdout)["level"]["on_hand"] == 95
    stock = json.loads((await run_cli(*common, "--json", "stock", "E2E")).stdout)
    assert stock == [{"sku": "E2E", "location": "", "on_hand": 95, "reserved": 0,
                      "available": 95, "safety_stock": 0}]
    kept = await run_cli(*common, "--json", "safety", "E2E", "10", "--reason", "buffer")
    assert kept.returncode == 0, kept.stderr
    assert json.loads(kept.stdout)["level"]["available"] == 85
    wrong_count = await run_cli(*common, "set", "E2E", "90", "--expected", "100",
                                "--reason", "recount")
    assert wrong_count.returncode == 3 and "ABORTED" in wrong_count.stderr

    ledger = json.loads((await run_cli(*common, "--json", "ledger", "E2E")).stdout)
    assert [(e["kind"], e["delta_on_hand"], e["on_hand_after"], e["reason"], e["actor"])
            for e in ledger["entries"]] == [("set", 100, 100, "count", "carol"),
                                            ("adjust", -5, 95, "damaged", "carol"),
                                            ("safety", 0, 95, "buffer", "carol")]
    assert ledger["entries"][-1]["delta_safety"] == ledger["entries"][-1]["safety_after"] == 10
    reconciled = await run_cli(*common, "reconcile")
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr


def test_stockctl_runs_without_the_native_engine_module():
    """The operator's tool must start on a host where only Python is installed: importing it
    must not load service._core (service/audit.py holds the SQL it shares for that reason)."""
    import subprocess
    import sys

    probe = ("import sys, service.cli; "
             "sys.exit(1 if any(name.startswith(('service._core', 'service.engine',"
             " 'service.persistence')) for name in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0
