"""Every operation through the binding: accepted and refused input, views, journal contents."""

import pytest
from engine_helpers import NOW_MS, TTL_MS, level, small_engine, stock

from service.engine import (
    LIMITS,
    CapacityExceeded,
    Engine,
    EngineError,
    ExpectedMismatch,
    IdempotencyConflict,
    InvalidRequest,
    JournalBatch,
    LevelsView,
    OnHandBelowReserved,
    RecoveryMismatch,
    ReservationExists,
    ReservationView,
    ShortStock,
    UnknownItem,
    UnknownReservation,
    WrongState,
)


@pytest.fixture
def engine() -> Engine:
    """A small fresh engine per test (no conftest: tests/conftest.py owns that module name)."""
    return small_engine()


def test_reserve_returns_a_view_of_the_hold(engine):
    stock(engine, a=10, b=5)
    view = engine.reserve("r1", "o1", [("a", "", 3), ("b", "", 5)], TTL_MS, NOW_MS)
    assert isinstance(view, ReservationView)
    assert (view.reservation_id, view.order_id, view.status) == ("r1", "o1", "active")
    assert view.lines == [("a", "", 3), ("b", "", 5)]
    assert view.committed_lines == []
    assert view.expires_at_ms == NOW_MS + TTL_MS
    assert view.lsn == 3 and view.replayed is False
    assert level(engine, "a") == (10, 3, 7, 0)


def test_views_are_read_only(engine):
    stock(engine, a=10)
    view = engine.reserve("r1", "", [("a", "", 1)], TTL_MS, NOW_MS)
    with pytest.raises(AttributeError):
        view.status = "committed"


def test_short_stock_names_every_short_item_with_its_available(engine):
    stock(engine, a=1, b=2, c=10)
    with pytest.raises(ShortStock) as caught:
        engine.reserve("r1", "", [("a", "", 2), ("b", "", 2), ("b", "", 1), ("c", "", 1)],
                       TTL_MS, NOW_MS)
    assert caught.value.code == "short_stock"
    assert caught.value.shortfalls == [("a", "", 2, 1), ("b", "", 3, 2)]
    assert level(engine, "c") == (10, 0, 10, 0)


def test_unknown_items_are_a_distinct_error(engine):
    stock(engine, a=1)
    with pytest.raises(UnknownItem) as caught:
        engine.reserve("r1", "", [("a", "", 1), ("x", "w", 1)], TTL_MS, NOW_MS)
    assert caught.value.code == "unknown_item"
    assert caught.value.items == [("x", "w")]
    assert not isinstance(caught.value, ShortStock)


def test_reservation_exists(engine):
    stock(engine, a=5)
    engine.reserve("r1", "", [("a", "", 1)], TTL_MS, NOW_MS)
    with pytest.raises(ReservationExists) as caught:
        engine.reserve("r1", "", [("a", "", 1)], TTL_MS, NOW_MS)
    assert (caught.value.code, caught.value.reservation_id) == ("reservation_exists", "r1")


def test_commit_part_and_release_the_rest(engine):
    stock(engine, a=10, b=10)
    engine.reserve("r1", "", [("a", "", 4), ("b", "", 2)], TTL_MS, NOW_MS)
    view = engine.commit("r1", [("a", "", 3)], NOW_MS + 1)
    assert view.status == "committed"
    assert view.committed_lines == [("a", "", 3)]
    assert level(engine, "a") == (7, 0, 7, 0)
    assert level(engine, "b") == (10, 0, 10, 0)
    again = engine.commit("r1", None, NOW_MS + 2)
    assert (again.status, again.lsn) == ("committed", view.lsn)
    assert again.committed_lines == [("a", "", 3)]


