"""Client-side helpers for the tests that run the real service: seeding stock, a reservation
load of many concurrent clients that records what was acknowledged, and the PostgreSQL
invariants every outage must leave intact."""

from __future__ import annotations

import asyncio
import collections
import random
import time
from dataclasses import dataclass, field

import asyncpg
import grpc

from service.gen.stock.v1 import stock_pb2, stock_pb2_grpc

from .conftest import ADMIN_TOKEN, run_cli

OPERATOR_METADATA = (("authorization", f"Bearer {ADMIN_TOKEN}"), ("x-stock-actor", "ops-test"))
CALL_TIMEOUT_S = 10.0
# Long enough that nothing expires during a test: every acknowledged hold must still be active.
HOLD_TTL_MS = 600_000
LINES_PER_RESERVATION = 2
QUANTITY_PER_LINE_MAX = 3
# After UNAVAILABLE a client pauses before its next call, like a polite real client.
UNAVAILABLE_PAUSE_S = 0.05

Line = tuple[str, str, int]  # (sku, location, quantity)


def stub_for(channel: grpc.aio.Channel) -> stock_pb2_grpc.StockServiceStub:
    return stock_pb2_grpc.StockServiceStub(channel)


async def seed(stub, skus: list[str], on_hand: int, location: str = "") -> None:
    for sku in skus:
        await stub.SetStock(
            stock_pb2.SetStockRequest(request_id=f"seed-{location}-{sku}", sku=sku,
                                      location=location, on_hand=on_hand, reason="test seed"),
            metadata=OPERATOR_METADATA, timeout=CALL_TIMEOUT_S)


def reserve_request(request_id: str, lines: list[Line]) -> stock_pb2.ReserveRequest:
    return stock_pb2.ReserveRequest(
        request_id=request_id, order_id=f"order-{request_id}", ttl_ms=HOLD_TTL_MS,
        lines=[stock_pb2.Line(sku=sku, location=location, quantity=quantity)
               for sku, location, quantity in lines])


def lines_of(reservation: stock_pb2.Reservation) -> list[Line]:
    return sorted((line.sku, line.location, line.quantity) for line in reservation.lines)


