"""The error table (docs/ERRORS.md), row by row, through the real server."""

from __future__ import annotations

import grpc
import pytest
from stock_helpers import bad_request, item_row, level, line, short_items, stock_item, unique

from service.gen.stock.v1 import stock_pb2
from service.validation import (
    ID_BYTES_MAX,
    LINES_PER_REQUEST_MAX,
    ON_HAND_MAX,
    QUANTITY_MAX,
    REASON_BYTES_MAX,
    TTL_MS_MAX,
    TTL_MS_MIN,
)

LONG_ID = "x" * (ID_BYTES_MAX + 1)
SKU = "bad-input-sku"  # stocked once below; every bad request names it and must not move it


def reserve(**fields):
    fields.setdefault("order_id", "o")
    fields.setdefault("lines", [line(SKU, 1)])
    return stock_pb2.ReserveRequest(**fields)


# (method, request, field named in the error, text of the bound in the message)
BAD_INPUT = [
    ("Reserve", reserve(lines=[]), "lines", f"1..{LINES_PER_REQUEST_MAX}"),
    ("Reserve", reserve(lines=[line(SKU, 1)] * (LINES_PER_REQUEST_MAX + 1)), "lines",
     str(LINES_PER_REQUEST_MAX)),
    ("Reserve", reserve(lines=[line(SKU, 0)]), "lines[0].quantity", f"1..{QUANTITY_MAX}"),
    ("Reserve", reserve(lines=[line(SKU, -5)]), "lines[0].quantity", f"1..{QUANTITY_MAX}"),
    ("Reserve", reserve(lines=[line(SKU, QUANTITY_MAX + 1)]), "lines[0].quantity",
     f"1..{QUANTITY_MAX}"),
    ("Reserve", reserve(lines=[line("", 1)]), "lines[0].sku", f"1..{ID_BYTES_MAX}"),
    ("Reserve", reserve(lines=[line(LONG_ID, 1)]), "lines[0].sku", str(ID_BYTES_MAX)),
    ("Reserve", reserve(lines=[line(SKU, 1, LONG_ID)]), "lines[0].location", str(ID_BYTES_MAX)),
    ("Reserve", reserve(order_id=""), "order_id", f"1..{ID_BYTES_MAX}"),
    ("Reserve", reserve(order_id=LONG_ID), "order_id", str(ID_BYTES_MAX)),
    ("Reserve", reserve(request_id=LONG_ID), "request_id", str(ID_BYTES_MAX)),
    ("Reserve", reserve(ttl_ms=TTL_MS_MIN - 1), "ttl_ms", f"{TTL_MS_MIN}..{TTL_MS_MAX}"),
    ("Reserve", reserve(ttl_ms=TTL_MS_MAX + 1), "ttl_ms", f"{TTL_MS_MIN}..{TTL_MS_MAX}"),
    ("Reserve", reserve(ttl_ms=-1), "ttl_ms", f"{TTL_MS_MIN}..{TTL_MS_MAX}"),
    ("Commit", stock_pb2.CommitRequest(reservation_id=""), "reservation_id", str(ID_BYTES_MAX)),
    ("Commit", stock_pb2.CommitRequest(reservation_id="r", lines=[line(SKU, 0)]),
     "lines[0].quantity", f"1..{QUANTITY_MAX}"),
    ("Release", stock_pb2.ReleaseRequest(reservation_id=LONG_ID), "reservation_id",
     str(ID_BYTES_MAX)),
    ("Extend", stock_pb2.ExtendRequest(reservation_id="r", ttl_ms=999), "ttl_ms",
     f"{TTL_MS_MIN}..{TTL_MS_MAX}"),
    ("GetReservation", stock_pb2.GetReservationRequest(), "reservation_id", str(ID_BYTES_MAX)),
    ("Decrement", stock_pb2.DecrementRequest(lines=[]), "lines", str(LINES_PER_REQUEST_MAX)),
    ("Decrement", stock_pb2.DecrementRequest(lines=[line(SKU, 0)]), "lines[0].quantity",
     f"1..{QUANTITY_MAX}"),
    ("Adjust", stock_pb2.AdjustRequest(sku=SKU, delta=0), "delta", str(QUANTITY_MAX)),
    ("Adjust", stock_pb2.AdjustRequest(sku=SKU, delta=QUANTITY_MAX + 1), "delta",
     str(QUANTITY_MAX)),
    ("Adjust", stock_pb2.AdjustRequest(sku="", delta=1), "sku", str(ID_BYTES_MAX)),
    ("Adjust", stock_pb2.AdjustRequest(sku=SKU, delta=1, reason="r" * (REASON_BYTES_MAX + 1)),
     "reason", str(REASON_BYTES_MAX)),
    ("SetStock", stock_pb2.SetStockRequest(sku=SKU, on_hand=-1), "on_hand", str(ON_HAND_MAX)),
    ("SetStock", stock_pb2.SetStockRequest(sku=SKU, on_hand=ON_HAND_MAX + 1), "on_hand",
     str(ON_HAND_MAX)),
    ("SetStock", stock_pb2.SetStockRequest(sku=SKU, on_hand=1, expected_on_hand=-1),
     "expected_on_hand", str(ON_HAND_MAX)),
    ("SetSafetyStock", stock_pb2.SetSafetyStockRequest(sku=SKU, safety_stock=-1),
     "safety_stock", str(ON_HAND_MAX)),
    ("SetSafetyStock", stock_pb2.SetSafetyStockRequest(sku=SKU, safety_stock=ON_HAND_MAX + 1),
     "safety_stock", str(ON_HAND_MAX)),
    ("SetSafetyStock", stock_pb2.SetSafetyStockRequest(safety_stock=1), "sku", str(ID_BYTES_MAX)),
    ("GetStock", stock_pb2.GetStockRequest(skus=[]), "skus", "1.."),
    ("GetStock", stock_pb2.GetStockRequest(skus=[SKU, ""]), "skus[1]", str(ID_BYTES_MAX)),
    ("ReserveBatch", stock_pb2.ReserveBatchRequest(), "requests", "1..1000"),
    # PostgreSQL text cannot hold NUL: accepted, it would fail the whole group commit.
    ("Reserve", reserve(lines=[line(SKU + "\x00", 1)]), "lines[0].sku", "NUL"),
    ("Reserve", reserve(lines=[line(SKU, 1, "a\x00")]), "lines[0].location", "NUL"),
    ("Reserve", reserve(order_id="o\x00"), "order_id", "NUL"),
    ("Reserve", reserve(request_id="\x00"), "request_id", "NUL"),
    ("Adjust", stock_pb2.AdjustRequest(sku=SKU, delta=1, reason="\x00"), "reason", "NUL"),
    ("ReleaseBatch", stock_pb2.ReleaseBatchRequest(
        requests=[stock_pb2.ReleaseRequest(reservation_id="r")] * 1001), "requests", "1..1000"),
]


