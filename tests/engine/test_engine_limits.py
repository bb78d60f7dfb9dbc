"""Every named limit is enforced at the binding with LimitExceeded(field, bound)."""

import pytest
from engine_helpers import NOW_MS, TTL_MS, small_engine, stock

from service.engine import LIMITS, CapacityExceeded, Engine, LimitExceeded

ID_MAX = LIMITS["ID_BYTES_MAX"]
TOO_LONG = "x" * (ID_MAX + 1)
# 65 two-byte characters: 130 bytes, under 128 characters. The bound is in bytes.
TOO_MANY_BYTES = "é" * 65


@pytest.fixture
def engine() -> Engine:
    """A small fresh engine per test (no conftest: tests/conftest.py owns that module name)."""
    return small_engine()


def check(call, field: str, bound: int) -> None:
    with pytest.raises(LimitExceeded) as caught:
        call()
    assert (caught.value.code, caught.value.field, caught.value.bound) == (
        "limit_exceeded", field, bound)


@pytest.fixture
def stocked(engine: Engine) -> Engine:
    stock(engine, a=10)
    return engine


def test_id_lengths(stocked):
    line = [("a", "", 1)]
    check(lambda: stocked.reserve(TOO_LONG, "", line, TTL_MS, NOW_MS), "reservation_id", ID_MAX)
    check(lambda: stocked.reserve(TOO_MANY_BYTES, "", line, TTL_MS, NOW_MS), "reservation_id",
          ID_MAX)
    check(lambda: stocked.reserve("", "", line, TTL_MS, NOW_MS), "reservation_id", 1)
    check(lambda: stocked.reserve("r", TOO_LONG, line, TTL_MS, NOW_MS), "order_id", ID_MAX)
    check(lambda: stocked.reserve("r", "", line, TTL_MS, NOW_MS, request_id=TOO_LONG),
          "request_id", ID_MAX)
    check(lambda: stocked.reserve("r", "", [(TOO_LONG, "", 1)], TTL_MS, NOW_MS), "sku", ID_MAX)
    check(lambda: stocked.reserve("r", "", [("", "", 1)], TTL_MS, NOW_MS), "sku", 1)
    check(lambda: stocked.reserve("r", "", [("a", TOO_LONG, 1)], TTL_MS, NOW_MS), "location",
          ID_MAX)
    check(lambda: stocked.adjust(TOO_LONG, "", 1, NOW_MS), "sku", ID_MAX)
    check(lambda: stocked.release(TOO_LONG, NOW_MS), "reservation_id", ID_MAX)


def test_line_count(stocked):
    lines_max = LIMITS["LINES_PER_REQUEST_MAX"]
    check(lambda: stocked.reserve("r", "", [], TTL_MS, NOW_MS), "lines", 1)
    many = [("a", "", 1)] * (lines_max + 1)
    check(lambda: stocked.reserve("r", "", many, TTL_MS, NOW_MS), "lines", lines_max)
    check(lambda: stocked.decrement(many, NOW_MS), "lines", lines_max)
    stocked.adjust("a", "", lines_max, NOW_MS)
    assert stocked.reserve("r", "", many[:lines_max], TTL_MS, NOW_MS).lines == [
        ("a", "", lines_max)]


def test_quantities(stocked):
    quantity_max = LIMITS["QUANTITY_MAX"]
    for quantity, bound in ((0, 1), (-5, 1), (quantity_max + 1, quantity_max),
                            (2**70, quantity_max)):
        check(lambda q=quantity: stocked.reserve("r", "", [("a", "", q)], TTL_MS, NOW_MS),
              "quantity", bound)
    check(lambda: stocked.adjust("a", "", quantity_max + 1, NOW_MS), "delta", quantity_max)
    check(lambda: stocked.adjust("a", "", -(quantity_max + 1), NOW_MS), "delta", quantity_max)
    check(lambda: stocked.adjust("a", "", 0, NOW_MS), "delta", 1)