@dataclass
class Load:
    """Many clients reserving concurrently, each with a fresh request id per reservation;
    with `batch`, each call is a ReserveBatch of that many reservations."""

    stub: stock_pb2_grpc.StockServiceStub
    skus: list[str]
    clients: int
    tag: str
    batch: int = 0
    acked: dict[str, tuple[str, list[Line]]] = field(default_factory=dict)
    unacked: dict[str, list[Line]] = field(default_factory=dict)
    codes: collections.Counter = field(default_factory=collections.Counter)
    # (monotonic time, code name) of every answer, to look at what happened during an outage.
    answers: list[tuple[float, str]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task] = field(default_factory=list)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._client(number)) for number in range(self.clients)]

    async def stop(self) -> None:
        self.stopping.set()
        await asyncio.gather(*self.tasks)

    async def _client(self, number: int) -> None:
        rng = random.Random(f"{self.tag}-{number}")
        sequence = 0
        while not self.stopping.is_set():
            sequence += 1
            request_id = f"{self.tag}-{number}-{sequence}"
            if self.batch:
                requests = [(f"{request_id}-{index}", self._lines(rng))
                            for index in range(self.batch)]
                code = await self._reserve_batch(requests)
            else:
                code = await self._reserve(request_id, self._lines(rng))
            if code == grpc.StatusCode.UNAVAILABLE:
                await asyncio.sleep(UNAVAILABLE_PAUSE_S)

    def _lines(self, rng: random.Random) -> list[Line]:
        return sorted((sku, "", rng.randint(1, QUANTITY_PER_LINE_MAX))
                      for sku in rng.sample(self.skus, LINES_PER_RESERVATION))

    async def _reserve_batch(self, requests: list[tuple[str, list[Line]]]) -> grpc.StatusCode:
        batch = stock_pb2.ReserveBatchRequest(
            requests=[reserve_request(request_id, lines) for request_id, lines in requests])
        try:
            response = await self.stub.ReserveBatch(batch, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            for request_id, lines in requests:
                self.unacked[request_id] = lines
            code = error.code()
        else:
            code = grpc.StatusCode.OK
            for (request_id, lines), result in zip(requests, response.results, strict=True):
                if result.WhichOneof("result") == "reservation":
                    assert lines_of(result.reservation) == lines, "the hold must be asked's"
                    self.acked[request_id] = (result.reservation.reservation_id, lines)
                elif result.error.code != grpc.StatusCode.FAILED_PRECONDITION.value[0]:
                    self.unacked[request_id] = lines
        self.codes[code.name] += 1
        self.answers.append((time.monotonic(), code.name))
        return code

    async def _reserve(self, request_id: str, lines: list[Line]) -> grpc.StatusCode:
        try:
            reservation = await self.stub.Reserve(reserve_request(request_id, lines),
                                                  timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            # Short stock changed nothing; anything else may or may not have landed.
            if code != grpc.StatusCode.FAILED_PRECONDITION:
                self.unacked[request_id] = lines
        else:
            code = grpc.StatusCode.OK
            assert lines_of(reservation) == lines, "the hold must be what was asked"
            self.acked[request_id] = (reservation.reservation_id, lines)
        self.codes[code.name] += 1
        self.answers.append((time.monotonic(), code.name))
        return code


async def wait_for_acks(load: Load, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while len(load.acked) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert len(load.acked) >= count, f"only {len(load.acked)} acks in {timeout_s}s: {load.codes}"


async def retry_unacked(stub, load: Load) -> None:
    """Retries every unanswered reservation with its own request id: it lands exactly once."""
    for request_id, lines in load.unacked.items():
        try:
            reservation = await stub.Reserve(reserve_request(request_id, lines),
                                             timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error
            continue
        assert lines_of(reservation) == lines
        load.acked[request_id] = (reservation.reservation_id, lines)


async def assert_acked_reservations_active(stub, load: Load) -> None:
    for request_id, (reservation_id, lines) in load.acked.items():
        found = await stub.GetReservation(
            stock_pb2.GetReservationRequest(reservation_id=reservation_id),
            timeout=CALL_TIMEOUT_S)
        assert found.status == stock_pb2.RESERVATION_STATUS_ACTIVE, (request_id, found)
        assert lines_of(found) == lines, (request_id, found)


ITEMS_WITH_HOLDS = """
SELECT i.sku, i.location, i.on_hand, i.reserved, coalesce(h.held, 0)::bigint AS held
  FROM items i LEFT JOIN (
        SELECT l.sku, l.location, sum(l.quantity) AS held
          FROM reservations r JOIN reservation_lines l USING (reservation_id)
         WHERE r.status = 'active' GROUP BY l.sku, l.location) h
       USING (sku, location)
"""

RESERVATIONS_WITH_LINES = """
SELECT r.reservation_id, r.status, r.request_id,
       array_agg(l.sku ORDER BY l.sku COLLATE "C") AS skus,
       array_agg(l.quantity ORDER BY l.sku COLLATE "C") AS quantities
  FROM reservations r LEFT JOIN reservation_lines l USING (reservation_id)
 GROUP BY r.reservation_id
"""


async def assert_database_invariants(database_url: str, load: Load, on_hand: int) -> dict:
    """Counters equal the active holds; every hold is whole and was asked for by exactly one
    request; every acknowledged hold is there. Returns reserved per sku."""
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        items = await connection.fetch(ITEMS_WITH_HOLDS)
        reservations = await connection.fetch(RESERVATIONS_WITH_LINES)
    finally:
        await connection.close()
    for item in items:
        assert item["reserved"] == item["held"], f"reserved != active holds: {dict(item)}"
        assert item["on_hand"] == on_hand, f"a reservation changed on hand: {dict(item)}"
    asked = {**load.unacked, **{rid: lines for rid, (_, lines) in load.acked.items()}}
    by_request: dict[str, str] = {}
    for row in reservations:
        assert row["request_id"] in asked, f"a hold nobody asked for: {dict(row)}"
        assert row["request_id"] not in by_request, f"request applied twice: {dict(row)}"
        by_request[row["request_id"]] = row["reservation_id"]
        expected = asked[row["request_id"]]
        assert list(zip(row["skus"], row["quantities"], strict=True)) == [
            (sku, quantity) for sku, _, quantity in expected], f"half-applied: {dict(row)}"
        assert row["status"] == "active", dict(row)
    for request_id, (reservation_id, _) in load.acked.items():
        assert by_request.get(request_id) == reservation_id, f"acknowledged hold lost: {request_id}"
    return {item["sku"]: item["reserved"] for item in items}


async def assert_service_agrees(stub, skus: list[str], reserved_by_sku: dict) -> None:
    response = await stub.GetStock(stock_pb2.GetStockRequest(skus=skus), timeout=CALL_TIMEOUT_S)
    assert {level.sku: level.reserved for level in response.levels} == reserved_by_sku


async def assert_recovered_then_retries_apply_once(stub, database_url: str, load: Load,
                                                  skus: list[str], on_hand: int) -> None:
    """After an incident: every acknowledged hold is there and the invariants hold; retrying
    the unanswered calls with their request ids applies each exactly once; reconcile agrees."""
    await assert_acked_reservations_active(stub, load)
    reserved = await assert_database_invariants(database_url, load, on_hand)
    await assert_service_agrees(stub, skus, reserved)
    await retry_unacked(stub, load)
    reserved = await assert_database_invariants(database_url, load, on_hand)
    await assert_service_agrees(stub, skus, reserved)
    await assert_reconcile_clean(database_url)


async def assert_reconcile_clean(database_url: str) -> None:
    """stockctl reconcile agrees: counters, ledger and active holds tell the same story."""
    result = await run_cli("--database-url", database_url, "reconcile")
    assert result.returncode == 0, result.stdout + result.stderr


async def count_durable(database_url: str, request_ids) -> int:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        return await connection.fetchval(
            "SELECT count(*) FROM reservations WHERE request_id = any($1::text[])",
            list(request_ids))
    finally:
        await connection.close()
