"""The whole life of stock through the real server, checked against PostgreSQL each step."""

from __future__ import annotations

import grpc
import pytest
from stock_helpers import bad_request, item_row, level, line, stock_item, unique

from service.gen.stock.v1 import stock_pb2


async def test_reserve_extend_commit_updates_levels_and_postgres(stub, db, admin_metadata):
    sku_a, sku_b = unique(), unique()
    await stock_item(stub, admin_metadata, sku_a, 10)
    await stock_item(stub, admin_metadata, sku_b, 5, location="WH2")

    held = await stub.Reserve(stock_pb2.ReserveRequest(
        order_id="order-1", lines=[line(sku_a, 3), line(sku_b, 2, "WH2")], ttl_ms=60_000))
    assert held.status == stock_pb2.RESERVATION_STATUS_ACTIVE
    assert len(held.reservation_id) == 32  # uuid4 hex, made by the service
    assert (await level(stub, sku_a)).available == 7
    assert (await level(stub, sku_b, "WH2")).reserved == 2
    assert tuple(await item_row(db, sku_a)) == (10, 3)

    extended = await stub.Extend(stock_pb2.ExtendRequest(reservation_id=held.reservation_id,
                                                         ttl_ms=120_000))
    assert extended.expires_at.ToMilliseconds() > held.expires_at.ToMilliseconds()

    committed = await stub.Commit(stock_pb2.CommitRequest(reservation_id=held.reservation_id))
    assert committed.status == stock_pb2.RESERVATION_STATUS_COMMITTED
    assert {(c.sku, c.quantity) for c in committed.committed_lines} == {(sku_a, 3), (sku_b, 2)}
    assert tuple(await item_row(db, sku_a)) == (7, 0)
    assert tuple(await item_row(db, sku_b, "WH2")) == (3, 0)
    row = await db.fetchrow("SELECT status, order_id FROM reservations WHERE reservation_id = $1",
                            held.reservation_id)
    assert tuple(row) == ("committed", "order-1")

    fetched = await stub.GetReservation(
        stock_pb2.GetReservationRequest(reservation_id=held.reservation_id))
    assert fetched.status == stock_pb2.RESERVATION_STATUS_COMMITTED


async def test_release_gives_stock_back_and_is_idempotent(stub, db, admin_metadata):
    sku = unique()
    await stock_item(stub, admin_metadata, sku, 4)
    held = await stub.Reserve(stock_pb2.ReserveRequest(order_id="o", lines=[line(sku, 4)]))
    assert (await level(stub, sku)).available == 0
    for _ in range(2):
        released = await stub.Release(stock_pb2.ReleaseRequest(reservation_id=held.reservation_id))
        assert released.status == stock_pb2.RESERVATION_STATUS_RELEASED
    assert tuple(await item_row(db, sku)) == (4, 0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Commit(stock_pb2.CommitRequest(reservation_id=held.reservation_id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_partial_commit_releases_the_rest(stub, db, admin_metadata):
    sku_a, sku_b = unique(), unique()
    await stock_item(stub, admin_metadata, sku_a, 10)
    await stock_item(stub, admin_metadata, sku_b, 10)
    held = await stub.Reserve(stock_pb2.ReserveRequest(
        order_id="o", lines=[line(sku_a, 5), line(sku_b, 4)]))
    committed = await stub.Commit(stock_pb2.CommitRequest(
        reservation_id=held.reservation_id, lines=[line(sku_a, 2)]))
    assert [(c.sku, c.quantity) for c in committed.committed_lines] == [(sku_a, 2)]
    assert tuple(await item_row(db, sku_a)) == (8, 0)
    assert tuple(await item_row(db, sku_b)) == (10, 0)
    rows = await db.fetch("SELECT sku, quantity, quantity_committed FROM reservation_lines"
                          " WHERE reservation_id = $1 ORDER BY quantity DESC",
                          held.reservation_id)
    assert [tuple(row) for row in rows] == [(sku_a, 5, 2), (sku_b, 4, 0)]
    # Committing a committed reservation returns it unchanged.
    again = await stub.Commit(stock_pb2.CommitRequest(reservation_id=held.reservation_id))
    assert list(again.committed_lines) == list(committed.committed_lines)


async def test_commit_above_held_is_invalid_and_changes_nothing(stub, db, admin_metadata):
    sku = unique()
    await stock_item(stub, admin_metadata, sku, 10)
    held = await stub.Reserve(stock_pb2.ReserveRequest(order_id="o", lines=[line(sku, 3)]))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Commit(stock_pb2.CommitRequest(reservation_id=held.reservation_id,
                                                  lines=[line(sku, 4)]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(caught.value).field_violations[0].field == "lines"
    assert tuple(await item_row(db, sku)) == (10, 3)


async def test_decrement_and_adjust_write_the_ledger(stub, db, admin_metadata):
    sku = unique()
    await stock_item(stub, admin_metadata, sku, 10)
    sold = await stub.Decrement(stock_pb2.DecrementRequest(
        lines=[line(sku, 4)], order_id="till-1", request_id=unique("req")))
    assert [(lv.on_hand, lv.available) for lv in sold.levels] == [(6, 6)]
    adjusted = await stub.Adjust(stock_pb2.AdjustRequest(sku=sku, delta=-1, reason="broken"),
                                 metadata=admin_metadata)
    assert adjusted.level.on_hand == 5
    assert tuple(await item_row(db, sku)) == (5, 0)
    ledger = await db.fetch("SELECT kind, delta_on_hand, on_hand_after, order_id, reason, actor"
                            " FROM ledger WHERE sku = $1 ORDER BY id", sku)
    assert [tuple(row) for row in ledger] == [
        ("set", 10, 10, "", "test set-up", "tester"),
        ("decrement", -4, 6, "till-1", "", ""),
        ("adjust", -1, 5, "", "broken", "tester"),
    ]


async def test_set_stock_compare_and_set(stub, admin_metadata):
    sku = unique()
    await stock_item(stub, admin_metadata, sku, 10)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SetStock(stock_pb2.SetStockRequest(sku=sku, on_hand=3, expected_on_hand=9),
                            metadata=admin_metadata)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    done = await stub.SetStock(stock_pb2.SetStockRequest(sku=sku, on_hand=3, expected_on_hand=10),
                               metadata=admin_metadata)
    assert done.level.on_hand == 3


async def test_set_stock_below_reserved_is_refused(stub, db, admin_metadata):
    sku = unique()
    await stock_item(stub, admin_metadata, sku, 10)
    await stub.Reserve(stock_pb2.ReserveRequest(order_id="o", lines=[line(sku, 6)]))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SetStock(stock_pb2.SetStockRequest(sku=sku, on_hand=5), metadata=admin_metadata)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert tuple(await item_row(db, sku)) == (10, 6)


async def test_unknown_sku_and_reservation_are_not_found(stub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Reserve(stock_pb2.ReserveRequest(order_id="o", lines=[line(unique(), 1)]))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetReservation(stock_pb2.GetReservationRequest(reservation_id=unique("r")))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    response = await stub.GetStock(stock_pb2.GetStockRequest(skus=[unique()]))
    assert list(response.levels) == []
