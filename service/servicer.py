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
import os
import time
from collections.abc import Callable

import grpc

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
# Random part of a reservation id (after 6 bytes of time).
RANDOM_ID_BYTES = 10
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
            return await handler(self, request, context)
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
    """48 bits of wall-clock milliseconds, then 80 random bits, as 32 hex characters (the
    layout of a UUIDv7, without its version bits). Unique and unguessable like a random id,
    but ids made later sort later, so PostgreSQL adds new reservations (and their lines) at
    the right edge of the primary-key indexes instead of on a random page of each (measured:
    inserting 100,000 reservation rows took 0.90 s with random ids, 0.36 s with time-ordered
    ones)."""
    milliseconds = time.time_ns() // NANOSECONDS_PER_MILLISECOND
    return f"{milliseconds:012x}{os.urandom(RANDOM_ID_BYTES).hex()}"


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
    sku, location, on_hand, reserved, available = level
    return stock_pb2.StockLevel(sku=sku, location=location, on_hand=on_hand, reserved=reserved,
                                available=available)


def actor_of(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_METADATA_KEY:
            return validation.actor(value if isinstance(value, str) else value.decode())
    return ACTOR_DEFAULT


def is_unknown_reservation(outcome) -> bool:
    return isinstance(outcome, EngineError) and outcome.code == "unknown_reservation"


class StockServicer(stock_pb2_grpc.StockServiceServicer):
    def __init__(self, committer: Committer, persistence: Persistence, auth: OperatorAuth):
        self._committer = committer
        self._persistence = persistence
        self._auth = auth

    async def _durable(self, result, generation: int):
        await self._committer.wait_durable(result.lsn, generation)
        return result

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
        return await self._durable(result, generation)

    async def _with_fallback(self, reservation_id: str, operation: str, call: Callable):
        try:
            return await self._apply(call)
        except EngineError as exc:
            if not is_unknown_reservation(exc):
                raise
            return await self._stored(reservation_id, operation, exc)

    @rpc
    async def Reserve(self, request, context):
        request_id, order_id, lines, ttl_ms = validation.reserve(request)
        view = await self._apply(lambda engine: engine.reserve(
            new_reservation_id(), order_id, lines, ttl_ms, now_ms(), request_id))
        return reservation_proto(view)

    @rpc
    async def Commit(self, request, context):
        reservation_id, request_id, lines = validation.commit(request)
        view = await self._with_fallback(reservation_id, "commit", lambda engine: engine.commit(
            reservation_id, lines, now_ms(), request_id))
        return reservation_proto(view)

    @rpc
    async def Release(self, request, context):
        reservation_id, request_id = validation.release(request)
        view = await self._with_fallback(reservation_id, "release", lambda engine: engine.release(
            reservation_id, now_ms(), request_id))
        return reservation_proto(view)

    @rpc
    async def Extend(self, request, context):
        reservation_id, ttl_ms = validation.extend(request)
        view = await self._with_fallback(reservation_id, "extend", lambda engine: engine.extend(
            reservation_id, ttl_ms, now_ms()))
        return reservation_proto(view)

    @rpc
    async def GetReservation(self, request, context):
        reservation_id = validation.identifier(request.reservation_id, "reservation_id")
        view = await self._with_fallback(reservation_id, "get", lambda engine:
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
    async def GetStock(self, request, context):
        skus, location = validation.get_stock(request)
        view = await self._apply(lambda engine: engine.get_stock(skus, location, now_ms()))
        return stock_pb2.GetStockResponse(levels=[level_proto(level) for level in view.levels])

    # --- batch calls: each request succeeds or fails on its own -----------------------------

    @rpc
    async def ReserveBatch(self, request, context):
        validation.batch_size(len(request.requests))
        validation.batch_lines(sum(len(each.lines) for each in request.requests))

        def prepare(each):
            request_id, order_id, lines, ttl_ms = validation.reserve(each)
            return (new_reservation_id(), order_id, lines, ttl_ms, request_id)

        response = stock_pb2.ReserveBatchResponse()
        await self._batch(request.requests, prepare, "reserve_batch", None, response.results)
        return response

    @rpc
    async def CommitBatch(self, request, context):
        validation.batch_size(len(request.requests))
        validation.batch_lines(sum(len(each.lines) for each in request.requests))

        def prepare(each):
            reservation_id, request_id, lines = validation.commit(each)
            return (reservation_id, lines, request_id)

        response = stock_pb2.ReservationBatchResponse()
        await self._batch(request.requests, prepare, "commit_batch", "commit", response.results)
        return response

    @rpc
    async def ReleaseBatch(self, request, context):
        validation.batch_size(len(request.requests))

        def prepare(each):
            reservation_id, request_id = validation.release(each)
            return (reservation_id, request_id)

        response = stock_pb2.ReservationBatchResponse()
        await self._batch(request.requests, prepare, "release_batch", "release", response.results)
        return response

    async def _batch(self, requests, prepare: Callable, method: str,
                     fallback_operation: str | None, results) -> None:
        """Validates each request, runs the valid ones in one engine call (in order), waits
        for one group commit covering all of them, and appends one result per request to
        `results` (the response's repeated ReservationResult field)."""
        outcomes: list = [None] * len(requests)
        prepared, positions = [], []
        for position, each in enumerate(requests):
            try:
                prepared.append(prepare(each))
                positions.append(position)
            except errors.InvalidArgument as exc:
                outcomes[position] = exc
        engine, generation = self._committer.engine()
        answers = getattr(engine, method)(prepared, now_ms()) if prepared else []
        assert len(answers) == len(prepared), "the engine answers every batch request"
        for position, answer in zip(positions, answers, strict=True):
            outcomes[position] = answer
        lsn = max((o.lsn for o in outcomes if not isinstance(o, Exception)), default=0)
        if any(isinstance(o, EngineError) for o in outcomes):
            lsn = max(lsn, engine.lsn_last())  # refusals too (see _apply)
        await self._committer.wait_durable(lsn, generation)
        if fallback_operation is not None:
            await self._resolve_unknown(requests, outcomes, fallback_operation)
        add_result = results.add
        for outcome in outcomes:
            fill_result(add_result(), outcome)

    async def _resolve_unknown(self, requests, outcomes: list, operation: str) -> None:
        for position, outcome in enumerate(outcomes):
            if is_unknown_reservation(outcome):
                try:
                    outcomes[position] = await self._stored(
                        requests[position].reservation_id, operation, outcome)
                except (EngineError, errors.StoredWrongState) as exc:
                    outcomes[position] = exc


def fill_result(target: stock_pb2.ReservationResult, outcome) -> None:
    if isinstance(outcome, Exception):
        target.error.CopyFrom(errors.batch_error(outcome))
    else:
        fill_reservation(target.reservation, outcome)