def test_commit_above_held_or_not_held_is_invalid(engine):
    stock(engine, a=10, b=10)
    engine.reserve("r1", "", [("a", "", 4)], TTL_MS, NOW_MS)
    for lines in ([("a", "", 5)], [("b", "", 1)]):
        with pytest.raises(InvalidRequest) as caught:
            engine.commit("r1", lines, NOW_MS)
        assert (caught.value.code, caught.value.field) == ("invalid_request", "lines")
    assert level(engine, "a") == (10, 4, 6, 0)


def test_wrong_state_carries_reservation_status_and_operation(engine):
    stock(engine, a=10)
    engine.reserve("r1", "", [("a", "", 1)], TTL_MS, NOW_MS)
    engine.release("r1", NOW_MS)
    assert engine.release("r1", NOW_MS).status == "released"
    with pytest.raises(WrongState) as caught:
        engine.commit("r1", None, NOW_MS)
    error = caught.value
    assert (error.code, error.reservation_id, error.status, error.operation) == (
        "wrong_state", "r1", "released", "commit")
    engine.reserve("r2", "", [("a", "", 1)], TTL_MS, NOW_MS)
    engine.commit("r2", None, NOW_MS)
    with pytest.raises(WrongState) as caught:
        engine.release("r2", NOW_MS)
    assert (caught.value.status, caught.value.operation) == ("committed", "release")


def test_expired_hold_does_not_count_and_cannot_be_committed(engine):
    stock(engine, a=10)
    engine.reserve("r1", "", [("a", "", 10)], TTL_MS, NOW_MS)
    assert level(engine, "a", NOW_MS + TTL_MS - 1) == (10, 10, 0, 0)
    assert level(engine, "a", NOW_MS + TTL_MS) == (10, 0, 10, 0)
    assert engine.get_reservation("r1", NOW_MS + TTL_MS).status == "expired"
    with pytest.raises(WrongState) as caught:
        engine.commit("r1", None, NOW_MS + TTL_MS)
    assert caught.value.status == "expired"
    with pytest.raises(WrongState):
        engine.extend("r1", TTL_MS, NOW_MS + TTL_MS)


def test_extend_moves_the_expiry(engine):
    stock(engine, a=10)
    engine.reserve("r1", "", [("a", "", 2)], TTL_MS, NOW_MS)
    view = engine.extend("r1", 2 * TTL_MS, NOW_MS + 5)
    assert view.expires_at_ms == NOW_MS + 5 + 2 * TTL_MS
    assert engine.next_expiry_ms() == view.expires_at_ms
    assert level(engine, "a", NOW_MS + TTL_MS) == (10, 2, 8, 0)


def test_extend_away_and_back_to_the_same_expiry_counts_the_hold_once(engine):
    """Regression: the entries of an expiry a hold moved away from must stay stale when it
    moves back to that expiry (they made the hold count twice: reserved 2^64 - 1)."""
    stock(engine, a=10)
    engine.reserve("r1", "", [("a", "", 2)], TTL_MS, NOW_MS)
    engine.extend("r1", 2 * TTL_MS, NOW_MS)
    back = engine.extend("r1", TTL_MS, NOW_MS)
    assert back.expires_at_ms == NOW_MS + TTL_MS
    assert level(engine, "a", NOW_MS) == (10, 2, 8, 0)
    assert engine.expire_due(NOW_MS + TTL_MS, 10) == ["r1"]
    assert level(engine, "a", NOW_MS + TTL_MS) == (10, 0, 10, 0)
    assert engine.expire_due(NOW_MS + 3 * TTL_MS, 10) == []


def test_expire_due_returns_the_ids_it_expired(engine):
    stock(engine, a=10)
    for index in range(3):
        engine.reserve(f"r{index}", "", [("a", "", 1)], TTL_MS + index, NOW_MS)
    assert engine.expire_due(NOW_MS + TTL_MS + 1, 10) == ["r0", "r1"]
    assert engine.next_expiry_ms() == NOW_MS + TTL_MS + 2
    assert engine.expire_due(NOW_MS, 10) == []


