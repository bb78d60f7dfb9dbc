"""Safety stock through the binding: units kept back from reserves and decrements, never from
commits, adjustments or counts; its bounds, idempotency, export and load, and journal rows."""

import json

import pytest
from engine_helpers import NOW_MS, TTL_MS, level, small_engine, stock

from service.engine import (
    LIMITS,
    PG_TABLES,
    Engine,
    IdempotencyConflict,
    LevelsView,
    LimitExceeded,
    OnHandBelowReserved,
    RecoveryMismatch,
    ShortStock,
)

ON_HAND_MAX = LIMITS["ON_HAND_MAX"]


@pytest.fixture
def engine() -> Engine:
    """A small fresh engine per test (no conftest: tests/conftest.py owns that module name)."""
    return small_engine()


def check_limit(call, field: str, bound: int) -> None:
    """The call raises LimitExceeded(field, bound), as tests/engine/test_engine_limits.py
    asserts limit errors."""
    with pytest.raises(LimitExceeded) as caught:
        call()
    assert (caught.value.code, caught.value.field, caught.value.bound) == (
        "limit_exceeded", field, bound)


def test_set_safety_stock_answers_the_levels_with_what_is_left_available(engine):
    """The answer is a LevelsView of the item: available is on hand less reserved less the
    safety stock, and the safety stock is the sixth value."""
    stock(engine, a=10)
    engine.reserve("r1", "", [("a", "", 3)], TTL_MS, NOW_MS)
    view = engine.set_safety_stock("a", "", 4, NOW_MS, reason="count", actor="bob")
    assert isinstance(view, LevelsView)
    assert view.levels == [("a", "", 10, 3, 3, 4)]
    assert (view.lsn, view.replayed) == (3, False)
    assert level(engine, "a") == (10, 3, 3, 4)
    assert engine.get_stock(["a"], "", NOW_MS).levels == [("a", "", 10, 3, 3, 4)]
    # Above what is not held: nothing is available, and nothing held is touched.
    assert engine.set_safety_stock("a", "", 9, NOW_MS).levels == [("a", "", 10, 3, 0, 9)]
    assert engine.get_reservation("r1", NOW_MS).lines == [("a", "", 3)]
    assert engine.set_safety_stock("a", "", 0, NOW_MS).levels == [("a", "", 10, 3, 7, 0)]


def test_reserve_is_refused_beyond_what_the_safety_stock_leaves(engine):
    """A reserve above on hand - reserved - safety stock is short stock, its shortfall
    reporting that available; exactly that much is accepted."""
    stock(engine, a=10, b=10)
    engine.set_safety_stock("a", "", 4, NOW_MS)
    pending = engine.journal_pending()
    with pytest.raises(ShortStock) as caught:
        engine.reserve("r1", "", [("a", "", 5), ("a", "", 2), ("b", "", 10)], TTL_MS, NOW_MS)
    assert caught.value.shortfalls == [("a", "", 7, 6)]
    assert level(engine, "a") == (10, 0, 6, 4)
    assert level(engine, "b") == (10, 0, 10, 0)
    assert engine.journal_pending() == pending
    engine.reserve("r1", "", [("a", "", 6), ("b", "", 10)], TTL_MS, NOW_MS)
    assert level(engine, "a") == (10, 6, 0, 4)
    with pytest.raises(ShortStock) as caught:
        engine.reserve("r2", "", [("a", "", 1)], TTL_MS, NOW_MS)
    assert caught.value.shortfalls == [("a", "", 1, 0)]


def test_a_safety_stock_above_what_is_not_held_reports_zero_available(engine):
    """When the safety stock exceeds on hand - reserved, the shortfall's available is 0
    (not negative, not wrapped)."""
    stock(engine, a=5)
    engine.reserve("r1", "", [("a", "", 2)], TTL_MS, NOW_MS)
    engine.set_safety_stock("a", "", 4, NOW_MS)
    with pytest.raises(ShortStock) as caught:
        engine.reserve("r2", "", [("a", "", 1)], TTL_MS, NOW_MS)
    assert caught.value.shortfalls == [("a", "", 1, 0)]
    with pytest.raises(ShortStock) as caught:
        engine.decrement([("a", "", 1)], NOW_MS)
    assert caught.value.shortfalls == [("a", "", 1, 0)]
    assert level(engine, "a") == (5, 2, 0, 4)


