"""Safety stock through the real server: units kept back from sale, checked against PostgreSQL
and the cache."""

from __future__ import annotations

import grpc
import pytest
import redis.asyncio as redis_asyncio
from conftest import REDIS_URL
from ops.conftest import async_wait_until  # the project's one poll-until helper
from stock_helpers import level, line, short_items, stock_item, unique

from service.gen.stock.v1 import stock_pb2
from service.invalidation import cache_key


async def safety_row(db, sku: str):
    return tuple(await db.fetchrow(
        "SELECT on_hand, reserved, safety_stock FROM items WHERE sku = $1 AND location = ''", sku))


async def test_reserves_and_sales_stop_at_the_safety_stock(stub, db, admin_metadata):
    sku = unique()
    await stock_item(stub, admin_metadata, sku, 10)
    kept = await stub.SetSafetyStock(stock_pb2.SetSafetyStockRequest(
        sku=sku, safety_stock=4, reason="miscounts"), metadata=admin_metadata)
    assert (kept.level.on_hand, kept.level.reserved, kept.level.safety_stock,
            kept.level.available) == (10, 0, 4, 6)
    assert await safety_row(db, sku) == (10, 0, 4)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Reserve(stock_pb2.ReserveRequest(order_id="o", lines=[line(sku, 7)]))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert [(item.sku, item.requested, item.available)
            for item in short_items(caught.value)] == [(sku, 7, 6)]
    held = await stub.Reserve(stock_pb2.ReserveRequest(order_id="o", lines=[line(sku, 6)]))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Decrement(stock_pb2.DecrementRequest(lines=[line(sku, 1)]))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    batch = await stub.ReserveBatch(stock_pb2.ReserveBatchRequest(requests=[
        stock_pb2.ReserveRequest(order_id="b", lines=[line(sku, 1)])]))
    assert batch.results[0].error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]

    # Held units leave whatever the safety stock: a commit is not a new sale.
    committed = await stub.Commit(stock_pb2.CommitRequest(reservation_id=held.reservation_id))
    assert committed.status == stock_pb2.RESERVATION_STATUS_COMMITTED
    assert await safety_row(db, sku) == (4, 0, 4)
    # A write-off below the safety stock is accepted; nothing is available then.
    written_off = await stub.Adjust(stock_pb2.AdjustRequest(sku=sku, delta=-2, reason="broken"),
                                    metadata=admin_metadata)
    assert (written_off.level.on_hand, written_off.level.available) == (2, 0)
    lowered = await stub.SetSafetyStock(stock_pb2.SetSafetyStockRequest(sku=sku, safety_stock=0),
                                        metadata=admin_metadata)
    assert lowered.level.available == 2
    sold = await stub.Decrement(stock_pb2.DecrementRequest(lines=[line(sku, 2)]))
    assert [(lv.on_hand, lv.available, lv.safety_stock) for lv in sold.levels] == [(0, 0, 0)]

    ledger = await db.fetch(
        "SELECT kind, delta_on_hand, delta_reserved, delta_safety, safety_after, reason, actor"
        " FROM ledger WHERE sku = $1 ORDER BY stamp, id", sku)
    assert [tuple(row) for row in ledger] == [
        ("set", 10, 0, 0, 0, "test set-up", "tester"),
        ("safety", 0, 0, 4, 4, "miscounts", "tester"),
        ("reserve", 0, 6, 0, 4, "", ""),
        ("commit", -6, -6, 0, 4, "", ""),
        ("adjust", -2, 0, 0, 4, "broken", "tester"),
        ("safety", 0, 0, -4, 0, "", "tester"),
        ("decrement", -2, 0, 0, 0, "", ""),
    ]


async def test_safety_stock_for_an_unknown_item_creates_it(stub, db, admin_metadata):
    sku = unique()
    kept = await stub.SetSafetyStock(stock_pb2.SetSafetyStockRequest(sku=sku, location="WH",
                                                                     safety_stock=5),
                                     metadata=admin_metadata)
    assert (kept.level.sku, kept.level.location, kept.level.on_hand, kept.level.safety_stock,
            kept.level.available) == (sku, "WH", 0, 5, 0)
    received = await stub.Adjust(stock_pb2.AdjustRequest(sku=sku, location="WH", delta=8),
                                 metadata=admin_metadata)
    assert (received.level.on_hand, received.level.available) == (8, 3)
    stored = await db.fetchrow("SELECT on_hand, safety_stock FROM items WHERE sku = $1", sku)
    assert tuple(stored) == (8, 5)


async def test_a_retried_change_applies_once_and_a_reused_id_is_refused(stub, db,
                                                                         admin_metadata):
    sku, request_id = unique(), unique("safety")
    await stock_item(stub, admin_metadata, sku, 10)
    request = stock_pb2.SetSafetyStockRequest(request_id=request_id, sku=sku, safety_stock=3)
    first = await stub.SetSafetyStock(request, metadata=admin_metadata)
    await stub.SetSafetyStock(stock_pb2.SetSafetyStockRequest(sku=sku, safety_stock=1),
                              metadata=admin_metadata)
    again = await stub.SetSafetyStock(request, metadata=admin_metadata)
    assert again.level == first.level  # the first answer, not a second change
    assert (await level(stub, sku)).safety_stock == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SetSafetyStock(stock_pb2.SetSafetyStockRequest(
            request_id=request_id, sku=sku, safety_stock=2), metadata=admin_metadata)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert await db.fetchval(
        "SELECT count(*) FROM ledger WHERE sku = $1 AND kind = 'safety'", sku) == 2


# Invalidation follows the commit, off the answer's path.
DELETION_WAIT_S = 10.0


async def test_a_safety_stock_change_invalidates_the_cached_item(stub, admin_metadata,
                                                                 redis_prefix_session):
    sku = unique()
    key = cache_key(redis_prefix_session, sku, "")
    client = redis_asyncio.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        # Each change's deletion is waited for before the next key is set, so the second
        # deletion can only be the safety stock change's.
        await client.set(key, "before the count")
        await stock_item(stub, admin_metadata, sku, 10)
        await async_wait_until(lambda: gone(client, key), DELETION_WAIT_S, "the count's")
        await client.set(key, "stale")
        await stub.SetSafetyStock(stock_pb2.SetSafetyStockRequest(sku=sku, safety_stock=2),
                                  metadata=admin_metadata)
        await async_wait_until(lambda: gone(client, key), DELETION_WAIT_S, "the change's")
    finally:
        await client.aclose()


async def gone(client, key: str) -> bool:
    return not await client.exists(key)
