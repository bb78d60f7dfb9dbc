"""A small typed asyncio client for the stock API, with optional coalescing into batch calls.

    async with StockClient("127.0.0.1:50051", admin_token=token, coalesce=True) as client:
        reservation = await client.reserve("order-1", [Line("sku-1", 2)], ttl_ms=60_000)
        await client.commit(reservation.reservation_id)

Every failure is a `StockError` carrying the gRPC code, the message and, for short stock, every
short item (`ShortStock`, a subclass). With `coalesce=True`, concurrent reserve, commit and
release calls made from one process are gathered into ReserveBatch/CommitBatch/ReleaseBatch
calls, as TigerBeetle's clients do: a batch leaves when it holds `batch_size_max` operations,
when `linger_ms` has passed since its first one, or at once when a batch slot frees up; at most
`batches_in_flight_max` batches travel at a time and at most `operations_queued_max` operations
wait, further callers wait for room. Each caller still gets its own result or its own error.
Cancelling a caller does not recall an operation already sent.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from google.rpc import status_pb2

from service.gen.stock.v1 import stock_pb2, stock_pb2_grpc

BATCH_SIZE_MAX = 1_000  # the API's limit on operations per batch call
LINGER_MS_DEFAULT = 1.0
BATCHES_IN_FLIGHT_MAX_DEFAULT = 4
CALL_TIMEOUT_S_DEFAULT = 10.0
STATUS_DETAILS_KEY = "grpc-status-details-bin"

STATUS_NAMES = {
    stock_pb2.RESERVATION_STATUS_ACTIVE: "active",
    stock_pb2.RESERVATION_STATUS_COMMITTED: "committed",
    stock_pb2.RESERVATION_STATUS_RELEASED: "released",
    stock_pb2.RESERVATION_STATUS_EXPIRED: "expired",
}
CODES_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    location: str = ""


@dataclass(frozen=True)
class ShortItem:
    sku: str
    location: str
    requested: int
    available: int


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    order_id: str
    status: str  # "active" | "committed" | "released" | "expired"
    lines: tuple[Line, ...]
    committed_lines: tuple[Line, ...]
    expires_at_ms: int


@dataclass(frozen=True)
class StockLevel:
    sku: str
    location: str
    on_hand: int
    reserved: int
    available: int  # on_hand - reserved - safety_stock, at least 0
    safety_stock: int = 0  # last, with a default: code written before it still builds levels


class StockError(Exception):
    """A call (or one operation of a batch) failed with this gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str, short_items=()):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.short_items: tuple[ShortItem, ...] = tuple(short_items)


class ShortStock(StockError):
    """Not enough available stock; `short_items` names every short item."""


def make_error(code: grpc.StatusCode, message: str, short_items=()) -> StockError:
    short_items = tuple(short_items)
    error_type = ShortStock if short_items else StockError
    return error_type(code, message, short_items)


def short_item(proto: stock_pb2.ShortItem) -> ShortItem:
    return ShortItem(proto.sku, proto.location, proto.requested, proto.available)


def error_from_rpc(error: grpc.aio.AioRpcError) -> StockError:
    """The typed error of a failed call, with the short items packed in its rich status."""
    items = []
    for key, value in error.trailing_metadata() or ():
        if key != STATUS_DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(stock_pb2.ShortItem.DESCRIPTOR):
                unpacked = stock_pb2.ShortItem()
                detail.Unpack(unpacked)
                items.append(short_item(unpacked))
    return make_error(error.code(), error.details() or "", items)


def error_from_batch(error: stock_pb2.BatchError) -> StockError:
    code = CODES_BY_VALUE.get(error.code, grpc.StatusCode.UNKNOWN)
    return make_error(code, error.message, [short_item(i) for i in error.short_items])


def to_line(proto: stock_pb2.Line) -> Line:
    return Line(proto.sku, proto.quantity, proto.location)


