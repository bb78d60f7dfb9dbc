"""Small helpers shared by the service tests: unique names, operator calls, status details."""

from __future__ import annotations

import uuid

import grpc
from google.rpc import error_details_pb2, status_pb2

from service.gen.stock.v1 import stock_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"


def unique(prefix: str = "sku") -> str:
    """Every test works on its own skus, so tests share one server without interfering."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def line(sku: str, quantity: int, location: str = "") -> stock_pb2.Line:
    return stock_pb2.Line(sku=sku, quantity=quantity, location=location)


async def stock_item(stub, metadata, sku: str, on_hand: int, location: str = "") -> None:
    await stub.SetStock(stock_pb2.SetStockRequest(sku=sku, location=location, on_hand=on_hand,
                                                  reason="test set-up"), metadata=metadata)


async def level(stub, sku: str, location: str = "") -> stock_pb2.StockLevel | None:
    response = await stub.GetStock(stock_pb2.GetStockRequest(skus=[sku], location=location))
    return response.levels[0] if response.levels else None


async def item_row(db, sku: str, location: str = ""):
    return await db.fetchrow("SELECT on_hand, reserved FROM items WHERE sku = $1 AND location = $2",
                             sku, location)


def rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    raise AssertionError(f"no status details in {error!r}")


def bad_request(error: grpc.aio.AioRpcError) -> error_details_pb2.BadRequest:
    for detail in rich_status(error).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            unpacked = error_details_pb2.BadRequest()
            detail.Unpack(unpacked)
            return unpacked
    raise AssertionError("no BadRequest detail")


def short_items(error: grpc.aio.AioRpcError) -> list[stock_pb2.ShortItem]:
    items = []
    for detail in rich_status(error).details:
        if detail.Is(stock_pb2.ShortItem.DESCRIPTOR):
            item = stock_pb2.ShortItem()
            detail.Unpack(item)
            items.append(item)
    return items