def test_unknown_reservation(engine):
    with pytest.raises(UnknownReservation) as caught:
        engine.get_reservation("nope", NOW_MS)
    assert (caught.value.code, caught.value.reservation_id) == ("unknown_reservation", "nope")


def test_decrement_is_all_or_nothing(engine):
    stock(engine, a=10, b=1)
    engine.reserve("r1", "", [("a", "", 8)], TTL_MS, NOW_MS)
    with pytest.raises(ShortStock) as caught:
        engine.decrement([("a", "", 3), ("b", "", 1)], NOW_MS, order_id="o")
    assert caught.value.shortfalls == [("a", "", 3, 2)]
    view = engine.decrement([("a", "", 2), ("b", "", 1)], NOW_MS, order_id="o")
    assert isinstance(view, LevelsView)
    assert view.levels == [("a", "", 8, 8, 0, 0), ("b", "", 0, 0, 0, 0)]


def test_adjust_and_on_hand_below_reserved(engine):
    view = engine.adjust("a", "w1", 5, NOW_MS, reason="receipt", actor="alice")
    assert view.levels == [("a", "w1", 5, 0, 5, 0)]
    engine.reserve("r1", "", [("a", "w1", 4)], TTL_MS, NOW_MS)
    with pytest.raises(OnHandBelowReserved) as caught:
        engine.adjust("a", "w1", -2, NOW_MS)
    error = caught.value
    assert (error.code, error.sku, error.location, error.on_hand, error.reserved) == (
        "on_hand_below_reserved", "a", "w1", 3, 4)
    with pytest.raises(UnknownItem):
        engine.adjust("b", "", -1, NOW_MS)


def test_set_stock_compare_and_set(engine):
    engine.set_stock("a", "", 5, 0, NOW_MS)
    with pytest.raises(ExpectedMismatch) as caught:
        engine.set_stock("a", "", 9, 4, NOW_MS)
    error = caught.value
    assert (error.code, error.sku, error.location, error.expected, error.actual) == (
        "expected_mismatch", "a", "", 4, 5)
    assert engine.set_stock("a", "", 9, 5, NOW_MS).levels == [("a", "", 9, 0, 9, 0)]


def test_get_stock_omits_unknown_skus(engine):
    stock(engine, a=3)
    assert engine.get_stock(["zz", "a"], "", NOW_MS).levels == [("a", "", 3, 0, 3, 0)]


def test_replay_returns_the_first_outcome(engine):
    stock(engine, a=10)
    first = engine.reserve("r1", "o", [("a", "", 2)], TTL_MS, NOW_MS, request_id="q1")
    pending = engine.journal_pending()
    replay = engine.reserve("r2", "o", [("a", "", 2)], TTL_MS, NOW_MS + 9, request_id="q1")
    assert replay.replayed is True
    assert (replay.reservation_id, replay.lsn, replay.lines) == ("r1", first.lsn, first.lines)
    assert engine.journal_pending() == pending
    with pytest.raises(IdempotencyConflict) as caught:
        engine.reserve("r2", "o", [("a", "", 3)], TTL_MS, NOW_MS, request_id="q1")
    assert (caught.value.code, caught.value.request_id) == ("idempotency_conflict", "q1")


def test_capacity_exceeded_names_what_is_full():
    engine = Engine(journal_operations_max=2, reservations_active_max=1)
    engine.adjust("a", "", 5, NOW_MS)
    engine.reserve("r1", "", [("a", "", 1)], TTL_MS, NOW_MS)
    with pytest.raises(CapacityExceeded) as caught:
        engine.adjust("a", "", 1, NOW_MS)
    assert (caught.value.code, caught.value.what) == ("capacity_exceeded", "journal")
    engine.take_journal(10)
    with pytest.raises(CapacityExceeded) as caught:
        engine.reserve("r2", "", [("a", "", 1)], TTL_MS, NOW_MS)
    assert caught.value.what == "reservations_active"


