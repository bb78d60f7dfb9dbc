"""Group commit failure: callers get UNAVAILABLE, the engine forgets what PostgreSQL did not
commit (rebuilt from PostgreSQL), health dips to NOT_SERVING and the service resumes by itself.
The server runs in-process here so a test can make one batch write fail."""

from __future__ import annotations

import asyncio

import asyncpg
import grpc
import pytest
from conftest import ADMIN_TOKEN, REDIS_URL, create_database, drop_database
from grpc_health.v1 import health_pb2
from stock_helpers import line, unique

from loadtest.processes import free_port
from service.config import Config
from service.gen.stock.v1 import stock_pb2, stock_pb2_grpc
from service.server import App

SERVING_WAIT_S = 30.0
METADATA = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


@pytest.fixture
async def app(request):
    """An in-process service; parametrize indirectly with STOCK_JOURNAL_LOG_MAX_OPERATIONS
    (0: every batch goes into the tables directly)."""
    log_max = getattr(request, "param", Config.journal_log_max_operations)
    database_url = await create_database()
    app = App(Config(listen=f"127.0.0.1:{free_port()}", database_url=database_url,
                     redis_url=REDIS_URL, redis_prefix=unique("committer") + ":",
                     admin_token=ADMIN_TOKEN, rebuild_backoff_initial_ms=10,
                     journal_log_max_operations=log_max))
    await app.start()
    try:
        await wait_serving(app)
        yield app
    finally:
        await app.stop()
        await drop_database(database_url)


async def wait_serving(app: App) -> None:
    for _ in range(int(SERVING_WAIT_S / 0.01)):
        if app.committer.serving:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never SERVING")


def fail_next_write(app: App, seen: list[str]) -> None:
    """The next batch write raises like a dropped connection; later writes work."""
    real_write = app.persistence.write_batch

    async def failing_write(batch, **_):
        app.persistence.write_batch = real_write
        health = await app.health.Check(health_pb2.HealthCheckRequest(service=""), None)
        seen.append(health_pb2.HealthCheckResponse.ServingStatus.Name(health.status))
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost (test)")

    app.persistence.write_batch = failing_write


async def health_name(app: App) -> str:
    health = await app.health.Check(health_pb2.HealthCheckRequest(service=""), None)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)


async def test_failed_batch_is_unavailable_forgotten_and_service_resumes(app):
    sku = unique()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = stock_pb2_grpc.StockServiceStub(channel)
        await stub.SetStock(stock_pb2.SetStockRequest(sku=sku, on_hand=10), metadata=METADATA)
        seen: list[str] = []
        fail_next_write(app, seen)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Reserve(stock_pb2.ReserveRequest(order_id="o", lines=[line(sku, 4)]))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert seen == ["SERVING"]  # the write was attempted while serving

        await wait_serving(app)
        assert await health_name(app) == "SERVING"
        levels = await stub.GetStock(stock_pb2.GetStockRequest(skus=[sku]))
        # The uncommitted hold is gone from memory: the engine was rebuilt from PostgreSQL.
        assert [(lv.on_hand, lv.reserved) for lv in levels.levels] == [(10, 0)]
        held = await stub.Reserve(stock_pb2.ReserveRequest(order_id="o", lines=[line(sku, 4)]))
        assert held.status == stock_pb2.RESERVATION_STATUS_ACTIVE
    async with app.persistence._pool.acquire() as connection:
        row = await connection.fetchrow("SELECT on_hand, reserved FROM items WHERE sku = $1", sku)
    assert tuple(row) == (10, 4)


async def test_calls_while_rebuilding_are_unavailable(app):
    blocked = asyncio.Event()
    release = asyncio.Event()
    real_load = app.persistence.load_state

    async def slow_load(limit):
        blocked.set()
        await release.wait()
        return await real_load(limit)

    app.persistence.load_state = slow_load
    fail_next_write(app, [])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = stock_pb2_grpc.StockServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Adjust(stock_pb2.AdjustRequest(sku=unique(), delta=1), metadata=METADATA)
        await asyncio.wait_for(blocked.wait(), SERVING_WAIT_S)
        assert await health_name(app) == "NOT_SERVING"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetStock(stock_pb2.GetStockRequest(skus=["any"]))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        release.set()
        await wait_serving(app)
        await stub.GetStock(stock_pb2.GetStockRequest(skus=["any"]))


async def test_idle_service_notices_lost_postgres(app):
    """No call is writing, yet a failed probe takes health to NOT_SERVING until PostgreSQL
    answers again (here: until the blocked reload is let through)."""
    reloading, release = asyncio.Event(), asyncio.Event()
    real_ping, real_load = app.persistence.ping, app.persistence.load_state

    async def lost_ping():
        app.persistence.ping = real_ping
        raise OSError("connection refused (test)")

    async def held_load(limit):
        reloading.set()
        await release.wait()
        return await real_load(limit)

    app.persistence.ping, app.persistence.load_state = lost_ping, held_load
    await asyncio.wait_for(reloading.wait(), 10)
    assert await health_name(app) == "NOT_SERVING"
    release.set()
    await wait_serving(app)
    assert await health_name(app) == "SERVING"


