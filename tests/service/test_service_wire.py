"""The batch calls' wire path (core_rs/src/wire.rs) against the reference it replaced: the
Python edge (service/validation.py) followed by the engine's object batch calls. For random
batches of valid and invalid requests, both must accept and refuse the same requests, answer
the same reservations (but for their random ids) and leave the same stock levels."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service import errors, validation
from service.engine import Engine, EngineError
from service.gen.stock.v1 import stock_pb2
from service.servicer import STATUS, new_reservation_id

NOW_MS = 1_700_000_000_000
SKUS = ["a", "b", "c"]
ON_HAND = 6

# Mostly valid values, so that most requests reach the engine, with every kind of bad one.
def mostly(valid: list, invalid: list):
    return st.sampled_from(valid * (12 // len(valid) + 1) + invalid)


ORDER_IDS = mostly(["o", "x" * 128], ["", "x" * 129, "nul\x00"])
LINE = st.builds(
    stock_pb2.Line, sku=mostly(SKUS, ["unknown", "", "s\x00"]),
    quantity=mostly([1, 2, 3], [0, -1, 1_000_000_001]),
    location=mostly([""], ["far", "x" * 129]))
LINES = mostly([1, 2, 3], [0]).flatmap(lambda count: st.lists(LINE, min_size=count,
                                                               max_size=count))
REQUESTS = st.lists(st.builds(
    stock_pb2.ReserveRequest, request_id=mostly(["", "r1", "r2"], ["nul\x00", "x" * 129]),
    order_id=ORDER_IDS, lines=LINES, ttl_ms=mostly([0, 60_000], [999, 86_400_001])),
    min_size=1, max_size=8)


def stocked() -> Engine:
    engine = Engine()
    for sku in SKUS:
        engine.set_stock(sku, "", ON_HAND, None, NOW_MS)
    return engine


def reference(engine: Engine, requests) -> list:
    """What the service answered before the wire path: (status, order, lines, expiry) or the
    error's class of answer, per request."""
    answers = []
    for request in requests:
        try:
            request_id, order_id, lines, ttl_ms = validation.reserve(request)
        except errors.InvalidArgument:
            answers.append("invalid")
            continue
        [answer] = engine.reserve_batch(
            [(new_reservation_id(), order_id, lines, ttl_ms, request_id)], NOW_MS)
        answers.append(summary(answer))
    return answers


def wire(engine: Engine, requests) -> list:
    parts, lsn = engine.batch_wire(
        "reserve", stock_pb2.ReserveBatchRequest(requests=requests).SerializeToString(), NOW_MS)
    assert lsn == engine.lsn_last()
    answers = []
    for part in parts:
        if isinstance(part, bytes):
            decoded = stock_pb2.ReserveBatchResponse.FromString(part)
            answers += [summary(result.reservation) for result in decoded.results]
        else:
            answers.append(summary(part))
    return answers


def summary(answer):
    if isinstance(answer, EngineError):
        return "invalid" if answer.code in ("limit_exceeded", "invalid_request") else answer.code
    if isinstance(answer, stock_pb2.Reservation):
        lines = [(line.sku, line.location, line.quantity) for line in answer.lines]
        expires_at_ms = answer.expires_at.seconds * 1_000 + answer.expires_at.nanos // 1_000_000
        return (answer.status, answer.order_id, lines, expires_at_ms)
    lines = [tuple(line) for line in answer.lines]
    return (STATUS[answer.status], answer.order_id, lines, answer.expires_at_ms)


def levels(engine: Engine) -> list:
    return list(engine.get_stock(SKUS, "", NOW_MS).levels)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=REQUESTS)
def test_wire_batches_answer_as_the_python_edge_and_the_engine_did(requests):
    by_reference, by_wire = stocked(), stocked()
    assert wire(by_wire, requests) == reference(by_reference, requests)
    assert levels(by_wire) == levels(by_reference)


@pytest.mark.parametrize("lines", [1, 3, 1_000])
def test_a_single_reserve_travels_on_the_wire(lines):
    """Reserve's request bytes in, the Reservation message's bytes out, whatever the size of
    the messages (their length prefixes take 1 to 3 bytes); a refusal is its EngineError."""
    engine = Engine()
    skus = [f"sku-{n:06d}" for n in range(lines)]
    for sku in skus:
        engine.set_stock(sku, "", 10 * lines, None, NOW_MS)
    request = stock_pb2.ReserveRequest(order_id="o", ttl_ms=60_000, lines=[
        stock_pb2.Line(sku=sku, quantity=n + 1) for n, sku in enumerate(skus)])
    (part,), lsn = engine.call_wire("reserve", request.SerializeToString(), NOW_MS)
    assert lsn == engine.lsn_last()
    reservation = stock_pb2.Reservation.FromString(part)
    assert reservation.order_id == "o" and list(reservation.lines) == list(request.lines)
    request.lines[0].quantity = 10 * lines  # more than is left
    (refused,), _ = engine.call_wire("reserve", request.SerializeToString(), NOW_MS)
    assert isinstance(refused, EngineError) and refused.code == "short_stock"


def test_single_commit_and_release_travel_on_the_wire():
    engine = Engine()
    engine.set_stock("a", "", 5, None, NOW_MS)
    reserve = stock_pb2.ReserveRequest(order_id="o", lines=[stock_pb2.Line(sku="a", quantity=2)])
    ids = [stock_pb2.Reservation.FromString(
        engine.call_wire("reserve", reserve.SerializeToString(), NOW_MS)[0][0]).reservation_id
        for _ in range(2)]
    commit = stock_pb2.CommitRequest(reservation_id=ids[0])
    (part,), lsn = engine.call_wire("commit", commit.SerializeToString(), NOW_MS)
    assert lsn == engine.lsn_last()
    assert stock_pb2.Reservation.FromString(part).status == stock_pb2.RESERVATION_STATUS_COMMITTED
    release = stock_pb2.ReleaseRequest(reservation_id=ids[1])
    (part,), _ = engine.call_wire("release", release.SerializeToString(), NOW_MS)
    assert stock_pb2.Reservation.FromString(part).status == stock_pb2.RESERVATION_STATUS_RELEASED
    # (sku, location, on_hand, reserved, available): 1 unit left, 1 back.
    assert engine.get_stock(["a"], "", NOW_MS).levels == [("a", "", 3, 0, 3, 0)]
    (refused,), _ = engine.call_wire("release", commit.SerializeToString(), NOW_MS)
    assert isinstance(refused, EngineError) and refused.code == "wrong_state"
    with pytest.raises(EngineError, match="is not reserve, commit or release"):
        engine.call_wire("extend", release.SerializeToString(), NOW_MS)
