"""Restart recovery: a new server on the same database comes back with the identical state."""

from __future__ import annotations

import asyncio

import grpc
from conftest import ADMIN_TOKEN, REDIS_URL, create_database, drop_database, service_runner
from grpc_health.v1 import health_pb2
from stock_helpers import line, unique

from loadtest.processes import free_port as pick_port
from service.config import Config
from service.gen.stock.v1 import stock_pb2, stock_pb2_grpc
from service.server import App

SERVING_WAIT_S = 30.0


async def database_state(connection) -> tuple[set, set]:
    items = {tuple(row) for row in await connection.fetch(
        "SELECT sku, location, on_hand, reserved, safety_stock FROM items")}
    holds = set()
    for row in await connection.fetch(
            "SELECT r.reservation_id, r.order_id, r.expires_at_ms, r.created_at_ms,"
            "       l.sku, l.location, l.quantity"
            "  FROM reservations r JOIN reservation_lines l USING (reservation_id)"
            " WHERE r.status = 'active'"):
        holds.add(tuple(row))
    return items, holds


def engine_state(engine) -> tuple[set, set]:
    exported = engine.export()
    holds = {(reservation_id, order_id, expires, created, sku, location, quantity)
             for reservation_id, order_id, expires, created, lines in exported.holds
             for sku, location, quantity in lines}
    return {tuple(item) for item in exported.items}, holds


async def wait_serving(app: App) -> None:
    for _ in range(int(SERVING_WAIT_S / 0.05)):
        if app.committer.serving:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("restarted service never became SERVING")


async def make_state(stub, metadata) -> dict:
    sku_a, sku_b = unique(), unique()
    await stub.SetStock(stock_pb2.SetStockRequest(sku=sku_a, on_hand=20), metadata=metadata)
    await stub.SetStock(stock_pb2.SetStockRequest(sku=sku_b, location="WH", on_hand=7),
                        metadata=metadata)
    await stub.SetSafetyStock(stock_pb2.SetSafetyStockRequest(sku=sku_a, safety_stock=3),
                              metadata=metadata)
    request_id = unique("req")
    active = await stub.Reserve(stock_pb2.ReserveRequest(
        request_id=request_id, order_id="o1", lines=[line(sku_a, 4), line(sku_b, 2, "WH")]))
    committed = await stub.Reserve(stock_pb2.ReserveRequest(order_id="o2", lines=[line(sku_a, 1)]))
    await stub.Commit(stock_pb2.CommitRequest(reservation_id=committed.reservation_id))
    # Falls due while no server runs: recovery must expire it before SERVING.
    short = await stub.Reserve(stock_pb2.ReserveRequest(order_id="o3", lines=[line(sku_a, 5)],
                                                        ttl_ms=1_000))
    levels = await stub.GetStock(stock_pb2.GetStockRequest(skus=[sku_a]))
    return dict(sku_a=sku_a, sku_b=sku_b, request_id=request_id, active=active,
                committed=committed.reservation_id, short=short.reservation_id,
                levels=levels)


async def test_restart_restores_identical_state(admin_metadata):
    database_url = await create_database()
    prefix = unique("restart") + ":"
    try:
        first = service_runner(database_url, prefix)
        await first.start()
        async with grpc.aio.insecure_channel(first.address) as channel:
            before = await make_state(stock_pb2_grpc.StockServiceStub(channel), admin_metadata)
        assert first.terminate() == 0, first.log_tail()  # SIGTERM: orderly, exit 0
        await asyncio.sleep(1.2)  # the 1 s hold is now overdue

        port = pick_port()
        app = App(Config(listen=f"127.0.0.1:{port}", database_url=database_url,
                         redis_url=REDIS_URL, redis_prefix=prefix, admin_token=ADMIN_TOKEN))
        await app.start()
        try:
            await wait_serving(app)
            await check_restored(app, port, before)
        finally:
            await app.stop()
    finally:
        await drop_database(database_url)


async def check_restored(app: App, port: int, before: dict) -> None:
    assert await app.health.Check(health_pb2.HealthCheckRequest(service=""), None) == \
        health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
    async with app.persistence._pool.acquire() as connection:
        short_status = await connection.fetchval(
            "SELECT status FROM reservations WHERE reservation_id = $1", before["short"])
        assert short_status == "expired"
        assert engine_state(app.committer.engine()[0]) == await database_state(connection)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = stock_pb2_grpc.StockServiceStub(channel)
        levels = await stub.GetStock(stock_pb2.GetStockRequest(skus=[before["sku_a"]]))
        # Before: the short hold of 5 still counted. After: recovery expired it.
        # The safety stock of 3 survives the restart: available is 19 - 4 - 3.
        assert [(lv.on_hand, lv.reserved, lv.safety_stock, lv.available)
                for lv in before["levels"].levels] == [(19, 9, 3, 7)]
        assert [(lv.on_hand, lv.reserved, lv.safety_stock, lv.available)
                for lv in levels.levels] == [(19, 4, 3, 12)]
        active = before["active"]
        replay = await stub.Reserve(stock_pb2.ReserveRequest(
            request_id=before["request_id"], order_id="o1",
            lines=[line(before["sku_a"], 4), line(before["sku_b"], 2, "WH")]))
        assert replay.reservation_id == active.reservation_id
        fetched = await stub.GetReservation(
            stock_pb2.GetReservationRequest(reservation_id=active.reservation_id))
        assert fetched.status == stock_pb2.RESERVATION_STATUS_ACTIVE
        assert list(fetched.lines) == list(active.lines)
        committed = await stub.Commit(stock_pb2.CommitRequest(reservation_id=before["committed"]))
        assert committed.status == stock_pb2.RESERVATION_STATUS_COMMITTED
        # Known only to PostgreSQL now: releasing it is refused as the engine would refuse it.
        try:
            await stub.Release(stock_pb2.ReleaseRequest(reservation_id=before["committed"]))
            raise AssertionError("released a committed reservation")
        except grpc.aio.AioRpcError as refused:
            assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert refused.details().endswith("is committed: cannot release")