def to_lines_proto(lines: Sequence[Line]) -> list[stock_pb2.Line]:
    return [stock_pb2.Line(sku=x.sku, quantity=x.quantity, location=x.location) for x in lines]


def to_reservation(proto: stock_pb2.Reservation) -> Reservation:
    return Reservation(
        reservation_id=proto.reservation_id, order_id=proto.order_id,
        status=STATUS_NAMES.get(proto.status, "unspecified"),
        lines=tuple(to_line(x) for x in proto.lines),
        committed_lines=tuple(to_line(x) for x in proto.committed_lines),
        expires_at_ms=proto.expires_at.ToMilliseconds())


def to_level(proto: stock_pb2.StockLevel) -> StockLevel:
    return StockLevel(proto.sku, proto.location, proto.on_hand, proto.reserved, proto.available,
                      proto.safety_stock)


def result_of(result: stock_pb2.ReservationResult) -> Reservation | StockError:
    if result.HasField("error"):
        return error_from_batch(result.error)
    return to_reservation(result.reservation)


BatchSender = Callable[[list], Awaitable[list[stock_pb2.ReservationResult]]]


class Admission:
    """At most `places` callers inside at once; the others wait, first come first in.

    Instead of asyncio.Semaphore, which in CPython 3.11 scans its waiters from the front on
    every release while the waiters it already woke stay at the front until they run: when a
    whole batch's callers leave at once with tens of thousands waiting, that is quadratic (one
    process, 50,000 buyers of one SKU through a client: 52 million checks, 5.6 of its 13 s of
    CPU). Here a leaving caller hands its place to the first waiter still waiting, in O(1).
    """

    def __init__(self, places: int) -> None:
        assert places >= 1, places
        self._free = places
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    async def enter(self) -> None:
        if self._free and not self._waiters:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # handed a place while being cancelled: it goes on to the next
            raise  # a waiter cancelled while waiting is skipped by `leave`

    def leave(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the place passes straight to it
                return
        self._free += 1


class Coalescer:
    """Gathers single operations of one kind into bounded batch calls.

    All state is touched only from the event loop thread, so no lock is needed.
    """

    def __init__(self, send_batch: BatchSender, *, batch_size_max: int, linger_ms: float,
                 batches_in_flight_max: int) -> None:
        assert 1 <= batch_size_max <= BATCH_SIZE_MAX, batch_size_max
        assert batches_in_flight_max >= 1 and linger_ms >= 0
        self._send_batch = send_batch
        self._batch_size_max = batch_size_max
        self._linger_s = linger_ms / 1_000.0
        self._batches_in_flight_max = batches_in_flight_max
        # Room for every batch in flight plus one filling: beyond it callers wait.
        self._room = Admission(batch_size_max * (batches_in_flight_max + 1))
        self._pending: list[tuple[object, asyncio.Future]] = []
        self._batches_in_flight = 0
        self._linger: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()

    async def submit(self, request) -> Reservation:
        await self._room.enter()
        try:
            future = asyncio.get_running_loop().create_future()
            self._pending.append((request, future))
            self._dispatch(full_only=True)
            return await future
        finally:
            self._room.leave()

    def _dispatch(self, *, full_only: bool) -> None:
        """Sends batches while slots are free: full ones always, partial ones if not full_only."""
        while self._pending and self._batches_in_flight < self._batches_in_flight_max:
            if full_only and len(self._pending) < self._batch_size_max:
                break
            batch = self._pending[: self._batch_size_max]
            del self._pending[: self._batch_size_max]
            self._batches_in_flight += 1
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._pending and self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(self._linger_s, self._on_linger)

    def _on_linger(self) -> None:
        self._linger = None
        self._dispatch(full_only=False)

    async def _send(self, batch: list[tuple[object, asyncio.Future]]) -> None:
        try:
            results = await self._send_batch([request for request, _ in batch])
            if len(results) != len(batch):
                raise StockError(grpc.StatusCode.INTERNAL,
                                 f"batch of {len(batch)} answered with {len(results)} results")
            for (_, future), result in zip(batch, results, strict=True):
                settle(future, result_of(result))
        except grpc.aio.AioRpcError as error:
            failure = error_from_rpc(error)
            for _, future in batch:
                settle(future, failure)
        except StockError as failure:
            for _, future in batch:
                settle(future, failure)
        finally:
            self._batches_in_flight -= 1
            # A slot is free: whatever gathered meanwhile leaves now (TigerBeetle's rhythm).
            self._dispatch(full_only=False)

    async def close(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self._dispatch(full_only=False)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def settle(future: asyncio.Future, outcome: Reservation | StockError) -> None:
    if future.done():  # the caller was cancelled; the operation itself was still applied
        return
    if isinstance(outcome, StockError):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class StockClient:
    """The API as typed coroutines; see the module docstring."""

    def __init__(self, target: str, *, admin_token: str = "", coalesce: bool = False,
                 batch_size_max: int = BATCH_SIZE_MAX, linger_ms: float = LINGER_MS_DEFAULT,
                 batches_in_flight_max: int = BATCHES_IN_FLIGHT_MAX_DEFAULT,
                 timeout_s: float = CALL_TIMEOUT_S_DEFAULT) -> None:
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = stock_pb2_grpc.StockServiceStub(self._channel)
        self._operator_metadata = (("authorization", f"Bearer {admin_token}"),)
        self._timeout_s = timeout_s
        self._coalescers: dict[str, Coalescer] = {}
        if coalesce:
            options = dict(batch_size_max=batch_size_max, linger_ms=linger_ms,
                           batches_in_flight_max=batches_in_flight_max)
            self._coalescers = {
                "reserve": Coalescer(self._reserve_batch, **options),
                "commit": Coalescer(self._commit_batch, **options),
                "release": Coalescer(self._release_batch, **options),
            }

    async def __aenter__(self) -> StockClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def close(self) -> None:
        """Waits for batches already gathered, then closes the channel."""
        for coalescer in self._coalescers.values():
            await coalescer.close()
        await self._channel.close()

    async def _call(self, method, request, *, operator: bool = False):
        metadata = self._operator_metadata if operator else None
        try:
            return await method(request, timeout=self._timeout_s, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error) from None

    async def _single_or_coalesced(self, kind: str, method, request) -> Reservation:
        coalescer = self._coalescers.get(kind)
        if coalescer is not None:
            return await coalescer.submit(request)
        return to_reservation(await self._call(method, request))

    async def reserve(self, order_id: str, lines: Sequence[Line], *, ttl_ms: int = 0,
                      request_id: str = "") -> Reservation:
        request = stock_pb2.ReserveRequest(request_id=request_id, order_id=order_id,
                                           lines=to_lines_proto(lines), ttl_ms=ttl_ms)
        return await self._single_or_coalesced("reserve", self._stub.Reserve, request)

    async def commit(self, reservation_id: str, lines: Sequence[Line] | None = None, *,
                     request_id: str = "") -> Reservation:
        request = stock_pb2.CommitRequest(reservation_id=reservation_id, request_id=request_id,
                                          lines=to_lines_proto(lines or ()))
        return await self._single_or_coalesced("commit", self._stub.Commit, request)

    async def release(self, reservation_id: str, *, request_id: str = "") -> Reservation:
        request = stock_pb2.ReleaseRequest(reservation_id=reservation_id, request_id=request_id)
        return await self._single_or_coalesced("release", self._stub.Release, request)

    async def extend(self, reservation_id: str, ttl_ms: int) -> Reservation:
        request = stock_pb2.ExtendRequest(reservation_id=reservation_id, ttl_ms=ttl_ms)
        return to_reservation(await self._call(self._stub.Extend, request))

    async def get_reservation(self, reservation_id: str) -> Reservation:
        request = stock_pb2.GetReservationRequest(reservation_id=reservation_id)
        return to_reservation(await self._call(self._stub.GetReservation, request))

    async def get_stock(self, skus: Sequence[str], location: str = "") -> list[StockLevel]:
        request = stock_pb2.GetStockRequest(skus=list(skus), location=location)
        response = await self._call(self._stub.GetStock, request)
        return [to_level(level) for level in response.levels]

    async def decrement(self, lines: Sequence[Line], *, order_id: str = "",
                        request_id: str = "") -> list[StockLevel]:
        request = stock_pb2.DecrementRequest(request_id=request_id, order_id=order_id,
                                             lines=to_lines_proto(lines))
        response = await self._call(self._stub.Decrement, request)
        return [to_level(level) for level in response.levels]

    async def adjust(self, sku: str, delta: int, *, location: str = "", reason: str = "",
                     request_id: str = "") -> StockLevel:
        request = stock_pb2.AdjustRequest(request_id=request_id, sku=sku, location=location,
                                          delta=delta, reason=reason)
        return to_level((await self._call(self._stub.Adjust, request, operator=True)).level)

    async def set_stock(self, sku: str, on_hand: int, *, location: str = "",
                        expected_on_hand: int | None = None, reason: str = "",
                        request_id: str = "") -> StockLevel:
        request = stock_pb2.SetStockRequest(request_id=request_id, sku=sku, location=location,
                                            on_hand=on_hand, expected_on_hand=expected_on_hand,
                                            reason=reason)
        return to_level((await self._call(self._stub.SetStock, request, operator=True)).level)

    async def set_safety_stock(self, sku: str, safety_stock: int, *, location: str = "",
                               reason: str = "", request_id: str = "") -> StockLevel:
        """Keeps `safety_stock` units of the item back from sale (0: none)."""
        request = stock_pb2.SetSafetyStockRequest(request_id=request_id, sku=sku,
                                                  location=location, safety_stock=safety_stock,
                                                  reason=reason)
        call = self._stub.SetSafetyStock
        return to_level((await self._call(call, request, operator=True)).level)

    async def reserve_batch(self, requests: Sequence[stock_pb2.ReserveRequest]
                            ) -> list[Reservation | StockError]:
        """One ReserveBatch call (1 to 1,000 requests): each result or error in order."""
        return await self._explicit_batch(self._reserve_batch, requests)

    async def commit_batch(self, requests: Sequence[stock_pb2.CommitRequest]
                           ) -> list[Reservation | StockError]:
        return await self._explicit_batch(self._commit_batch, requests)

    async def release_batch(self, requests: Sequence[stock_pb2.ReleaseRequest]
                            ) -> list[Reservation | StockError]:
        return await self._explicit_batch(self._release_batch, requests)

    async def _explicit_batch(self, send: BatchSender, requests: Sequence
                              ) -> list[Reservation | StockError]:
        try:
            return [result_of(result) for result in await send(list(requests))]
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error) from None

    async def _reserve_batch(self, requests: list) -> list[stock_pb2.ReservationResult]:
        request = stock_pb2.ReserveBatchRequest(requests=requests)
        return list((await self._raw(self._stub.ReserveBatch, request)).results)

    async def _commit_batch(self, requests: list) -> list[stock_pb2.ReservationResult]:
        request = stock_pb2.CommitBatchRequest(requests=requests)
        return list((await self._raw(self._stub.CommitBatch, request)).results)

    async def _release_batch(self, requests: list) -> list[stock_pb2.ReservationResult]:
        request = stock_pb2.ReleaseBatchRequest(requests=requests)
        return list((await self._raw(self._stub.ReleaseBatch, request)).results)

    async def _raw(self, method, request):
        """A call whose AioRpcError is left to the caller (the coalescer fans it out)."""
        assert 1 <= len(request.requests) <= BATCH_SIZE_MAX, len(request.requests)
        return await method(request, timeout=self._timeout_s)