def test_decrement_is_refused_beyond_what_the_safety_stock_leaves(engine):
    """A decrement is all or nothing against available (after holds and safety stock)."""
    stock(engine, a=10, b=3)
    engine.reserve("r1", "", [("a", "", 3)], TTL_MS, NOW_MS)
    engine.set_safety_stock("a", "", 5, NOW_MS)
    with pytest.raises(ShortStock) as caught:
        engine.decrement([("a", "", 3), ("b", "", 3)], NOW_MS, order_id="o")
    assert caught.value.shortfalls == [("a", "", 3, 2)]
    assert level(engine, "a") == (10, 3, 2, 5)
    assert level(engine, "b") == (3, 0, 3, 0)
    view = engine.decrement([("a", "", 2), ("b", "", 3)], NOW_MS, order_id="o")
    assert view.levels == [("a", "", 8, 3, 0, 5), ("b", "", 0, 0, 0, 0)]


def test_batch_reserve_sees_the_safety_stock(engine):
    """reserve_batch refuses the request that would dip into the safety stock, in order."""
    stock(engine, a=5)
    engine.set_safety_stock("a", "", 2, NOW_MS)
    results = engine.reserve_batch([
        ("r1", "o", [("a", "", 2)], TTL_MS, None),
        ("r2", "o", [("a", "", 2)], TTL_MS, None),
        ("r3", "o", [("a", "", 1)], TTL_MS, None),
    ], NOW_MS)
    assert results[0].status == "active"
    assert isinstance(results[1], ShortStock) and results[1].shortfalls == [("a", "", 2, 1)]
    assert results[2].status == "active"
    assert level(engine, "a") == (5, 3, 0, 2)


def test_commit_release_extend_and_expiry_are_not_limited_by_safety_stock(engine):
    """Holds taken before the safety stock was raised are committed, released, extended and
    expire as before; the units they free stay behind the safety stock."""
    stock(engine, a=10)
    for reservation_id in ("r1", "r2", "r3"):
        engine.reserve(reservation_id, "", [("a", "", 3)], TTL_MS, NOW_MS)
    engine.set_safety_stock("a", "", 8, NOW_MS)
    assert level(engine, "a") == (10, 9, 0, 8)
    view = engine.commit("r1", [("a", "", 3)], NOW_MS)
    assert (view.status, view.committed_lines) == ("committed", [("a", "", 3)])
    assert level(engine, "a") == (7, 6, 0, 8)
    assert engine.extend("r2", 2 * TTL_MS, NOW_MS).status == "active"
    assert engine.release("r2", NOW_MS).status == "released"
    assert level(engine, "a") == (7, 3, 0, 8)
    assert engine.expire_due(NOW_MS + TTL_MS, 10) == ["r3"]
    assert level(engine, "a", NOW_MS + TTL_MS) == (7, 0, 0, 8)
    engine.set_safety_stock("a", "", 5, NOW_MS + TTL_MS)
    assert level(engine, "a", NOW_MS + TTL_MS) == (7, 0, 2, 5)


def test_a_due_hold_frees_its_units_up_to_the_safety_stock(engine):
    """A hold that is due stops counting, so a reserve may take what it held, less the
    safety stock."""
    stock(engine, a=10)
    engine.reserve("r1", "", [("a", "", 6)], TTL_MS, NOW_MS)
    engine.set_safety_stock("a", "", 3, NOW_MS)
    assert level(engine, "a") == (10, 6, 1, 3)
    later = NOW_MS + TTL_MS
    assert level(engine, "a", later) == (10, 0, 7, 3)
    with pytest.raises(ShortStock) as caught:
        engine.reserve("r2", "", [("a", "", 8)], TTL_MS, later)
    assert caught.value.shortfalls == [("a", "", 8, 7)]
    engine.reserve("r2", "", [("a", "", 7)], TTL_MS, later)
    assert level(engine, "a", later) == (10, 7, 0, 3)


