"""StockService: proto in, engine call, wait for the group commit, proto out. No SQL here.

Every handler follows the same steps: validate at the edge (bad input changes nothing), take
the live engine (UNAVAILABLE while it is being rebuilt), call it with the wall clock, wait until
the result's LSN is durable in PostgreSQL (so OK always means committed), convert. Failures of
any step go through service/errors.py. Reservations the engine no longer keeps in memory are
looked up in PostgreSQL.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import grpc

from service import engine as engine_module
from service import errors, metrics, validation
from service.auth import OperatorAuth
from service.committer import Committer
from service.engine import EngineError
from service.gen.stock.v1 import stock_pb2, stock_pb2_grpc
from service.persistence import Persistence
from service.recovery import now_ms

log = logging.getLogger(__name__)

STATUS = {
    "active": stock_pb2.RESERVATION_STATUS_ACTIVE,
    "committed": stock_pb2.RESERVATION_STATUS_COMMITTED,
    "released": stock_pb2.RESERVATION_STATUS_RELEASED,
    "expired": stock_pb2.RESERVATION_STATUS_EXPIRED,
}
ACTOR_METADATA_KEY = "x-stock-actor"
# The calls whose request and answer cross the boundary as protobuf bytes: the engine module
# decodes and encodes them (core_rs/src/wire.rs), Python touches one bytes object per call
# (`add_to_server` registers them without (de)serializers).
WIRE_METHODS = frozenset({"Reserve", "Commit", "Release", "ReserveBatch", "CommitBatch",
                          "ReleaseBatch"})
# The single calls on the wire: their request message, and the validation.py check that names
# a refused request's bad field.
WIRE_CALL_REQUESTS = {"reserve": (stock_pb2.ReserveRequest, validation.reserve),
                      "commit": (stock_pb2.CommitRequest, validation.commit),
                      "release": (stock_pb2.ReleaseRequest, validation.release)}
# Who an operator change is booked to when the caller does not name itself.
ACTOR_DEFAULT = "admin-token"
# Stored states in which a repeated operation returns the reservation unchanged.
REPEATABLE_IN = {"commit": {"committed"}, "release": {"released", "expired"},
                 "get": set(STATUS), "extend": set()}


def rpc(handler: Callable) -> Callable:
    """Turns any failure of a handler into its status (service/errors.py decides which) and
    records every call's outcome and latency. One wrapper instead of gRPC interceptors:
    grpc.aio runs each interceptor on every call, which cost 15-20% of per-call throughput
    (measured, see service/auth.py)."""
    observer = metrics.CallObserver(handler.__name__)

    @functools.wraps(handler)
    async def guarded(self, request, context: grpc.aio.ServicerContext):
        started = observer.started()
        code = grpc.StatusCode.OK
        try:
            self._admit()
            try:
                return await handler(self, request, context)
            finally:
                self._inflight -= 1
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except Exception as exc:
            try:
                await errors.abort(context, exc)
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
        except BaseException:  # cancelled by the client or its deadline
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            observer.finished(started, code)

    return guarded


def new_reservation_id() -> str:
    """A new time-ordered reservation id (made by the engine module: core_rs/src/wire.rs)."""
    return engine_module.new_reservation_id(now_ms())


MILLISECONDS_PER_SECOND = 1_000
NANOSECONDS_PER_MILLISECOND = 1_000_000


def fill_reservation(target: stock_pb2.Reservation, view) -> None:
    """Writes a view into an (empty) Reservation in place. Filling sub-messages where they
    lie (`add()`, nested fields) costs about a third of building each as its own message and
    copying it into the parent (measured on 1,000-reservation batch answers)."""
    target.reservation_id = view.reservation_id
    target.order_id = view.order_id
    target.status = STATUS[view.status]
    add_line = target.lines.add
    for sku, location, quantity in view.lines:
        add_line(sku=sku, location=location, quantity=quantity)
    expires_at_ms = view.expires_at_ms
    expires_at = target.expires_at
    expires_at.seconds, milliseconds = divmod(expires_at_ms, MILLISECONDS_PER_SECOND)
    expires_at.nanos = milliseconds * NANOSECONDS_PER_MILLISECOND
    if view.committed_lines:
        add_committed = target.committed_lines.add
        for sku, location, quantity in view.committed_lines:
            add_committed(sku=sku, location=location, quantity=quantity)


def reservation_proto(view) -> stock_pb2.Reservation:
    reservation = stock_pb2.Reservation()
    fill_reservation(reservation, view)
    return reservation


def level_proto(level: tuple) -> stock_pb2.StockLevel:
    sku, location, on_hand, reserved, available, safety_stock = level
    return stock_pb2.StockLevel(sku=sku, location=location, on_hand=on_hand, reserved=reserved,
                                available=available, safety_stock=safety_stock)


def actor_of(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_METADATA_KEY:
            return validation.actor(value if isinstance(value, str) else value.decode())
    return ACTOR_DEFAULT


def is_unknown_reservation(outcome) -> bool:
    return isinstance(outcome, EngineError) and outcome.code == "unknown_reservation"


def may_be_stored(operation: str, refusal) -> bool:
    """Whether the refusal is for a reservation the engine no longer holds, by an operation
    that PostgreSQL's copy can answer (`StockServicer._stored`)."""
    return operation in REPEATABLE_IN and is_unknown_reservation(refusal)


