"""THE table from failures to gRPC status codes, and how each failure is told to the client.

Engine errors are matched on their stable `.code` string; the service's own failures
(validation, unavailability, overload, authentication) are `ServiceError`s carrying a status
code. Single calls abort with the status (plus google.rpc details); batch calls put the same
code and message into a `BatchError`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from service.engine import EngineError
from service.gen.stock.v1 import stock_pb2

log = logging.getLogger(__name__)

# Engine error code -> gRPC status. The only place this decision is made.
ENGINE_CODES: dict[str, grpc.StatusCode] = {
    "limit_exceeded": grpc.StatusCode.INVALID_ARGUMENT,
    "invalid_request": grpc.StatusCode.INVALID_ARGUMENT,
    "short_stock": grpc.StatusCode.FAILED_PRECONDITION,
    "unknown_item": grpc.StatusCode.NOT_FOUND,
    "unknown_reservation": grpc.StatusCode.NOT_FOUND,
    "wrong_state": grpc.StatusCode.FAILED_PRECONDITION,
    "on_hand_below_reserved": grpc.StatusCode.FAILED_PRECONDITION,
    "expected_mismatch": grpc.StatusCode.ABORTED,
    "idempotency_conflict": grpc.StatusCode.ALREADY_EXISTS,
    "reservation_exists": grpc.StatusCode.ALREADY_EXISTS,
    "capacity_exceeded": grpc.StatusCode.RESOURCE_EXHAUSTED,
}

# Clients accept 8 KiB of trailing metadata by default; the status details travel there
# base64-encoded beside the message, so both are capped well below it. Batch results carry
# every short item in the response body instead, where no such limit applies.
DETAILS_BYTES_MAX = 4_000
MESSAGE_BYTES_MAX = 1_000
SHORT_ITEMS_IN_MESSAGE_MAX = 10


class ServiceError(Exception):
    """A failure decided by the service itself, with its status code."""

    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    """Bad input at the edge: names the field and the bound it broke."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field_path: str, description: str):
        super().__init__(f"{field_path}: {description}")
        self.field_path = field_path
        self.description = description


class Unavailable(ServiceError):
    """PostgreSQL cannot be written (or the engine is being rebuilt from it): retry later."""

    code = grpc.StatusCode.UNAVAILABLE


class Overloaded(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class StoredWrongState(ServiceError):
    """Wrong state of a reservation found only in PostgreSQL (same answer as the engine's)."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, reservation_id: str, status: str, operation: str):
        super().__init__(f"reservation {reservation_id} is {status}: cannot {operation}")


@dataclass
class Failure:
    code: grpc.StatusCode
    message: str
    details: list[Message] = field(default_factory=list)
    short_items: list[stock_pb2.ShortItem] = field(default_factory=list)


def describe(exc: BaseException) -> Failure:
    """The status a failure is answered with; unknown exceptions are bugs: INTERNAL, logged."""
    if isinstance(exc, InvalidArgument):
        return Failure(exc.code, exc.message, [bad_request(exc.field_path, exc.description)])
    if isinstance(exc, ServiceError):
        return Failure(exc.code, exc.message)
    if isinstance(exc, EngineError):
        return describe_engine_error(exc)
    log.error("unexpected failure", exc_info=exc)
    return Failure(grpc.StatusCode.INTERNAL, "internal error")


def describe_engine_error(exc: EngineError) -> Failure:
    code_name = getattr(exc, "code", "")
    code = ENGINE_CODES.get(code_name)
    if code is None:
        log.error("engine error without a mapping: %r", code_name, exc_info=exc)
        return Failure(grpc.StatusCode.INTERNAL, "internal error")
    message = str(exc)
    if code_name in ("limit_exceeded", "invalid_request"):
        # The engine's message already names the bound (LimitExceeded carries it too).
        return Failure(code, message, [bad_request(str(getattr(exc, "field", "")), message)])
    if code_name == "short_stock":
        return short_stock_failure(code, list(exc.shortfalls))
    return Failure(code, message)


def short_stock_failure(code: grpc.StatusCode, shortfalls: list[tuple]) -> Failure:
    items = [stock_pb2.ShortItem(sku=sku, location=location, requested=requested,
                                 available=available)
             for sku, location, requested, available in shortfalls]
    shown = "; ".join(f"{i.sku}@{i.location!r} requested {i.requested} available {i.available}"
                      for i in items[:SHORT_ITEMS_IN_MESSAGE_MAX])
    more = len(items) - SHORT_ITEMS_IN_MESSAGE_MAX
    message = f"short stock on {len(items)} item(s): {shown}" + (
        f"; and {more} more" if more > 0 else "")
    violations = error_details_pb2.PreconditionFailure(violations=[
        error_details_pb2.PreconditionFailure.Violation(
            type="STOCK_SHORT", subject=f"{i.sku}@{i.location}",
            description=f"requested {i.requested}, available {i.available}")
        for i in items])
    # Machine-readable items first: if the list is too long for the trailers, the first ones
    # still arrive (the message gives the count) and the summary is what gets left out.
    return Failure(code, message, [*items, violations], items)


def bad_request(field_path: str, description: str) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=field_path, description=description)])


def truncate_utf8(text: str, bytes_max: int) -> str:
    data = text.encode()
    if len(data) <= bytes_max:
        return text
    return data[:bytes_max - 3].decode(errors="ignore") + "..."


def to_grpc_status(failure: Failure) -> grpc.Status:
    """The rich status: details packed while they fit in DETAILS_BYTES_MAX, in order."""
    message = truncate_utf8(failure.message, MESSAGE_BYTES_MAX)
    status = status_pb2.Status(code=failure.code.value[0], message=message)
    for detail in failure.details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        if status.ByteSize() + packed.ByteSize() + 8 > DETAILS_BYTES_MAX:
            continue  # the message names the count; batch calls carry the full list
        status.details.append(packed)
    return rpc_status.to_status(status)


async def abort(context: grpc.aio.ServicerContext, exc: BaseException) -> NoReturn:
    status = to_grpc_status(describe(exc))
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("context.abort returns only by raising")


def batch_error(exc: BaseException) -> stock_pb2.BatchError:
    failure = describe(exc)
    return stock_pb2.BatchError(code=failure.code.value[0], message=failure.message,
                                short_items=failure.short_items)


assert code_pb2.OK == grpc.StatusCode.OK.value[0], "google.rpc and grpc codes agree"