def test_adjust_and_set_stock_may_go_below_the_safety_stock(engine):
    """Adjust and set_stock are bounded only by on_hand >= reserved: going below the safety
    stock is accepted and leaves available 0; the safety stock itself does not change."""
    stock(engine, a=10)
    engine.set_safety_stock("a", "", 6, NOW_MS)
    assert engine.adjust("a", "", -7, NOW_MS).levels == [("a", "", 3, 0, 0, 6)]
    assert engine.set_stock("a", "", 1, 3, NOW_MS).levels == [("a", "", 1, 0, 0, 6)]
    assert engine.set_stock("a", "", 0, None, NOW_MS).levels == [("a", "", 0, 0, 0, 6)]
    assert engine.adjust("a", "", 8, NOW_MS).levels == [("a", "", 8, 0, 2, 6)]
    engine.reserve("r1", "", [("a", "", 2)], TTL_MS, NOW_MS)
    with pytest.raises(OnHandBelowReserved) as caught:
        engine.adjust("a", "", -7, NOW_MS)
    assert (caught.value.on_hand, caught.value.reserved) == (1, 2)
    assert engine.adjust("a", "", -6, NOW_MS).levels == [("a", "", 2, 2, 0, 6)]


def test_an_unknown_item_is_created_with_nothing_on_hand(engine):
    """Setting the safety stock of an unknown item creates it (on hand 0), so a reserve of it
    is short stock, not an unknown item; stock received later sits behind the safety stock."""
    view = engine.set_safety_stock("n", "w1", 3, NOW_MS)
    assert view.levels == [("n", "w1", 0, 0, 0, 3)]
    assert engine.stats()["items"] == 1
    assert engine.get_stock(["n"], "w1", NOW_MS).levels == [("n", "w1", 0, 0, 0, 3)]
    assert engine.get_stock(["n"], "", NOW_MS).levels == []
    with pytest.raises(ShortStock) as caught:
        engine.reserve("r1", "", [("n", "w1", 1)], TTL_MS, NOW_MS)
    assert caught.value.shortfalls == [("n", "w1", 1, 0)]
    assert engine.adjust("n", "w1", 5, NOW_MS).levels == [("n", "w1", 5, 0, 2, 3)]
    assert engine.set_safety_stock("n", "w1", 0, NOW_MS).levels == [("n", "w1", 5, 0, 5, 0)]
    assert engine.stats()["items"] == 1


@pytest.mark.parametrize(("value", "bound"), [
    (ON_HAND_MAX + 1, ON_HAND_MAX),
    (2**70, ON_HAND_MAX),
])
def test_safety_stock_above_its_bound_is_refused_and_changes_nothing(engine, value, bound):
    """Above ON_HAND_MAX is LimitExceeded("safety_stock", ON_HAND_MAX), like set_stock's
    on_hand: no level, item, journal entry or request id changes."""
    stock(engine, a=10)
    pending, lsn_last = engine.journal_pending(), engine.lsn_last()
    check_limit(lambda: engine.set_safety_stock("a", "", value, NOW_MS, request_id="s1"),
                "safety_stock", bound)
    check_limit(lambda: engine.set_safety_stock("new", "", value, NOW_MS), "safety_stock", bound)
    assert level(engine, "a") == (10, 0, 10, 0)
    assert engine.get_stock(["new"], "", NOW_MS).levels == []
    assert engine.stats()["items"] == 1
    assert (engine.journal_pending(), engine.lsn_last()) == (pending, lsn_last)
    # The refused request was not remembered: its id is free for another request.
    view = engine.set_safety_stock("a", "", 2, NOW_MS, request_id="s1")
    assert (view.replayed, view.levels) == (False, [("a", "", 10, 0, 8, 2)])


