"""Holds expire by themselves: stock comes back, PostgreSQL says EXPIRED."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from stock_helpers import item_row, level, line, stock_item, unique

from service.gen.stock.v1 import stock_pb2

TTL_MS = 1_000
# The sweeper runs at least every 250 ms; allow generous slack on a loaded machine.
EXPIRY_WAIT_S = 10.0


async def wait_for_status(db, reservation_id: str, status: str) -> None:
    deadline = time.monotonic() + EXPIRY_WAIT_S
    while time.monotonic() < deadline:
        found = await db.fetchval("SELECT status FROM reservations WHERE reservation_id = $1",
                                  reservation_id)
        if found == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"reservation {reservation_id} never became {status} in PostgreSQL")


async def test_short_ttl_hold_expires_and_stock_comes_back(stub, db, admin_metadata):
    sku = unique()
    await stock_item(stub, admin_metadata, sku, 3)
    held = await stub.Reserve(stock_pb2.ReserveRequest(order_id="o", lines=[line(sku, 3)],
                                                       ttl_ms=TTL_MS))
    assert (await level(stub, sku)).available == 0
    await wait_for_status(db, held.reservation_id, "expired")
    assert tuple(await item_row(db, sku)) == (3, 0)
    assert (await level(stub, sku)).available == 3
    fetched = await stub.GetReservation(
        stock_pb2.GetReservationRequest(reservation_id=held.reservation_id))
    assert fetched.status == stock_pb2.RESERVATION_STATUS_EXPIRED
    kinds = await db.fetch("SELECT kind FROM ledger WHERE sku = $1 ORDER BY id", sku)
    assert [row["kind"] for row in kinds] == ["set", "reserve", "expire"]

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Commit(stock_pb2.CommitRequest(reservation_id=held.reservation_id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    released = await stub.Release(stock_pb2.ReleaseRequest(reservation_id=held.reservation_id))
    assert released.status == stock_pb2.RESERVATION_STATUS_EXPIRED


async def test_extend_keeps_a_hold_alive(stub, admin_metadata):
    sku = unique()
    await stock_item(stub, admin_metadata, sku, 1)
    held = await stub.Reserve(stock_pb2.ReserveRequest(order_id="o", lines=[line(sku, 1)],
                                                       ttl_ms=TTL_MS))
    await stub.Extend(stock_pb2.ExtendRequest(reservation_id=held.reservation_id, ttl_ms=60_000))
    await asyncio.sleep(TTL_MS / 1000 + 0.5)
    fetched = await stub.GetReservation(
        stock_pb2.GetReservationRequest(reservation_id=held.reservation_id))
    assert fetched.status == stock_pb2.RESERVATION_STATUS_ACTIVE
    assert (await level(stub, sku)).available == 0
