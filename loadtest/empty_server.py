"""The Python gRPC floor: the service's API answered from dictionaries, with no I/O.

Whatever this server reaches is the most any Python grpc.aio front can reach on this machine;
the benchmark compares the real service to it. It keeps the API's rules that cost nothing
(all-or-nothing holds, short-stock refusals naming every short item, idempotent request ids,
commit/release states) so that it doubles as an in-process fake for client tests. It has no
expiry sweeper, no persistence and no authentication.

Run: python -m loadtest.empty_server --listen 127.0.0.1:50061
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import time

import grpc
import uvloop
from google.protobuf import any_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status

from service.config import Config
from service.front import Front
from service.gen.stock.v1 import stock_pb2, stock_pb2_grpc

# Remembered request ids are bounded like the engine's idempotency store; the fake forgets all
# of them at once because it only has to stay bounded, not fair.
IDEMPOTENCY_RECORDS_MAX = 1_000_000
BATCH_REQUESTS_MAX = 1_000
TTL_MS_DEFAULT = 900_000
# As many gRPC servers on the port as the service runs by default (STOCK_GRPC_ACCEPTORS).
ACCEPTORS_DEFAULT = Config.grpc_acceptors
# Every reservation this fake makes stays in a dictionary as a protobuf object: a state the
# service keeps in Rust, out of the garbage collector's sight. Left to the collector, it made
# every full collection walk all of it (pauses of 8 ms growing to 142 ms within 4 runs of 6 s
# at 4,216 calls/s), which is this fake's cost, not the Python gRPC floor's. So what has
# survived so far is frozen (`gc.freeze`, as the service freezes its start-up state) this
# often, and collections only walk what is younger.
FREEZE_INTERVAL_S = 0.5
STATUS = stock_pb2.ReservationStatus
ItemKey = tuple[str, str]


class Refusal(Exception):
    """An operating refusal: becomes a gRPC status (single call) or a BatchError (batch)."""

    def __init__(self, code: grpc.StatusCode, message: str, short_items=()):
        super().__init__(message)
        self.code = code
        self.message = message
        self.short_items = list(short_items)

    def batch_error(self) -> stock_pb2.BatchError:
        return stock_pb2.BatchError(
            code=self.code.value[0], message=self.message, short_items=self.short_items
        )

    def rich_status(self) -> grpc.Status:
        details = []
        for item in self.short_items:
            packed = any_pb2.Any()
            packed.Pack(item)
            details.append(packed)
        proto = status_pb2.Status(code=self.code.value[0], message=self.message, details=details)
        return rpc_status.to_status(proto)


class MemoryStock:
    """Items and reservations in dictionaries; every operation is a few dictionary look-ups."""

    def __init__(self) -> None:
        self.items: dict[ItemKey, list[int]] = {}  # key -> [on_hand, reserved]
        self.reservations: dict[str, stock_pb2.Reservation] = {}
        self.replies: dict[str, object] = {}
        self._ids = itertools.count(1)

    def _remembered(self, request_id: str):
        return self.replies.get(request_id) if request_id else None

    def _remember(self, request_id: str, reply) -> None:
        if not request_id:
            return
        if len(self.replies) >= IDEMPOTENCY_RECORDS_MAX:
            self.replies.clear()
        self.replies[request_id] = reply

    def reserve(self, request: stock_pb2.ReserveRequest) -> stock_pb2.Reservation:
        if not request.lines:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "lines: at least one line")
        remembered = self._remembered(request.request_id)
        if remembered is not None:
            return remembered
        short = []
        for line in request.lines:
            if line.quantity <= 0:
                raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "quantity must be positive")
            item = self.items.get((line.sku, line.location))
            if item is None:
                raise Refusal(grpc.StatusCode.NOT_FOUND, f"unknown item {line.sku!r}")
            available = item[0] - item[1]
            if available < line.quantity:
                short.append(stock_pb2.ShortItem(sku=line.sku, location=line.location,
                                                 requested=line.quantity, available=available))
        if short:
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION, "short stock", short)
        for line in request.lines:
            self.items[(line.sku, line.location)][1] += line.quantity
        ttl_ms = request.ttl_ms or TTL_MS_DEFAULT
        reservation = stock_pb2.Reservation(
            reservation_id=f"r{next(self._ids)}", order_id=request.order_id,
            status=STATUS.RESERVATION_STATUS_ACTIVE, lines=request.lines)
        reservation.expires_at.FromMilliseconds(int(time.time() * 1000) + ttl_ms)
        self.reservations[reservation.reservation_id] = reservation
        self._remember(request.request_id, reservation)
        return reservation

    def _find(self, reservation_id: str) -> stock_pb2.Reservation:
        reservation = self.reservations.get(reservation_id)
        if reservation is None:
            raise Refusal(grpc.StatusCode.NOT_FOUND, f"unknown reservation {reservation_id!r}")
        return reservation

    def commit(self, request: stock_pb2.CommitRequest) -> stock_pb2.Reservation:
        reservation = self._find(request.reservation_id)
        if reservation.status == STATUS.RESERVATION_STATUS_COMMITTED:
            return reservation
        if reservation.status != STATUS.RESERVATION_STATUS_ACTIVE:
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION, "reservation is not active")
        wanted = {(line.sku, line.location): line.quantity for line in request.lines}
        for line in reservation.lines:
            quantity = wanted.get((line.sku, line.location), 0) if wanted else line.quantity
            if quantity > line.quantity:
                raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "commit above what is held")
        for line in reservation.lines:
            quantity = wanted.get((line.sku, line.location), 0) if wanted else line.quantity
            item = self.items[(line.sku, line.location)]
            item[0] -= quantity
            item[1] -= line.quantity
            reservation.committed_lines.add(sku=line.sku, location=line.location,
                                            quantity=quantity)
        reservation.status = STATUS.RESERVATION_STATUS_COMMITTED
        return reservation

    def release(self, request: stock_pb2.ReleaseRequest) -> stock_pb2.Reservation:
        reservation = self._find(request.reservation_id)
        if reservation.status == STATUS.RESERVATION_STATUS_COMMITTED:
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION, "reservation is committed")
        if reservation.status == STATUS.RESERVATION_STATUS_ACTIVE:
            for line in reservation.lines:
                self.items[(line.sku, line.location)][1] -= line.quantity
            reservation.status = STATUS.RESERVATION_STATUS_RELEASED
        return reservation

    def level(self, key: ItemKey) -> stock_pb2.StockLevel:
        on_hand, reserved = self.items[key]
        return stock_pb2.StockLevel(sku=key[0], location=key[1], on_hand=on_hand,
                                    reserved=reserved, available=on_hand - reserved)

    def set_stock(self, request: stock_pb2.SetStockRequest) -> stock_pb2.AdjustResponse:
        key = (request.sku, request.location)
        item = self.items.setdefault(key, [0, 0])
        if request.HasField("expected_on_hand") and request.expected_on_hand != item[0]:
            raise Refusal(grpc.StatusCode.ABORTED, "expected on hand differs")
        if request.on_hand < item[1]:
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION, "on hand below reserved")
        item[0] = request.on_hand
        return stock_pb2.AdjustResponse(level=self.level(key))

    def adjust(self, request: stock_pb2.AdjustRequest) -> stock_pb2.AdjustResponse:
        key = (request.sku, request.location)
        item = self.items.setdefault(key, [0, 0])
        if item[0] + request.delta < item[1]:
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION, "on hand below reserved")
        item[0] += request.delta
        return stock_pb2.AdjustResponse(level=self.level(key))

    def get_stock(self, request: stock_pb2.GetStockRequest) -> stock_pb2.GetStockResponse:
        keys = [(sku, request.location) for sku in request.skus]
        return stock_pb2.GetStockResponse(levels=[self.level(k) for k in keys if k in self.items])


def batch_results(operation, requests) -> list[stock_pb2.ReservationResult]:
    """Applies `operation` to each request in order, each succeeding or failing on its own."""
    results = []
    for request in requests:
        try:
            results.append(stock_pb2.ReservationResult(reservation=operation(request)))
        except Refusal as refusal:
            results.append(stock_pb2.ReservationResult(error=refusal.batch_error()))
    return results


class EmptyStockServicer(stock_pb2_grpc.StockServiceServicer):
    def __init__(self, stock: MemoryStock | None = None) -> None:
        self.stock = stock or MemoryStock()

    async def _answer(self, operation, request, context):
        try:
            return operation(request)
        except Refusal as refusal:
            await context.abort_with_status(refusal.rich_status())

    async def Reserve(self, request, context):
        return await self._answer(self.stock.reserve, request, context)

    async def Commit(self, request, context):
        return await self._answer(self.stock.commit, request, context)

    async def Release(self, request, context):
        return await self._answer(self.stock.release, request, context)

    async def GetReservation(self, request, context):
        return await self._answer(lambda r: self.stock._find(r.reservation_id), request, context)

    async def SetStock(self, request, context):
        return await self._answer(self.stock.set_stock, request, context)

    async def Adjust(self, request, context):
        return await self._answer(self.stock.adjust, request, context)

    async def GetStock(self, request, context):
        return self.stock.get_stock(request)

    async def _batch(self, operation, request, context, response_type):
        if not 1 <= len(request.requests) <= BATCH_REQUESTS_MAX:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "requests: 1 to 1,000")
        return response_type(results=batch_results(operation, request.requests))

    async def ReserveBatch(self, request, context):
        return await self._batch(self.stock.reserve, request, context,
                                 stock_pb2.ReserveBatchResponse)

    async def CommitBatch(self, request, context):
        return await self._batch(self.stock.commit, request, context,
                                 stock_pb2.ReservationBatchResponse)

    async def ReleaseBatch(self, request, context):
        return await self._batch(self.stock.release, request, context,
                                 stock_pb2.ReservationBatchResponse)


async def start(
    listen: str, servicer: stock_pb2_grpc.StockServiceServicer,
    acceptors: int = ACCEPTORS_DEFAULT, loop_nice: int = 0,
) -> tuple[Front, int]:
    """Starts the same gRPC front as the service's (`acceptors` servers on one port, the
    event loop thread at niceness `loop_nice`, as STOCK_LOOP_NICE sets the service's) for
    `servicer`; returns it and its port (port 0 picks one)."""
    front = Front(acceptors, lambda server: stock_pb2_grpc.add_StockServiceServicer_to_server(
        servicer, server))
    port = front.bind(listen)
    await front.start(loop_nice=loop_nice)
    return front, port


async def freeze_survivors() -> None:
    while True:
        gc.freeze()
        await asyncio.sleep(FREEZE_INTERVAL_S)


async def main(listen: str, acceptors: int, loop_nice: int) -> None:
    server, _ = await start(listen, EmptyStockServicer(), acceptors, loop_nice)
    print(f"empty_server listening on {listen}", flush=True)
    freezer = asyncio.create_task(freeze_survivors())
    await server.wait_for_termination()
    freezer.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:50061")
    parser.add_argument("--acceptors", type=int, default=ACCEPTORS_DEFAULT)
    parser.add_argument("--loop-nice", type=int, default=0,
                        help="niceness of the event loop thread (as STOCK_LOOP_NICE)")
    arguments = parser.parse_args()
    # The same event loop as the service (service/__main__.py): a fair front.
    uvloop.run(main(arguments.listen, arguments.acceptors, arguments.loop_nice))