def test_every_error_is_an_engine_error_with_a_code():
    classes = [CapacityExceeded, ExpectedMismatch, IdempotencyConflict, InvalidRequest,
               OnHandBelowReserved, RecoveryMismatch, ReservationExists, ShortStock, UnknownItem,
               UnknownReservation, WrongState]
    for cls in classes:
        assert issubclass(cls, EngineError)
    assert issubclass(EngineError, Exception)


def test_journal_batch_contents(engine):
    engine.adjust("a", "", 10, NOW_MS, reason="receipt", actor="alice", request_id="q0")
    engine.reserve("r1", "o1", [("a", "", 3)], TTL_MS, NOW_MS + 1, request_id="q1")
    engine.commit("r1", [("a", "", 2)], NOW_MS + 2)
    assert engine.journal_pending() == 3
    batch = engine.take_journal(100)
    assert isinstance(batch, JournalBatch)
    assert (batch.lsn_first, batch.lsn_last) == (1, 3)
    assert batch.items == [("a", "", 8, 0, 0)]
    assert batch.reservations == [
        ("r1", "o1", "committed", NOW_MS + 1 + TTL_MS, NOW_MS + 1, NOW_MS + 2, "q1")]
    assert batch.reservation_lines == [("r1", "a", "", 3, 2)]
    assert batch.ledger == [
        (1, NOW_MS, "a", "", "adjust", 10, 0, 10, 0, 0, 0, "", "", "q0", "receipt", "alice"),
        (2, NOW_MS + 1, "a", "", "reserve", 0, 3, 10, 3, 0, 0, "r1", "o1", "q1", "", ""),
        (3, NOW_MS + 2, "a", "", "commit", -2, -3, 8, 0, 0, 0, "r1", "o1", "", "", ""),
    ]
    assert [(r[0], r[2], r[4], r[5]) for r in batch.idempotency] == [
        ("q0", "adjust", 1, NOW_MS), ("q1", "reserve", 2, NOW_MS + 1)]
    assert all(isinstance(r[1], int) and -(2**63) <= r[1] < 2**63 for r in batch.idempotency)
    assert engine.take_journal(100) is None
    assert engine.journal_pending() == 0


def test_journal_records_expirations(engine):
    stock(engine, a=10)
    engine.reserve("r1", "", [("a", "", 3)], TTL_MS, NOW_MS)
    engine.take_journal(100)
    assert engine.expire_due(NOW_MS + TTL_MS, 10) == ["r1"]
    batch = engine.take_journal(100)
    assert batch.reservations[0][:3] == ("r1", "", "expired")
    assert batch.ledger[0][4:11] == ("expire", 0, -3, 10, 0, 0, 0)
    assert batch.reservation_lines == []


def test_load_export_round_trip_and_replays_at_lsn_zero(engine):
    stock(engine, a=10, b=4)
    engine.adjust("c", "north", 7, NOW_MS)
    engine.reserve("r1", "o1", [("a", "", 3), ("c", "north", 2)], TTL_MS, NOW_MS, request_id="q1")
    engine.reserve("r2", "o2", [("b", "", 4)], TTL_MS, NOW_MS)
    records = []
    while (batch := engine.take_journal(2)) is not None:
        records += [(r[0], r[1], r[2], r[3], r[5]) for r in batch.idempotency]
    state = engine.export()
    assert state.idempotency_count == 1
    assert sorted(state.items) == [
        ("a", "", 10, 3, 0), ("b", "", 4, 4, 0), ("c", "north", 7, 2, 0)]
    restored = small_engine()
    restored.load(state.items, state.holds, records, NOW_MS)
    again = restored.export()
    assert sorted(again.items) == sorted(state.items)
    assert sorted(again.holds) == sorted(state.holds)
    replay = restored.reserve("rX", "o1", [("a", "", 3), ("c", "north", 2)], TTL_MS, NOW_MS,
                              request_id="q1")
    assert (replay.reservation_id, replay.replayed, replay.lsn) == ("r1", True, 0)
    assert restored.get_reservation("r2", NOW_MS).lsn == 0


