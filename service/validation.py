"""Edge checks of proto fields. Bad input fails here, before the engine, and changes nothing.

Each failure is an `InvalidArgument` naming the field path (`lines[2].quantity`) and the bound.
The bounds are the engine's (`service.engine.LIMITS`); the engine checks them again.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.engine import LIMITS
from service.errors import InvalidArgument


def limit(name: str) -> int:
    """One engine limit by name (LIMITS is the engine's dict of named constants)."""
    return int(LIMITS[name])


ID_BYTES_MAX = limit("ID_BYTES_MAX")
LINES_PER_REQUEST_MAX = limit("LINES_PER_REQUEST_MAX")
QUANTITY_MAX = limit("QUANTITY_MAX")
ON_HAND_MAX = limit("ON_HAND_MAX")
TTL_MS_MIN = limit("TTL_MS_MIN")
TTL_MS_MAX = limit("TTL_MS_MAX")
TTL_MS_DEFAULT = limit("TTL_MS_DEFAULT")
REASON_BYTES_MAX = limit("REASON_BYTES_MAX")
ACTOR_BYTES_MAX = limit("ACTOR_BYTES_MAX")
BATCH_REQUESTS_MAX = limit("BATCH_REQUESTS_MAX")
STOCK_QUERY_SKUS_MAX = limit("STOCK_QUERY_SKUS_MAX")
# UTF-8 takes at most 4 bytes per character, so a string of at most bytes_max / 4 characters
# is within bytes_max bytes without encoding it.
UTF8_BYTES_PER_CHARACTER_MAX = 4
# PostgreSQL's text cannot hold U+0000; the engine refuses it too (core_rs/src/validate.rs).
NUL = "\x00"
NUL_MESSAGE = "must not contain NUL (U+0000)"


def utf8_fits(value: str, bytes_max: int) -> bool:
    """`len(value.encode()) <= bytes_max`, without encoding the usual short string."""
    return (len(value) * UTF8_BYTES_PER_CHARACTER_MAX <= bytes_max
            or len(value.encode()) <= bytes_max)


def text(value: str, path: str, *, bytes_max: int, required: bool) -> str:
    if required and not value:
        raise InvalidArgument(path, f"required, 1..{bytes_max} bytes")
    if not utf8_fits(value, bytes_max):
        raise InvalidArgument(path, f"{len(value.encode())} bytes, at most {bytes_max}")
    if NUL in value:
        raise InvalidArgument(path, NUL_MESSAGE)
    return value


def identifier(value: str, path: str, *, required: bool = True) -> str:
    return text(value, path, bytes_max=ID_BYTES_MAX, required=required)


def optional_id(value: str, path: str) -> str | None:
    """Empty means absent (no retry protection for request ids)."""
    return identifier(value, path, required=False) or None


def integer(value: int, path: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidArgument(path, f"{value} is outside {low}..{high}")
    return value


def ttl_ms(value: int, path: str) -> int:
    """0 means the default; anything else must lie within the engine's bounds."""
    if value == 0:
        return TTL_MS_DEFAULT
    if not TTL_MS_MIN <= value <= TTL_MS_MAX:
        raise InvalidArgument(
            path, f"{value} is outside {TTL_MS_MIN}..{TTL_MS_MAX} (0 means {TTL_MS_DEFAULT})")
    return value


def lines(values: Sequence, path: str, *, quantity_min: int,
          required: bool = True) -> list[tuple[str, str, int]]:
    """Proto lines to engine line tuples (sku, location, quantity). Several lines of the same
    item are allowed: the engine sums them before deciding (docs/ENGINE_API.md)."""
    if required and not values:
        raise InvalidArgument(path, f"required, 1..{LINES_PER_REQUEST_MAX} lines")
    if len(values) > LINES_PER_REQUEST_MAX:
        raise InvalidArgument(path, f"{len(values)} lines, at most {LINES_PER_REQUEST_MAX}")
    result = valid_lines(values, quantity_min)
    if result is not None:
        return result
    # Some line is bad: the checks below find the first one and name its field path.
    result = []
    for index, line in enumerate(values):
        here = f"{path}[{index}]"
        sku = identifier(line.sku, f"{here}.sku")
        location = identifier(line.location, f"{here}.location", required=False)
        quantity = integer(line.quantity, f"{here}.quantity", quantity_min, QUANTITY_MAX)
        result.append((sku, location, quantity))
    return result


def valid_lines(values: Sequence, quantity_min: int) -> list[tuple[str, str, int]] | None:
    """The same checks as the per-field ones in `lines`, without building a field path per
    line (a batch of 1,000 reservations validates every line of every request): the line
    tuples when all are valid, None when some line is not (then `lines` names it)."""
    result = []
    append = result.append
    for line in values:
        sku, location, quantity = line.sku, line.location, line.quantity
        if not (sku and utf8_fits(sku, ID_BYTES_MAX) and utf8_fits(location, ID_BYTES_MAX)
                and quantity_min <= quantity <= QUANTITY_MAX
                and NUL not in sku and NUL not in location):
            return None
        append((sku, location, quantity))
    return result


def reserve(request) -> tuple[str | None, str, list, int]:
    """(request_id, order_id, lines, ttl_ms) of a ReserveRequest."""
    return (optional_id(request.request_id, "request_id"),
            identifier(request.order_id, "order_id"),
            lines(request.lines, "lines", quantity_min=1),
            ttl_ms(request.ttl_ms, "ttl_ms"))


def commit(request) -> tuple[str, str | None, list | None]:
    """(reservation_id, request_id, lines or None: commit everything held)."""
    # An item to commit nothing of is simply left out (the engine refuses quantity 0).
    committed = lines(request.lines, "lines", quantity_min=1, required=False)
    return (identifier(request.reservation_id, "reservation_id"),
            optional_id(request.request_id, "request_id"),
            committed or None)


def release(request) -> tuple[str, str | None]:
    return (identifier(request.reservation_id, "reservation_id"),
            optional_id(request.request_id, "request_id"))


def extend(request) -> tuple[str, int]:
    return identifier(request.reservation_id, "reservation_id"), ttl_ms(request.ttl_ms, "ttl_ms")


def decrement(request) -> tuple[str | None, list, str]:
    return (optional_id(request.request_id, "request_id"),
            lines(request.lines, "lines", quantity_min=1),
            identifier(request.order_id, "order_id", required=False))


def reason(value: str) -> str:
    return text(value, "reason", bytes_max=REASON_BYTES_MAX, required=False)


def actor(value: str) -> str:
    return text(value, "metadata x-stock-actor", bytes_max=ACTOR_BYTES_MAX, required=False)


def adjust(request) -> tuple[str | None, str, str, int, str]:
    delta = integer(request.delta, "delta", -QUANTITY_MAX, QUANTITY_MAX)
    if delta == 0:
        raise InvalidArgument("delta", f"must not be 0 (1..{QUANTITY_MAX} in magnitude)")
    return (optional_id(request.request_id, "request_id"),
            identifier(request.sku, "sku"),
            identifier(request.location, "location", required=False),
            delta, reason(request.reason))


def set_stock(request) -> tuple[str | None, str, str, int, int | None, str]:
    expected = None
    if request.HasField("expected_on_hand"):
        expected = integer(request.expected_on_hand, "expected_on_hand", 0, ON_HAND_MAX)
    return (optional_id(request.request_id, "request_id"),
            identifier(request.sku, "sku"),
            identifier(request.location, "location", required=False),
            integer(request.on_hand, "on_hand", 0, ON_HAND_MAX),
            expected, reason(request.reason))


def set_safety_stock(request) -> tuple[str | None, str, str, int, str]:
    return (optional_id(request.request_id, "request_id"),
            identifier(request.sku, "sku"),
            identifier(request.location, "location", required=False),
            integer(request.safety_stock, "safety_stock", 0, ON_HAND_MAX),
            reason(request.reason))


def get_stock(request) -> tuple[list[str], str]:
    count = len(request.skus)
    if not 1 <= count <= STOCK_QUERY_SKUS_MAX:
        raise InvalidArgument("skus", f"{count} skus, 1..{STOCK_QUERY_SKUS_MAX} required")
    skus = [identifier(sku, f"skus[{index}]") for index, sku in enumerate(request.skus)]
    return skus, identifier(request.location, "location", required=False)
