"""Views to protos without a server: every field, including the zero timestamp and committed
lines, and one result per batch outcome (reservation or error)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from service import servicer
from service.errors import InvalidArgument
from service.gen.stock.v1 import stock_pb2


@dataclass
class View:
    reservation_id: str
    order_id: str
    status: str
    lines: list
    committed_lines: list
    expires_at_ms: int


@pytest.mark.parametrize(("expires_at_ms", "seconds", "nanos"), [
    (0, 0, 0), (999, 0, 999_000_000), (1_700_000_000_123, 1_700_000_000, 123_000_000)])
def test_reservation_proto_has_every_field(expires_at_ms, seconds, nanos):
    view = View("r1", "o1", "committed", [("a", "", 3), ("b", "x", 4)], [("a", "", 2)],
                expires_at_ms)
    reservation = servicer.reservation_proto(view)
    assert reservation.reservation_id == "r1" and reservation.order_id == "o1"
    assert reservation.status == stock_pb2.RESERVATION_STATUS_COMMITTED
    assert [(each.sku, each.location, each.quantity) for each in reservation.lines] == view.lines
    assert [(each.sku, each.location, each.quantity)
            for each in reservation.committed_lines] == view.committed_lines
    assert reservation.HasField("expires_at")
    assert (reservation.expires_at.seconds, reservation.expires_at.nanos) == (seconds, nanos)


def test_batch_results_keep_order_and_kind():
    response = stock_pb2.ReserveBatchResponse()
    outcomes = [View("r1", "o1", "active", [("a", "", 1)], [], 5_000),
                InvalidArgument("lines[0].sku", "required"),
                View("r2", "o2", "expired", [("b", "", 2)], [], 6_000)]
    for outcome in outcomes:
        servicer.fill_result(response.results.add(), outcome)
    kinds = [result.WhichOneof("result") for result in response.results]
    assert kinds == ["reservation", "error", "reservation"]
    assert response.results[1].error.message == "lines[0].sku: required"
    assert response.results[2].reservation.status == stock_pb2.RESERVATION_STATUS_EXPIRED
    assert not response.results[0].reservation.committed_lines
