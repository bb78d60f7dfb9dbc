"""service.client.StockClient against the in-process fake (loadtest.empty_server)."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from loadtest.empty_server import EmptyStockServicer, start
from service.client import Admission, Line, ShortStock, StockClient, StockError
from service.persistence import wait_projected

BATCH_DELAY_S = 0.01  # long enough for callers to pile up behind a batch in flight


class CountingServicer(EmptyStockServicer):
    """The fake, counting calls and batch concurrency; can fail every batch call."""

    def __init__(self) -> None:
        super().__init__()
        self.single_calls = 0
        self.batch_sizes: list[int] = []
        self.batches_in_flight = 0
        self.batches_in_flight_max = 0
        self.fail_batches_with: grpc.StatusCode | None = None

    async def Reserve(self, request, context):
        self.single_calls += 1
        return await super().Reserve(request, context)

    async def _batch(self, operation, request, context, response_type):
        self.batch_sizes.append(len(request.requests))
        self.batches_in_flight += 1
        self.batches_in_flight_max = max(self.batches_in_flight_max, self.batches_in_flight)
        try:
            await asyncio.sleep(BATCH_DELAY_S)
            if self.fail_batches_with is not None:
                await context.abort(self.fail_batches_with, "store unavailable")
            return await super()._batch(operation, request, context, response_type)
        finally:
            self.batches_in_flight -= 1


@pytest.fixture
async def fake():
    servicer = CountingServicer()
    server, port = await start("127.0.0.1:0", servicer)
    servicer.target = f"127.0.0.1:{port}"
    yield servicer
    await server.stop(None)


async def stock(client: StockClient, sku: str, on_hand: int) -> None:
    await client.set_stock(sku, on_hand, reason="test")


async def test_single_calls_round_trip(fake):
    async with StockClient(fake.target) as client:
        await stock(client, "a", 5)
        held = await client.reserve("order-1", [Line("a", 2)], ttl_ms=60_000)
        assert held.status == "active" and held.lines == (Line("a", 2),)
        assert held.expires_at_ms > 0
        committed = await client.commit(held.reservation_id)
        assert committed.status == "committed"
        assert committed.committed_lines == (Line("a", 2),)
        [level] = await client.get_stock(["a", "unknown"])
        assert (level.on_hand, level.reserved, level.available) == (3, 0, 3)
    assert fake.single_calls == 1 and fake.batch_sizes == []


async def test_short_stock_names_every_short_item(fake):
    async with StockClient(fake.target) as client:
        await stock(client, "a", 1)
        await stock(client, "b", 0)
        with pytest.raises(ShortStock) as raised:
            await client.reserve("order-1", [Line("a", 3), Line("b", 1)])
    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert {(i.sku, i.requested, i.available) for i in raised.value.short_items} == {
        ("a", 3, 1), ("b", 1, 0)}


async def test_unknown_reservation_is_a_typed_error(fake):
    async with StockClient(fake.target) as client:
        with pytest.raises(StockError) as raised:
            await client.release("no-such-reservation")
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert not isinstance(raised.value, ShortStock)


async def test_coalescing_gathers_concurrent_reserves_into_bounded_batches(fake):
    callers = 2_500
    async with StockClient(fake.target, coalesce=True, batches_in_flight_max=2) as client:
        await stock(client, "a", callers)
        reservations = await asyncio.gather(*(
            client.reserve(f"order-{i}", [Line("a", 1)]) for i in range(callers)))
    assert [r.order_id for r in reservations] == [f"order-{i}" for i in range(callers)]
    assert len({r.reservation_id for r in reservations}) == callers
    assert fake.single_calls == 0
    assert sum(fake.batch_sizes) == callers
    assert max(fake.batch_sizes) <= 1_000 and len(fake.batch_sizes) <= 5
    assert fake.batches_in_flight_max <= 2


async def test_each_caller_gets_its_own_outcome(fake):
    async with StockClient(fake.target, coalesce=True) as client:
        await stock(client, "a", 10)
        outcomes = await asyncio.gather(
            *(client.reserve(f"order-{i}", [Line("a", 1)]) for i in range(25)),
            return_exceptions=True)
    held = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(held) == 10 and len(refused) == 15
    assert all(isinstance(error, ShortStock) for error in refused)
    assert all(error.short_items[0].available == 0 for error in refused)
    # Applied in order: the first ten callers got the stock.
    assert [r.order_id for r in held] == [f"order-{i}" for i in range(10)]


async def test_a_failed_batch_call_fails_each_of_its_callers(fake):
    async with StockClient(fake.target, coalesce=True) as client:
        await stock(client, "a", 10)
        fake.fail_batches_with = grpc.StatusCode.UNAVAILABLE
        outcomes = await asyncio.gather(
            *(client.reserve(f"order-{i}", [Line("a", 1)]) for i in range(5)),
            return_exceptions=True)
    assert all(isinstance(o, StockError) for o in outcomes)
    assert {o.code for o in outcomes} == {grpc.StatusCode.UNAVAILABLE}


async def test_commit_and_release_coalesce_too(fake):
    async with StockClient(fake.target, coalesce=True) as client:
        await stock(client, "a", 4)
        held = await asyncio.gather(*(client.reserve(f"o{i}", [Line("a", 1)]) for i in range(4)))
        done = await asyncio.gather(
            client.commit(held[0].reservation_id), client.commit(held[1].reservation_id),
            client.release(held[2].reservation_id), client.release(held[3].reservation_id))
        [level] = await client.get_stock(["a"])
    assert [r.status for r in done] == ["committed", "committed", "released", "released"]
    assert (level.on_hand, level.reserved) == (2, 0)
    assert fake.single_calls == 0


async def test_explicit_batch_returns_results_and_errors_in_order(fake):
    from service.gen.stock.v1 import stock_pb2

    async with StockClient(fake.target) as client:
        await stock(client, "a", 1)
        requests = [stock_pb2.ReserveRequest(order_id=f"o{i}", lines=[
            stock_pb2.Line(sku="a", quantity=1)]) for i in range(2)]
        first, second = await client.reserve_batch(requests)
    assert first.order_id == "o0" and first.status == "active"
    assert isinstance(second, ShortStock) and second.short_items[0].sku == "a"


# Against the real service (tests/conftest.py's session server, PostgreSQL behind it).

def admin_token(admin_metadata) -> str:
    return dict(admin_metadata)["authorization"].removeprefix("Bearer ")


# The service projects its journal log once bulk load pauses (service/projector.py).
PROJECTION_WAIT_S = 30.0


async def test_coalesced_holds_on_the_service_never_oversell(server, admin_metadata, db):
    sku, buyers, units = f"client-{uuid.uuid4().hex[:10]}", 2_000, 1_500
    async with StockClient(server.address, admin_token=admin_token(admin_metadata),
                           coalesce=True) as client:
        await stock(client, sku, units)
        outcomes = await asyncio.gather(
            *(client.reserve(f"o{i}", [Line(sku, 1)], ttl_ms=60_000) for i in range(buyers)),
            return_exceptions=True)
        held = [o for o in outcomes if not isinstance(o, BaseException)]
        refused = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(held) == units and len(refused) == buyers - units
        assert all(isinstance(error, ShortStock) for error in refused), refused[:3]
        done = await asyncio.gather(
            *(client.commit(r.reservation_id) for r in held[:1_000]),
            *(client.release(r.reservation_id) for r in held[1_000:]))
        [level] = await client.get_stock([sku])
    assert {r.status for r in done[:1_000]} == {"committed"}
    assert {r.status for r in done[1_000:]} == {"released"}
    assert (level.on_hand, level.reserved) == (units - 1_000, 0)
    await wait_projected(db, PROJECTION_WAIT_S)
    row = await db.fetchrow("SELECT on_hand, reserved FROM items WHERE sku = $1", sku)
    assert (row["on_hand"], row["reserved"]) == (units - 1_000, 0)


async def test_batch_errors_from_the_service_are_typed(server, admin_metadata):
    sku = f"client-{uuid.uuid4().hex[:10]}"
    async with StockClient(server.address, admin_token=admin_token(admin_metadata),
                           coalesce=True) as client:
        await stock(client, sku, 1)
        first, second = await asyncio.gather(
            client.reserve("o1", [Line(sku, 1)]), client.reserve("o2", [Line(sku, 1)]),
            return_exceptions=True)
        with pytest.raises(StockError) as unknown:
            await client.commit("no-such-reservation")
    assert first.status == "active"
    assert isinstance(second, ShortStock)
    assert second.code == grpc.StatusCode.FAILED_PRECONDITION
    assert second.short_items[0].sku == sku and second.short_items[0].available == 0
    assert unknown.value.code == grpc.StatusCode.NOT_FOUND


async def test_the_client_sets_a_safety_stock_that_holds_respect(server, admin_metadata):
    """`StockClient.set_safety_stock` against the service: the level it answers carries the
    safety stock, and a coalesced reserve beyond what lies above it is refused as short."""
    sku = f"client-{uuid.uuid4().hex[:10]}"
    async with StockClient(server.address, admin_token=admin_token(admin_metadata),
                           coalesce=True) as client:
        await stock(client, sku, 10)
        level = await client.set_safety_stock(sku, 7, reason="buffer")
        assert (level.on_hand, level.safety_stock, level.available) == (10, 7, 3)
        with pytest.raises(ShortStock) as raised:
            await client.reserve("o1", [Line(sku, 4)])
        assert [(i.sku, i.requested, i.available) for i in raised.value.short_items] == [
            (sku, 4, 3)]
        held = await client.reserve("o2", [Line(sku, 3)])
        assert held.status == "active"
        [level] = await client.get_stock([sku])
        assert (level.reserved, level.safety_stock, level.available) == (3, 7, 0)


# --- Admission: the coalescer's bound on callers inside, first come first in ----------------


async def test_admission_lets_in_at_most_its_places_in_arrival_order():
    admission = Admission(2)
    inside, most_inside, order = [0], [0], []
    gate = asyncio.Event()

    async def caller(number: int) -> None:
        await admission.enter()
        order.append(number)
        inside[0] += 1
        most_inside[0] = max(most_inside[0], inside[0])
        await gate.wait()
        await asyncio.sleep(0)
        inside[0] -= 1
        admission.leave()

    tasks = [asyncio.create_task(caller(number)) for number in range(6)]
    await asyncio.sleep(0.01)
    assert order == [0, 1] and most_inside[0] == 2
    gate.set()
    await asyncio.gather(*tasks)
    assert order == list(range(6)) and most_inside[0] == 2
    assert admission._free == 2 and not admission._waiters


async def test_a_caller_cancelled_while_waiting_or_on_its_way_in_loses_no_place():
    admission = Admission(1)
    await admission.enter()  # the one place is taken
    waiting = [asyncio.create_task(admission.enter()) for _ in range(3)]
    await asyncio.sleep(0)
    waiting[0].cancel()  # cancelled while waiting: skipped
    await asyncio.sleep(0)
    admission.leave()  # the place goes to waiting[1]...
    waiting[1].cancel()  # ...which is cancelled before it runs: it passes it on to waiting[2]
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert isinstance(results[1], asyncio.CancelledError)
    assert results[2] is None  # waiting[2] is inside
    admission.leave()
    assert admission._free == 1 and not admission._waiters


async def test_a_crowd_far_larger_than_the_places_all_get_through():
    admission = Admission(50)
    done = []

    async def caller(number: int) -> None:
        await admission.enter()
        try:
            await asyncio.sleep(0)
            done.append(number)
        finally:
            admission.leave()

    await asyncio.gather(*(caller(number) for number in range(20_000)))
    assert sorted(done) == list(range(20_000))
    assert admission._free == 50 and not admission._waiters