@pytest.mark.parametrize(("method", "request_message", "field", "bound"), BAD_INPUT,
                         ids=[f"{row[0]}-{row[2]}-{i}" for i, row in enumerate(BAD_INPUT)])
async def test_bad_input_is_invalid_argument_naming_field_and_bound(
        stub, db, admin_metadata, method, request_message, field, bound):
    await stock_item(stub, admin_metadata, SKU, 100)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(stub, method)(request_message, metadata=admin_metadata)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details().startswith(field), error.details()
    assert bound in error.details()
    violation = bad_request(error).field_violations[0]
    assert violation.field == field
    assert tuple(await item_row(db, SKU)) == (100, 0)  # bad input changes nothing
    assert await db.fetchval("SELECT safety_stock FROM items WHERE sku = $1", SKU) == 0


async def test_short_stock_holds_nothing_and_names_every_short_item(stub, db, admin_metadata):
    plenty, short_1, short_2 = unique(), unique(), unique()
    await stock_item(stub, admin_metadata, plenty, 100)
    await stock_item(stub, admin_metadata, short_1, 2)
    await stock_item(stub, admin_metadata, short_2, 0, location="WH9")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Reserve(stock_pb2.ReserveRequest(
            order_id="o", lines=[line(plenty, 5), line(short_1, 3), line(short_2, 1, "WH9")]))
    error = caught.value
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    found = {(i.sku, i.location, i.requested, i.available) for i in short_items(error)}
    assert found == {(short_1, "", 3, 2), (short_2, "WH9", 1, 0)}
    assert short_1 in error.details() and short_2 in error.details()
    assert (await level(stub, plenty)).reserved == 0
    assert tuple(await item_row(db, plenty)) == (100, 0)