async def test_refusal_waits_for_the_change_it_rests_on(app):
    """B is refused because A took the last unit; A's batch then fails. B must not have been
    told FAILED_PRECONDITION about a hold PostgreSQL never got: both get UNAVAILABLE."""
    sku = unique()
    entered, gate = asyncio.Event(), asyncio.Event()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = stock_pb2_grpc.StockServiceStub(channel)
        await stub.SetStock(stock_pb2.SetStockRequest(sku=sku, on_hand=1), metadata=METADATA)
        real_write = app.persistence.write_batch

        async def gated_write(batch, **_):
            app.persistence.write_batch = real_write
            entered.set()
            await gate.wait()
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost (test)")

        app.persistence.write_batch = gated_write
        first = asyncio.ensure_future(stub.Reserve(stock_pb2.ReserveRequest(
            order_id="a", lines=[line(sku, 1)])))
        await asyncio.wait_for(entered.wait(), 10)
        second = asyncio.ensure_future(stub.Reserve(stock_pb2.ReserveRequest(
            order_id="b", lines=[line(sku, 1)])))
        await asyncio.sleep(0.2)
        assert not second.done()  # refused in memory, but not answered yet
        gate.set()
        for call in (first, second):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        await wait_serving(app)
        held = await stub.Reserve(stock_pb2.ReserveRequest(order_id="c", lines=[line(sku, 1)]))
        assert held.status == stock_pb2.RESERVATION_STATUS_ACTIVE


BIG_BATCH = 1_000  # reservations per call: enough backlog for a second writer


@pytest.mark.parametrize("app", [0, Config.journal_log_max_operations], indirect=True,
                         ids=["into-tables", "into-journal-log"])
@pytest.mark.parametrize("shared_item", [True, False])
async def test_a_failed_large_batch_leaves_postgresql_consistent(app, shared_item):
    """Two large batches, the first of which fails after a delay. If the second shares an
    item with it, it must not be written meanwhile: its item row would hold levels that
    include the first batch's holds. If it shares nothing, it may be written at once, and
    what it committed stands on its own. Either way every call is UNAVAILABLE and, after the
    rebuild, each item's reserved equals its active holds in PostgreSQL. The same holds
    whether large batches go into the tables or into the journal log (projected by the
    rebuild's recovery)."""
    first_sku, other_sku = unique("first"), unique("other")
    second_sku = first_sku if shared_item else other_sku
    entered, gate = asyncio.Event(), asyncio.Event()
    logged = app.config.journal_log_max_operations > 0
    write_name = "append_log" if logged else "write_batch"
    real_write = getattr(app.persistence, write_name)
    writes: list[int] = []

    async def first_fails(batch, **kwargs):
        writes.append(batch.lsn_last)
        if len(writes) == 1:
            entered.set()
            await gate.wait()
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost (test)")
        await real_write(batch, **kwargs)

    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = stock_pb2_grpc.StockServiceStub(channel)
        for sku in (first_sku, other_sku):
            await stub.SetStock(stock_pb2.SetStockRequest(sku=sku, on_hand=10_000),
                                metadata=METADATA)

        def reserve_batch(sku: str):
            return stub.ReserveBatch(stock_pb2.ReserveBatchRequest(requests=[
                stock_pb2.ReserveRequest(order_id=f"o{n}", lines=[line(sku, 1)])
                for n in range(BIG_BATCH)]))

        setattr(app.persistence, write_name, first_fails)
        first = asyncio.ensure_future(reserve_batch(first_sku))
        await asyncio.wait_for(entered.wait(), 10)
        second = asyncio.ensure_future(reserve_batch(second_sku))
        await asyncio.sleep(0.5)  # time for a second writer to start, if it may
        assert len(writes) == (1 if shared_item else 2)
        gate.set()
        for call in (first, second):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        setattr(app.persistence, write_name, real_write)
        await wait_serving(app)
    async with app.persistence._pool.acquire() as connection:
        assert not await connection.fetchval("SELECT count(*) FROM journal_log")
        for sku in (first_sku, other_sku):
            reserved, held = await connection.fetchrow(
                "SELECT i.reserved, (SELECT coalesce(sum(l.quantity), 0) FROM reservation_lines l"
                " JOIN reservations r USING (reservation_id)"
                " WHERE r.status = 'active' AND l.sku = i.sku) FROM items i WHERE i.sku = $1",
                sku)
            assert reserved == held
    expected_other = 0 if shared_item else BIG_BATCH  # the disjoint batch did commit
    async with app.persistence._pool.acquire() as connection:
        assert await connection.fetchval("SELECT reserved FROM items WHERE sku = $1",
                                         other_sku) == expected_other