def test_on_hand_max(stocked):
    on_hand_max = LIMITS["ON_HAND_MAX"]
    check(lambda: stocked.set_stock("a", "", on_hand_max + 1, None, NOW_MS), "on_hand",
          on_hand_max)
    check(lambda: stocked.set_stock("a", "", -1, None, NOW_MS), "on_hand", 0)
    stocked.set_stock("a", "", on_hand_max, None, NOW_MS)
    check(lambda: stocked.adjust("a", "", 1, NOW_MS), "on_hand", on_hand_max)


def test_ttl(stocked):
    line = [("a", "", 1)]
    check(lambda: stocked.reserve("r", "", line, LIMITS["TTL_MS_MIN"] - 1, NOW_MS), "ttl_ms",
          LIMITS["TTL_MS_MIN"])
    check(lambda: stocked.reserve("r", "", line, LIMITS["TTL_MS_MAX"] + 1, NOW_MS), "ttl_ms",
          LIMITS["TTL_MS_MAX"])
    stocked.reserve("r", "", line, TTL_MS, NOW_MS)
    check(lambda: stocked.extend("r", LIMITS["TTL_MS_MAX"] + 1, NOW_MS), "ttl_ms",
          LIMITS["TTL_MS_MAX"])


def test_reason_and_actor(stocked):
    reason = "r" * (LIMITS["REASON_BYTES_MAX"] + 1)
    actor = "a" * (LIMITS["ACTOR_BYTES_MAX"] + 1)
    check(lambda: stocked.adjust("a", "", 1, NOW_MS, reason=reason), "reason",
          LIMITS["REASON_BYTES_MAX"])
    check(lambda: stocked.set_stock("a", "", 1, None, NOW_MS, actor=actor), "actor",
          LIMITS["ACTOR_BYTES_MAX"])


def test_batch_expire_and_journal_bounds(stocked):
    batch_max = LIMITS["BATCH_REQUESTS_MAX"]
    requests = [(f"r{i}", "", [("a", "", 1)], TTL_MS, None) for i in range(batch_max + 1)]
    check(lambda: stocked.reserve_batch(requests, NOW_MS), "requests", batch_max)
    check(lambda: stocked.release_batch([("r", None)] * (batch_max + 1), NOW_MS), "requests",
          batch_max)
    check(lambda: stocked.expire_due(NOW_MS, LIMITS["EXPIRE_BATCH_MAX"] + 1), "max_count",
          LIMITS["EXPIRE_BATCH_MAX"])
    check(lambda: stocked.expire_due(NOW_MS, 0), "max_count", 1)
    check(lambda: stocked.take_journal(LIMITS["JOURNAL_TAKE_OPERATIONS_MAX"] + 1),
          "max_operations", LIMITS["JOURNAL_TAKE_OPERATIONS_MAX"])


def test_configured_bounds():
    check(lambda: Engine(items_max=0), "items_max", 1)
    check(lambda: Engine(journal_operations_max=2**31), "journal_operations_max", 2**30)


def test_remembered_request_ids_are_bounded():
    engine = Engine(idempotency_records_max=2)
    for index in range(3):
        engine.adjust("a", "", 1, NOW_MS, request_id=f"q{index}")
    assert engine.stats()["idempotency_records"] == 2
    assert engine.adjust("a", "", 1, NOW_MS, request_id="q0").replayed is False
    assert engine.adjust("a", "", 1, NOW_MS, request_id="q2").replayed is True


def test_stock_query_size(stocked):
    skus_max = LIMITS["STOCK_QUERY_SKUS_MAX"]
    check(lambda: stocked.get_stock(["a"] * (skus_max + 1), "", NOW_MS), "skus", skus_max)
    assert len(stocked.get_stock(["a"] * skus_max, "", NOW_MS).levels) == 1


def test_items_are_bounded():
    engine = Engine(items_max=1)
    engine.adjust("a", "", 1, NOW_MS)
    with pytest.raises(CapacityExceeded) as caught:
        engine.set_stock("b", "", 1, None, NOW_MS)
    assert caught.value.what == "items"