async def test_lines_of_the_same_item_are_summed_before_the_check(stub, db, admin_metadata):
    sku = unique()
    await stock_item(stub, admin_metadata, sku, 4)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Reserve(stock_pb2.ReserveRequest(
            order_id="o", lines=[line(sku, 2), line(sku, 3)]))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert {(i.sku, i.requested, i.available) for i in short_items(caught.value)} == {
        (sku, 5, 4)}
    reservation = await stub.Reserve(stock_pb2.ReserveRequest(
        order_id="o", lines=[line(sku, 1), line(sku, 3)]))
    assert reservation.status == stock_pb2.RESERVATION_STATUS_ACTIVE
    assert tuple(await item_row(db, sku)) == (4, 4)


async def test_idempotent_retry_returns_the_same_reservation(stub, db, admin_metadata):
    sku, request_id = unique(), unique("req")
    await stock_item(stub, admin_metadata, sku, 10)
    request = stock_pb2.ReserveRequest(request_id=request_id, order_id="o", lines=[line(sku, 2)])
    first = await stub.Reserve(request)
    second = await stub.Reserve(request)
    assert second == first
    assert tuple(await item_row(db, sku)) == (10, 2)
    stored = await db.fetchval("SELECT count(*) FROM idempotency WHERE request_id = $1",
                               request_id)
    assert stored == 1

    different = stock_pb2.ReserveRequest(request_id=request_id, order_id="o", lines=[line(sku, 3)])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Reserve(different)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert tuple(await item_row(db, sku)) == (10, 2)


async def test_refused_request_is_decided_afresh_on_retry(stub, admin_metadata):
    sku, request_id = unique(), unique("req")
    await stock_item(stub, admin_metadata, sku, 1)
    request = stock_pb2.ReserveRequest(request_id=request_id, order_id="o", lines=[line(sku, 2)])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Reserve(request)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await stock_item(stub, admin_metadata, sku, 2)
    held = await stub.Reserve(request)
    assert held.status == stock_pb2.RESERVATION_STATUS_ACTIVE


OPERATOR_CALLS = [
    ("Adjust", stock_pb2.AdjustRequest(sku="auth-sku", delta=5)),
    ("SetStock", stock_pb2.SetStockRequest(sku="auth-sku", on_hand=5)),
    ("SetSafetyStock", stock_pb2.SetSafetyStockRequest(sku="auth-sku", safety_stock=5)),
]


@pytest.mark.parametrize(("method", "request_message"), OPERATOR_CALLS)
@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer wrong"),),
                                      (("authorization", "wrong"),)],
                         ids=["missing", "wrong-token", "not-bearer"])
async def test_operator_calls_need_the_token(stub, db, method, request_message, metadata):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(stub, method)(request_message, metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await item_row(db, "auth-sku") is None


async def test_operator_calls_pass_with_the_token(stub, admin_metadata):
    done = await stub.Adjust(stock_pb2.AdjustRequest(sku=unique(), delta=5),
                             metadata=admin_metadata)
    assert done.level.on_hand == 5


async def test_many_short_items_still_reach_the_client(stub, admin_metadata):
    skus = [unique() for _ in range(LINES_PER_REQUEST_MAX)]
    for sku in skus:
        await stock_item(stub, admin_metadata, sku, 0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Reserve(stock_pb2.ReserveRequest(order_id="o",
                                                    lines=[line(sku, 1) for sku in skus]))
    error = caught.value
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"short stock on {len(skus)} item(s)" in error.details()
    first = short_items(error)
    # The trailers are bounded: the first items arrive, with their numbers.
    assert 10 <= len(first) < len(skus)
    assert [(i.sku, i.requested, i.available) for i in first] == \
        [(sku, 1, 0) for sku in skus[:len(first)]]
