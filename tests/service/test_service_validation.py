"""Edge validation without a server: the fast checks of short ids and of whole line lists
accept and refuse exactly what the per-field checks do, with the same field paths."""

from __future__ import annotations

import pytest

from service import validation
from service.errors import InvalidArgument
from service.gen.stock.v1 import stock_pb2
from service.validation import ID_BYTES_MAX, QUANTITY_MAX, UTF8_BYTES_PER_CHARACTER_MAX

FOUR_BYTE_CHARACTER = "\U0001F600"
# Short in characters (the fast path's range) and within bounds in bytes.
WIDE_ID_FITTING = FOUR_BYTE_CHARACTER * (ID_BYTES_MAX // UTF8_BYTES_PER_CHARACTER_MAX)
# Few characters, but beyond the byte bound: only an encoding finds it.
WIDE_ID_TOO_LONG = FOUR_BYTE_CHARACTER * (ID_BYTES_MAX // UTF8_BYTES_PER_CHARACTER_MAX + 1)


def reserve(*lines: tuple[str, int, str], order_id: str = "o") -> stock_pb2.ReserveRequest:
    return stock_pb2.ReserveRequest(order_id=order_id, lines=[
        stock_pb2.Line(sku=sku, quantity=quantity, location=location)
        for sku, quantity, location in lines])


def refusal(request) -> tuple[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        validation.reserve(request)
    return caught.value.field_path, caught.value.description


def test_valid_lines_become_tuples_in_order():
    request = reserve(("a", 1, ""), (WIDE_ID_FITTING, QUANTITY_MAX, WIDE_ID_FITTING),
                      ("a", 2, "x"))
    assert validation.reserve(request) == (
        None, "o", [("a", "", 1), (WIDE_ID_FITTING, WIDE_ID_FITTING, QUANTITY_MAX),
                    ("a", "x", 2)], validation.TTL_MS_DEFAULT)


@pytest.mark.parametrize(("bad_line", "path", "bound"), [
    (("", 1, ""), "lines[1].sku", f"1..{ID_BYTES_MAX}"),
    ((WIDE_ID_TOO_LONG, 1, ""), "lines[1].sku", f"at most {ID_BYTES_MAX}"),
    (("x" * (ID_BYTES_MAX + 1), 1, ""), "lines[1].sku", f"at most {ID_BYTES_MAX}"),
    (("s", 1, WIDE_ID_TOO_LONG), "lines[1].location", f"at most {ID_BYTES_MAX}"),
    (("s", 0, ""), "lines[1].quantity", f"1..{QUANTITY_MAX}"),
    (("s", QUANTITY_MAX + 1, ""), "lines[1].quantity", f"1..{QUANTITY_MAX}"),
])
def test_bad_line_is_named_by_its_path(bad_line, path, bound):
    field_path, description = refusal(reserve(("good", 1, ""), bad_line, ("", 0, "")))
    assert field_path == path
    assert bound in description


@pytest.mark.parametrize(("order_id", "bound"), [
    ("", f"1..{ID_BYTES_MAX}"),
    (WIDE_ID_TOO_LONG, f"{len(WIDE_ID_TOO_LONG.encode())} bytes, at most {ID_BYTES_MAX}"),
])
def test_order_id_bounds_in_bytes(order_id, bound):
    field_path, description = refusal(reserve(("s", 1, ""), order_id=order_id))
    assert field_path == "order_id"
    assert bound in description


def test_wide_order_id_within_bytes_is_accepted():
    assert validation.reserve(reserve(("s", 1, ""), order_id=WIDE_ID_FITTING))[1] == \
        WIDE_ID_FITTING