def test_negative_safety_stock_is_refused_with_bound_zero_like_on_hand(engine):
    """A negative safety stock is LimitExceeded("safety_stock", 0), as set_stock refuses a
    negative on_hand with ("on_hand", 0) (test_engine_limits.test_on_hand_max); nothing
    changes."""
    stock(engine, a=10)
    pending = engine.journal_pending()
    check_limit(lambda: engine.set_safety_stock("a", "", -1, NOW_MS), "safety_stock", 0)
    assert level(engine, "a") == (10, 0, 10, 0)
    assert engine.journal_pending() == pending


def test_safety_stock_bounds_accept_zero_and_on_hand_max(engine):
    """0 and ON_HAND_MAX are both accepted, on a known and on an unknown item."""
    stock(engine, a=10)
    assert engine.set_safety_stock("a", "", ON_HAND_MAX, NOW_MS).levels == [
        ("a", "", 10, 0, 0, ON_HAND_MAX)]
    assert engine.set_safety_stock("a", "", 0, NOW_MS).levels == [("a", "", 10, 0, 10, 0)]
    assert engine.set_safety_stock("b", "", ON_HAND_MAX, NOW_MS).levels == [
        ("b", "", 0, 0, 0, ON_HAND_MAX)]


def test_other_fields_of_set_safety_stock_are_validated(engine):
    """sku, location, reason, actor and request_id have the bounds they have elsewhere."""
    too_long = "x" * (LIMITS["ID_BYTES_MAX"] + 1)
    check_limit(lambda: engine.set_safety_stock("", "", 1, NOW_MS), "sku", 1)
    check_limit(lambda: engine.set_safety_stock(too_long, "", 1, NOW_MS), "sku",
                LIMITS["ID_BYTES_MAX"])
    check_limit(lambda: engine.set_safety_stock("a", too_long, 1, NOW_MS), "location",
                LIMITS["ID_BYTES_MAX"])
    check_limit(lambda: engine.set_safety_stock(
        "a", "", 1, NOW_MS, reason="r" * (LIMITS["REASON_BYTES_MAX"] + 1)), "reason",
        LIMITS["REASON_BYTES_MAX"])
    check_limit(lambda: engine.set_safety_stock(
        "a", "", 1, NOW_MS, actor="a" * (LIMITS["ACTOR_BYTES_MAX"] + 1)), "actor",
        LIMITS["ACTOR_BYTES_MAX"])
    check_limit(lambda: engine.set_safety_stock("a", "", 1, NOW_MS, request_id=too_long),
                "request_id", LIMITS["ID_BYTES_MAX"])
    assert engine.stats()["items"] == 0
    assert engine.journal_pending() == 0


def test_replay_returns_the_first_outcome_and_changes_nothing(engine):
    """The same request id with the same arguments replays the first answer (replayed, its
    LSN, its levels) without a journal entry, even after the levels moved on."""
    stock(engine, a=10)
    first = engine.set_safety_stock("a", "", 3, NOW_MS, reason="count", actor="bob",
                                    request_id="s1")
    assert (first.levels, first.replayed) == ([("a", "", 10, 0, 7, 3)], False)
    engine.set_safety_stock("a", "", 5, NOW_MS)
    pending, lsn_last = engine.journal_pending(), engine.lsn_last()
    replay = engine.set_safety_stock("a", "", 3, NOW_MS + 9, reason="count", actor="bob",
                                     request_id="s1")
    assert (replay.replayed, replay.lsn, replay.levels) == (True, first.lsn, first.levels)
    assert (engine.journal_pending(), engine.lsn_last()) == (pending, lsn_last)
    assert level(engine, "a") == (10, 0, 5, 5)


