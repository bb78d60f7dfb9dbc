"""ReserveBatch / CommitBatch / ReleaseBatch: each request on its own, in order, one result each."""

from __future__ import annotations

import grpc
import pytest
from stock_helpers import item_row, line, stock_item, unique

from service.gen.stock.v1 import stock_pb2

OK = "reservation"
ERROR = "error"


async def test_reserve_batch_results_in_order(stub, db, admin_metadata):
    sku, short = unique(), unique()
    await stock_item(stub, admin_metadata, sku, 5)
    await stock_item(stub, admin_metadata, short, 1)
    requests = [
        stock_pb2.ReserveRequest(order_id="o1", lines=[line(sku, 3)]),
        stock_pb2.ReserveRequest(order_id="o2", lines=[line(sku, 3)]),  # only 2 left
        stock_pb2.ReserveRequest(order_id="o3", lines=[line(sku, 2), line(short, 2)]),
        stock_pb2.ReserveRequest(order_id="", lines=[line(sku, 1)]),  # bad input
        stock_pb2.ReserveRequest(order_id="o5", lines=[line(sku, 2)]),
        # NUL cannot be stored: refused on its own, it must not fail the batch's commit.
        stock_pb2.ReserveRequest(order_id="o\x00", lines=[line(sku, 1)]),
    ]
    response = await stub.ReserveBatch(stock_pb2.ReserveBatchRequest(requests=requests))
    kinds = [result.WhichOneof("result") for result in response.results]
    assert kinds == [OK, ERROR, ERROR, ERROR, OK, ERROR]
    errors = [result.error for result in response.results]
    assert errors[1].code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert [(i.sku, i.requested, i.available) for i in errors[1].short_items] == [(sku, 3, 2)]
    assert [(i.sku, i.requested, i.available) for i in errors[2].short_items] == [(short, 2, 1)]
    assert errors[3].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert errors[3].message.startswith("order_id")
    assert errors[5].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert errors[5].message.startswith("order_id") and "NUL" in errors[5].message
    assert tuple(await item_row(db, sku)) == (5, 5)
    assert tuple(await item_row(db, short)) == (1, 0)


async def test_commit_and_release_batches(stub, db, admin_metadata):
    sku = unique()
    await stock_item(stub, admin_metadata, sku, 10)
    reserved = await stub.ReserveBatch(stock_pb2.ReserveBatchRequest(requests=[
        stock_pb2.ReserveRequest(order_id=f"o{i}", lines=[line(sku, 2)]) for i in range(4)]))
    ids = [result.reservation.reservation_id for result in reserved.results]
    assert all(ids)

    committed = await stub.CommitBatch(stock_pb2.CommitBatchRequest(requests=[
        stock_pb2.CommitRequest(reservation_id=ids[0]),
        stock_pb2.CommitRequest(reservation_id=ids[1], lines=[line(sku, 1)]),
        stock_pb2.CommitRequest(reservation_id=unique("missing")),
    ]))
    assert [r.WhichOneof("result") for r in committed.results] == [OK, OK, ERROR]
    assert committed.results[2].error.code == grpc.StatusCode.NOT_FOUND.value[0]

    released = await stub.ReleaseBatch(stock_pb2.ReleaseBatchRequest(requests=[
        stock_pb2.ReleaseRequest(reservation_id=ids[2]),
        stock_pb2.ReleaseRequest(reservation_id=ids[0]),  # committed: wrong state
        stock_pb2.ReleaseRequest(reservation_id=ids[2]),  # released again: unchanged
    ]))
    assert [r.WhichOneof("result") for r in released.results] == [OK, ERROR, OK]
    assert released.results[1].error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    # 2 + 1 committed leave; ids[3] still holds 2.
    assert tuple(await item_row(db, sku)) == (7, 2)
    statuses = await db.fetch("SELECT reservation_id, status FROM reservations"
                              " WHERE reservation_id = ANY($1::text[])", ids)
    assert dict(statuses) == {ids[0]: "committed", ids[1]: "committed", ids[2]: "released",
                              ids[3]: "active"}


async def test_batch_replay_with_request_ids(stub, admin_metadata):
    sku = unique()
    await stock_item(stub, admin_metadata, sku, 10)
    request = stock_pb2.ReserveBatchRequest(requests=[
        stock_pb2.ReserveRequest(request_id=unique("req"), order_id="o", lines=[line(sku, 1)])
        for _ in range(3)])
    first = await stub.ReserveBatch(request)
    second = await stub.ReserveBatch(request)
    assert [r.reservation.reservation_id for r in first.results] == \
        [r.reservation.reservation_id for r in second.results]


async def test_undecodable_batch_request_is_invalid_argument(channel):
    """The batch calls arrive as bytes (decoded in the engine module): bytes that are not a
    ReserveBatchRequest are refused whole, naming the request."""
    call = channel.unary_unary("/stock.v1.StockService/ReserveBatch")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(b"\xff\xff\xff")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("request: not a valid ReserveBatchRequest")