def test_load_refuses_a_reserved_that_is_not_the_sum_of_holds():
    engine = small_engine()
    with pytest.raises(RecoveryMismatch) as caught:
        engine.load([("a", "", 10, 2, 0)], [("r1", "", NOW_MS + TTL_MS, NOW_MS, [("a", "", 3)])],
                    [], NOW_MS)
    assert caught.value.code == "recovery_mismatch"
    assert engine.stats()["items"] == 0


def test_batches_return_views_and_errors_in_order(engine):
    stock(engine, a=3)
    results = engine.reserve_batch([
        ("r1", "o", [("a", "", 2)], TTL_MS, None),
        ("r2", "o", [("a", "", 2)], TTL_MS, "q2"),
        ("r3", "o", [("a", "", 1)], TTL_MS, None),
    ], NOW_MS)
    assert isinstance(results[0], ReservationView)
    assert isinstance(results[1], ShortStock) and results[1].shortfalls == [("a", "", 2, 1)]
    assert results[2].status == "active"
    commits = engine.commit_batch([("r1", None, None), ("nope", None, None)], NOW_MS)
    assert commits[0].status == "committed"
    assert isinstance(commits[1], UnknownReservation)
    releases = engine.release_batch([("r3", "q9"), ("r1", None)], NOW_MS)
    assert releases[0].status == "released"
    assert isinstance(releases[1], WrongState)


def test_stats_counts_tables(engine):
    stock(engine, a=3)
    engine.reserve("r1", "", [("a", "", 1)], TTL_MS, NOW_MS)
    stats = engine.stats()
    assert stats["items"] == 1 and stats["reservations_active"] == 1
    assert stats["journal_pending"] == 2 and stats["lsn_last"] == 2


def test_limits_are_exported():
    assert LIMITS["ID_BYTES_MAX"] == 128
    assert LIMITS["LINES_PER_REQUEST_MAX"] == 1_000
    assert LIMITS["QUANTITY_MAX"] == 1_000_000_000
    assert LIMITS["ON_HAND_MAX"] == 10**15
    assert (LIMITS["TTL_MS_MIN"], LIMITS["TTL_MS_MAX"], LIMITS["TTL_MS_DEFAULT"]) == (
        1_000, 86_400_000, 900_000)
    assert (LIMITS["REASON_BYTES_MAX"], LIMITS["ACTOR_BYTES_MAX"]) == (256, 128)
    assert LIMITS["BATCH_REQUESTS_MAX"] == 1_000
    assert LIMITS["EXPIRE_BATCH_MAX"] == 10_000
    assert LIMITS["JOURNAL_TAKE_OPERATIONS_MAX"] == 10_000


def test_stored_fingerprints_keep_their_values():
    """Fingerprints are stored with idempotency records (PostgreSQL, and across upgrades): a
    retry after an upgrade must match the record an older version wrote. These values were
    written by the engine before safety stock existed (1df9b28) and must never change."""
    engine = Engine()
    engine.set_stock("a", "w", 10, None, NOW_MS, reason="count", actor="bob", request_id="q-set")
    engine.set_stock("a", "w", 12, 10, NOW_MS, reason="count", actor="bob", request_id="q-cas")
    engine.adjust("a", "w", -3, NOW_MS, reason="broken", actor="amy", request_id="q-adj")
    engine.decrement([("a", "w", 1)], NOW_MS, order_id="o", request_id="q-dec")
    batch = engine.take_journal(100)
    assert sorted((row[0], row[1]) for row in batch.idempotency) == [
        ("q-adj", 194872697615461809), ("q-cas", 6388004243800478211),
        ("q-dec", -4632421982781817986), ("q-set", 4763753963071733060)]