@pytest.mark.parametrize("call", [
    lambda e: e.set_safety_stock("a", "", 4, NOW_MS, reason="count", request_id="s1"),
    lambda e: e.set_safety_stock("a", "", 3, NOW_MS, reason="other", request_id="s1"),
    lambda e: e.set_safety_stock("a", "", 3, NOW_MS, reason="count", actor="eve",
                                 request_id="s1"),
    lambda e: e.set_safety_stock("b", "", 3, NOW_MS, reason="count", request_id="s1"),
    lambda e: e.set_safety_stock("a", "w1", 3, NOW_MS, reason="count", request_id="s1"),
    lambda e: e.set_stock("a", "", 3, None, NOW_MS, reason="count", request_id="s1"),
    lambda e: e.adjust("a", "", 3, NOW_MS, reason="count", request_id="s1"),
], ids=["safety_stock", "reason", "actor", "sku", "location", "set_stock", "adjust"])
def test_the_same_request_id_with_other_arguments_is_a_conflict(engine, call):
    """Reusing a safety stock request id with any other argument, or for another operation,
    is IdempotencyConflict and changes nothing."""
    stock(engine, a=10, b=10)
    engine.set_safety_stock("a", "", 3, NOW_MS, reason="count", request_id="s1")
    pending = engine.journal_pending()
    with pytest.raises(IdempotencyConflict) as caught:
        call(engine)
    assert (caught.value.code, caught.value.request_id) == ("idempotency_conflict", "s1")
    assert level(engine, "a") == (10, 0, 7, 3)
    assert level(engine, "b") == (10, 0, 10, 0)
    assert engine.journal_pending() == pending


def test_a_set_stock_request_id_is_a_conflict_for_set_safety_stock(engine):
    """A request id first used by set_stock, with otherwise equal arguments, is not replayed
    by set_safety_stock."""
    engine.set_stock("a", "", 3, None, NOW_MS, request_id="q1")
    with pytest.raises(IdempotencyConflict):
        engine.set_safety_stock("a", "", 3, NOW_MS, request_id="q1")
    assert level(engine, "a") == (3, 0, 3, 0)


def test_export_and_load_keep_the_safety_stock(engine):
    """Export rows are (sku, location, on_hand, reserved, safety_stock); a load of them gives
    the same levels and the same refusals, and a remembered safety stock request replays."""
    stock(engine, a=10)
    engine.set_safety_stock("a", "", 4, NOW_MS, request_id="s1")
    engine.set_safety_stock("b", "w1", 2, NOW_MS)
    engine.reserve("r1", "o1", [("a", "", 3)], TTL_MS, NOW_MS)
    records = []
    while (batch := engine.take_journal(2)) is not None:
        records += [(r[0], r[1], r[2], r[3], r[5]) for r in batch.idempotency]
    state = engine.export()
    assert sorted(state.items) == [("a", "", 10, 3, 4), ("b", "w1", 0, 0, 2)]
    restored = small_engine()
    restored.load(state.items, state.holds, records, NOW_MS)
    assert sorted(restored.export().items) == sorted(state.items)
    assert restored.get_stock(["a"], "", NOW_MS).levels == [("a", "", 10, 3, 3, 4)]
    assert restored.get_stock(["b"], "w1", NOW_MS).levels == [("b", "w1", 0, 0, 0, 2)]
    with pytest.raises(ShortStock) as caught:
        restored.reserve("r2", "", [("a", "", 4)], TTL_MS, NOW_MS)
    assert caught.value.shortfalls == [("a", "", 4, 3)]
    replay = restored.set_safety_stock("a", "", 4, NOW_MS, request_id="s1")
    assert (replay.replayed, replay.lsn, replay.levels) == (True, 0, [("a", "", 10, 0, 6, 4)])


def test_load_accepts_a_safety_stock_above_on_hand(engine):
    """A loaded safety stock may exceed what is not held (as after a count below it): the
    item loads with nothing available."""
    engine.load([("a", "", 3, 1, 5)], [("r1", "", NOW_MS + TTL_MS, NOW_MS, [("a", "", 1)])],
                [], NOW_MS)
    assert level(engine, "a") == (3, 1, 0, 5)
    assert engine.export().items == [("a", "", 3, 1, 5)]