class StockServicer(stock_pb2_grpc.StockServiceServicer):
    def __init__(self, committer: Committer, persistence: Persistence, auth: OperatorAuth,
                 inflight_calls_max: int):
        self._committer = committer
        self._persistence = persistence
        self._auth = auth
        # One bound for the process: gRPC's own (maximum_concurrent_rpcs) is per server, and
        # the front runs several (service/front.py).
        self._inflight_calls_max = inflight_calls_max
        self._inflight = 0
        # Read when scraped, not set on every call.
        metrics.INFLIGHT.set_function(lambda: self._inflight)

    def _admit(self) -> None:
        """Counts a call in flight (the one count: the `stock_requests_inflight` gauge reads
        it); beyond the bound the call is refused at once. The caller decrements
        `_inflight` when the call ends (`rpc`: a plain try/finally, cheaper per call than a
        context manager)."""
        if self._inflight >= self._inflight_calls_max:
            raise errors.Overloaded(
                f"more than STOCK_INFLIGHT_CALLS_MAX={self._inflight_calls_max} calls in "
                "flight; retry later")
        self._inflight += 1

    async def _stored(self, reservation_id: str, operation: str, missing: EngineError):
        """A reservation the engine no longer holds, from PostgreSQL (already durable)."""
        try:
            stored = await self._persistence.find_reservation(reservation_id)
        except Exception as exc:
            log.warning("reservation look-up failed: %r", exc)
            raise errors.Unavailable("PostgreSQL unreachable; retry") from exc
        if stored is None:
            raise missing
        if stored.status not in REPEATABLE_IN[operation]:
            raise errors.StoredWrongState(reservation_id, stored.status, operation)
        return stored

    async def _apply(self, call: Callable):
        """Runs one engine call and returns its result once durable. A refusal is answered
        once everything journaled before it is durable too: it may rest on a change not yet
        written (the hold that took the last unit), and must not outlive that change."""
        engine, generation = self._committer.engine()
        try:
            result = call(engine)
        except EngineError:
            await self._committer.wait_durable(engine.lsn_last(), generation)
            raise
        await self._committer.wait_durable(result.lsn, generation)
        return result

    async def _with_fallback(self, operation: str, call: Callable):
        try:
            return await self._apply(call)
        except EngineError as exc:
            return await self._refused(operation, exc)

    async def _refused(self, operation: str, refusal: EngineError):
        """Raises the engine's refusal, except that a reservation the engine no longer holds
        is answered from PostgreSQL (`_stored`) for the operations that may find it there."""
        if may_be_stored(operation, refusal):
            return await self._stored(refusal.reservation_id, operation, refusal)
        raise refusal

    @rpc
    async def Reserve(self, request: bytes, context) -> bytes:
        return await self._wire_call(request, "reserve")

    @rpc
    async def Commit(self, request: bytes, context) -> bytes:
        return await self._wire_call(request, "commit")

    @rpc
    async def Release(self, request: bytes, context) -> bytes:
        return await self._wire_call(request, "release")

    @rpc
    async def Extend(self, request, context):
        reservation_id, ttl_ms = validation.extend(request)
        view = await self._with_fallback("extend", lambda engine: engine.extend(
            reservation_id, ttl_ms, now_ms()))
        return reservation_proto(view)

    @rpc
    async def GetReservation(self, request, context):
        reservation_id = validation.identifier(request.reservation_id, "reservation_id")
        view = await self._with_fallback("get", lambda engine:
                                         engine.get_reservation(reservation_id, now_ms()))
        return reservation_proto(view)

    @rpc
    async def Decrement(self, request, context):
        request_id, lines, order_id = validation.decrement(request)
        view = await self._apply(lambda engine: engine.decrement(
            lines, now_ms(), order_id=order_id, request_id=request_id))
        return stock_pb2.DecrementResponse(levels=[level_proto(level) for level in view.levels])

    @rpc
    async def Adjust(self, request, context):
        self._auth.check(context)
        request_id, sku, location, delta, reason = validation.adjust(request)
        actor = actor_of(context)
        view = await self._apply(lambda engine: engine.adjust(
            sku, location, delta, now_ms(), reason=reason, actor=actor, request_id=request_id))
        return stock_pb2.AdjustResponse(level=level_proto(view.levels[0]))

    @rpc
    async def SetStock(self, request, context):
        self._auth.check(context)
        request_id, sku, location, on_hand, expected, reason = validation.set_stock(request)
        actor = actor_of(context)
        view = await self._apply(lambda engine: engine.set_stock(
            sku, location, on_hand, expected, now_ms(), reason=reason, actor=actor,
            request_id=request_id))
        return stock_pb2.AdjustResponse(level=level_proto(view.levels[0]))

    @rpc
    async def SetSafetyStock(self, request, context):
        self._auth.check(context)
        request_id, sku, location, safety_stock, reason = validation.set_safety_stock(request)
        actor = actor_of(context)
        view = await self._apply(lambda engine: engine.set_safety_stock(
            sku, location, safety_stock, now_ms(), reason=reason, actor=actor,
            request_id=request_id))
        return stock_pb2.AdjustResponse(level=level_proto(view.levels[0]))

    @rpc
    async def GetStock(self, request, context):
        skus, location = validation.get_stock(request)
        view = await self._apply(lambda engine: engine.get_stock(skus, location, now_ms()))
        return stock_pb2.GetStockResponse(levels=[level_proto(level) for level in view.levels])

    # --- batch calls: each request succeeds or fails on its own -----------------------------

    @rpc
    async def ReserveBatch(self, request: bytes, context) -> bytes:
        return await self._wire_batch(request, "reserve")

    @rpc
    async def CommitBatch(self, request: bytes, context) -> bytes:
        return await self._wire_batch(request, "commit")

    @rpc
    async def ReleaseBatch(self, request: bytes, context) -> bytes:
        return await self._wire_batch(request, "release")

    async def _wire_call(self, request: bytes, operation: str) -> bytes:
        """One Reserve, Commit or Release on the wire (`Engine.call_wire`): no request or
        answer object is built in Python (6.0 us per Reserve through the binding with them,
        1.6 us without). A refusal waits for what it may rest on (as in `_apply`) and is
        answered as before: a field error of the request as validation.py names it, else the
        engine's refusal, except that a reservation the engine no longer holds is looked up
        in PostgreSQL (`_stored`)."""
        engine, generation = self._committer.engine()
        (part,), lsn = engine.call_wire(operation, request, now_ms())
        await self._committer.wait_durable(lsn, generation)
        if isinstance(part, bytes):
            return part
        message, validate = WIRE_CALL_REQUESTS[operation]
        validate(message.FromString(request))
        return reservation_proto(await self._refused(operation, part)).SerializeToString()

    async def _wire_batch(self, request: bytes, operation: str) -> bytes:
        """Runs a batch call's request bytes in one engine call (each request on its own, in
        order), waits for one group commit covering all of them (refusals included, as in
        `_apply`), and answers the response bytes: the engine's encoded results, with each
        refused request's BatchError (encoded here: one error model, service/errors.py) in
        its place. A reservation the engine no longer holds (commit, release) is looked up in
        PostgreSQL."""
        engine, generation = self._committer.engine()
        parts, lsn = engine.batch_wire(operation, request, now_ms())
        await self._committer.wait_durable(lsn, generation)
        pieces = []
        for part in parts:
            if isinstance(part, bytes):
                pieces.append(part)
                continue
            outcome = part
            if may_be_stored(operation, part):
                try:
                    outcome = await self._stored(part.reservation_id, operation, part)
                except (EngineError, errors.StoredWrongState) as exc:
                    outcome = exc
            pieces.append(result_bytes(outcome))
        return b"".join(pieces)


def result_bytes(outcome) -> bytes:
    """One ReservationResult as the `results` field of a batch response, in bytes (the two
    batch response messages encode it alike)."""
    response = stock_pb2.ReservationBatchResponse()
    fill_result(response.results.add(), outcome)
    return response.SerializeToString()


def add_to_server(servicer: StockServicer, server: grpc.aio.Server) -> None:
    """Registers every method of the proto's StockService, as the generated
    `add_StockServiceServicer_to_server` does, except that WIRE_METHODS get their request
    and answer as bytes."""
    service = stock_pb2.DESCRIPTOR.services_by_name["StockService"]
    handlers = {}
    for method in service.methods:
        wire = method.name in WIRE_METHODS
        request_type = getattr(stock_pb2, method.input_type.name)
        response_type = getattr(stock_pb2, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=None if wire else request_type.FromString,
            response_serializer=None if wire else response_type.SerializeToString)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


def fill_result(target: stock_pb2.ReservationResult, outcome) -> None:
    if isinstance(outcome, Exception):
        target.error.CopyFrom(errors.batch_error(outcome))
    else:
        fill_reservation(target.reservation, outcome)