@pytest.mark.parametrize("safety_stock", [-1, ON_HAND_MAX + 1])
def test_load_refuses_a_safety_stock_out_of_bounds(engine, safety_stock):
    """A loaded safety stock below 0 or above ON_HAND_MAX is a recovery mismatch; nothing is
    loaded."""
    with pytest.raises(RecoveryMismatch):
        engine.load([("a", "", 10, 0, 0), ("b", "", 10, 0, safety_stock)], [], [], NOW_MS)
    assert engine.stats()["items"] == 0


def test_load_refuses_item_rows_without_a_safety_stock(engine):
    """Item rows are 5-tuples now; the old 4-tuples are refused, nothing loaded."""
    with pytest.raises(ValueError, match="length 5"):
        engine.load([("a", "", 10, 0)], [], [], NOW_MS)
    assert engine.stats()["items"] == 0


def test_journal_batch_item_and_ledger_rows_carry_the_safety_stock(engine):
    """A safety stock change is one "safety" ledger row with zero on-hand and reserved deltas,
    its delta and the safety stock after; the batch's item row ends with the safety stock;
    later rows carry it unchanged."""
    engine.adjust("a", "", 10, NOW_MS)
    engine.take_journal(100)
    engine.set_safety_stock("a", "", 4, NOW_MS + 1, reason="count", actor="bob",
                            request_id="s1")
    engine.reserve("r1", "o1", [("a", "", 2)], TTL_MS, NOW_MS + 2)
    engine.set_safety_stock("a", "", 1, NOW_MS + 3)
    engine.set_safety_stock("n", "w1", 7, NOW_MS + 4)
    batch = engine.take_journal(100)
    assert (batch.lsn_first, batch.lsn_last) == (2, 5)
    assert sorted(batch.items) == [("a", "", 10, 2, 1), ("n", "w1", 0, 0, 7)]
    assert batch.ledger == [
        (2, NOW_MS + 1, "a", "", "safety", 0, 0, 10, 0, 4, 4, "", "", "s1", "count", "bob"),
        (3, NOW_MS + 2, "a", "", "reserve", 0, 2, 10, 2, 0, 4, "r1", "o1", "", "", ""),
        (4, NOW_MS + 3, "a", "", "safety", 0, 0, 10, 2, -3, 1, "", "", "", "", ""),
        (5, NOW_MS + 4, "n", "w1", "safety", 0, 0, 0, 0, 7, 7, "", "", "", "", ""),
    ]
    [record] = batch.idempotency
    assert (record[0], record[2], record[4], record[5]) == ("s1", "safety", 2, NOW_MS + 1)
    assert json.loads(record[3]) == {"kind": "levels", "levels": [["a", "", 10, 0, 6, 4]]}


def test_journal_columns_follow_pg_tables_with_the_safety_stock(engine):
    """PG_TABLES names the new item and ledger columns, and the rendered columns of a batch
    hold the same values as its item and ledger rows."""
    tables = dict(PG_TABLES)
    assert tables["items"] == ["sku", "location", "on_hand", "reserved", "safety_stock"]
    assert tables["ledger"][7:11] == ["on_hand_after", "reserved_after", "delta_safety",
                                      "safety_after"]
    engine.adjust("a", "", 10, NOW_MS)
    engine.set_safety_stock("a", "", 4, NOW_MS, request_id="s1")
    batch = engine.take_journal(100)
    columns = {}
    offset = 0
    for table, names in PG_TABLES:
        columns[table] = dict(zip(names, batch.columns[offset:offset + len(names)],
                                  strict=True))
        offset += len(names)
    assert offset == len(batch.columns)
    assert columns["items"]["safety_stock"] == "{4}"
    assert columns["ledger"]["kind"] == '{"adjust","safety"}'
    assert columns["ledger"]["delta_safety"] == "{0,4}"
    assert columns["ledger"]["safety_after"] == "{0,4}"
    assert columns["ledger"]["delta_on_hand"] == "{10,0}"
