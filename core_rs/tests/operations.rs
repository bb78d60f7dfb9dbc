//! One behaviour per test, for every operation: accepted input, refused input, and what
//! the journal records.

use core_rs::engine::Annotation;
use core_rs::errors::Shortfall;
use core_rs::expiry::{ExpiryQueue, EXPIRY_SWEEP_SLACK};
use core_rs::lazy_heap::STALE_FACTOR;
use core_rs::limits::{ID_BYTES_MAX, LINES_PER_REQUEST_MAX, ON_HAND_MAX, QUANTITY_MAX, TTL_MS_MAX};
use core_rs::reservation::Status;
use core_rs::view::LevelsView;
use core_rs::{Engine, EngineConfig, EngineError, LineInput, LoadHold, LoadIdempotency, LoadItem};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const TTL: i64 = 60_000;
const NOW: i64 = 1_000_000;

fn engine() -> Engine {
    let config = EngineConfig {
        idempotency_records_max: 100,
        reservations_active_max: 100,
        reservations_terminal_max: 10,
        items_max: 100,
        journal_operations_max: 1_000,
        holds_presized: 0,
    };
    Engine::new(config).unwrap()
}

fn line(sku: &str, quantity: i64) -> LineInput<'_> {
    LineInput {
        sku,
        location: "",
        quantity,
    }
}

fn stocked(items: &[(&str, i64)]) -> Engine {
    let mut engine = engine();
    for (sku, on_hand) in items {
        engine
            .adjust(sku, "", *on_hand, NOW, Annotation::default())
            .unwrap();
    }
    engine
}

/// (on_hand, reserved, available) of a default-location sku at `now_ms`.
fn level(engine: &Engine, sku: &str, now_ms: i64) -> (u64, u64, u64) {
    let view = engine.get_stock(&[sku], "", now_ms).unwrap();
    let level = &view.levels[0];
    (level.on_hand, level.reserved, level.available)
}

#[test]
fn reserve_holds_every_line() {
    let mut engine = stocked(&[("a", 10), ("b", 5)]);
    let answer = engine
        .reserve("r1", "o1", &[line("a", 3), line("b", 5)], TTL, NOW, None)
        .unwrap();
    let view = engine.view(&answer).unwrap();
    assert_eq!(view.status, Status::Active);
    assert_eq!(view.expires_at_ms, NOW + TTL);
    assert_eq!(level(&engine, "a", NOW), (10, 3, 7));
    assert_eq!(level(&engine, "b", NOW), (5, 5, 0));
    engine.check_invariants();
}

#[test]
fn reserve_sums_lines_of_the_same_item_before_checking() {
    let mut engine = stocked(&[("a", 5)]);
    let error = engine
        .reserve("r1", "", &[line("a", 3), line("a", 3)], TTL, NOW, None)
        .unwrap_err();
    match error {
        EngineError::ShortStock { shortfalls } => {
            assert_eq!(shortfalls.len(), 1);
            assert_eq!((shortfalls[0].requested, shortfalls[0].available), (6, 5));
        }
        other => panic!("expected ShortStock, got {other:?}"),
    }
    let answer = engine
        .reserve("r1", "", &[line("a", 2), line("a", 3)], TTL, NOW, None)
        .unwrap();
    let view = engine.view(&answer).unwrap();
    assert_eq!(view.lines().len(), 1);
    assert_eq!(view.lines()[0].quantity, 5);
}

#[test]
fn reserve_is_all_or_nothing_and_names_every_short_item() {
    let mut engine = stocked(&[("a", 1), ("b", 1), ("c", 10)]);
    let lines = [line("a", 2), line("b", 3), line("c", 1)];
    let error = engine
        .reserve("r1", "", &lines, TTL, NOW, None)
        .unwrap_err();
    let EngineError::ShortStock { shortfalls } = error else {
        panic!("{error:?}")
    };
    let named: Vec<(&str, u64, u64)> = shortfalls
        .iter()
        .map(|s| (&*s.sku, s.requested, s.available))
        .collect();
    assert_eq!(named, vec![("a", 2, 1), ("b", 3, 1)]);
    assert_eq!(level(&engine, "c", NOW), (10, 0, 10));
    assert_eq!(
        engine.journal_pending(),
        3,
        "only the three adjusts are journaled"
    );
}

#[test]
fn reserve_of_unknown_items_is_its_own_error() {
    let mut engine = stocked(&[("a", 1)]);
    let lines = [line("a", 1), line("x", 1), line("y", 1), line("x", 1)];
    let error = engine
        .reserve("r1", "", &lines, TTL, NOW, None)
        .unwrap_err();
    let expected = vec![
        ("x".to_string(), String::new()),
        ("y".to_string(), String::new()),
    ];
    assert_eq!(error, EngineError::UnknownItem { items: expected });
}

#[test]
fn reserve_refuses_an_existing_reservation_id() {
    let mut engine = stocked(&[("a", 5)]);
    engine
        .reserve("r1", "", &[line("a", 1)], TTL, NOW, None)
        .unwrap();
    let error = engine
        .reserve("r1", "", &[line("a", 1)], TTL, NOW, None)
        .unwrap_err();
    assert_eq!(
        error,
        EngineError::ReservationExists {
            reservation_id: "r1".into()
        }
    );
}

#[test]
fn reserve_enforces_limits() {
    let mut engine = stocked(&[("a", 5)]);
    let long = "x".repeat(ID_BYTES_MAX + 1);
    let cases: Vec<(EngineError, EngineResultOf)> = vec![
        (
            limit("reservation_id", ID_BYTES_MAX as u64),
            Box::new(|e: &mut Engine| {
                e.reserve(
                    &"x".repeat(ID_BYTES_MAX + 1),
                    "",
                    &[line("a", 1)],
                    TTL,
                    NOW,
                    None,
                )
                .map(drop)
            }),
        ),
        (
            limit("reservation_id", 1),
            Box::new(|e: &mut Engine| e.reserve("", "", &[line("a", 1)], TTL, NOW, None).map(drop)),
        ),
        (
            limit("quantity", 1),
            Box::new(|e: &mut Engine| {
                e.reserve("r", "", &[line("a", 0)], TTL, NOW, None)
                    .map(drop)
            }),
        ),
        (
            limit("quantity", QUANTITY_MAX),
            Box::new(|e: &mut Engine| {
                e.reserve(
                    "r",
                    "",
                    &[line("a", QUANTITY_MAX as i64 + 1)],
                    TTL,
                    NOW,
                    None,
                )
                .map(drop)
            }),
        ),
        (
            limit("lines", 1),
            Box::new(|e: &mut Engine| e.reserve("r", "", &[], TTL, NOW, None).map(drop)),
        ),
        (
            limit("ttl_ms", TTL_MS_MAX as u64),
            Box::new(|e: &mut Engine| {
                e.reserve("r", "", &[line("a", 1)], TTL_MS_MAX + 1, NOW, None)
                    .map(drop)
            }),
        ),
        (
            limit("ttl_ms", 1_000),
            Box::new(|e: &mut Engine| {
                e.reserve("r", "", &[line("a", 1)], 999, NOW, None)
                    .map(drop)
            }),
        ),
        (
            limit("request_id", 1),
            Box::new(|e: &mut Engine| {
                e.reserve("r", "", &[line("a", 1)], TTL, NOW, Some(""))
                    .map(drop)
            }),
        ),
    ];
    for (expected, call) in cases {
        assert_eq!(call(&mut engine).unwrap_err(), expected);
    }
    let sku = long.as_str();
    let error = engine
        .reserve("r", "", &[line(sku, 1)], TTL, NOW, None)
        .unwrap_err();
    assert_eq!(error, limit("sku", ID_BYTES_MAX as u64));
    let many: Vec<LineInput<'_>> = (0..=LINES_PER_REQUEST_MAX).map(|_| line("a", 1)).collect();
    let error = engine.reserve("r", "", &many, TTL, NOW, None).unwrap_err();
    assert_eq!(error, limit("lines", LINES_PER_REQUEST_MAX as u64));
    assert_eq!(level(&engine, "a", NOW), (5, 0, 5));
}

type EngineResultOf = Box<dyn Fn(&mut Engine) -> Result<(), EngineError>>;

fn limit(field: &'static str, bound: u64) -> EngineError {
    EngineError::LimitExceeded { field, bound }
}

#[test]
fn reserve_refuses_beyond_active_capacity() {
    let config = EngineConfig {
        reservations_active_max: 2,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config).unwrap();
    engine
        .adjust("a", "", 10, NOW, Annotation::default())
        .unwrap();
    engine
        .reserve("r1", "", &[line("a", 1)], TTL, NOW, None)
        .unwrap();
    engine
        .reserve("r2", "", &[line("a", 1)], TTL, NOW, None)
        .unwrap();
    let error = engine
        .reserve("r3", "", &[line("a", 1)], TTL, NOW, None)
        .unwrap_err();
    assert_eq!(
        error,
        EngineError::CapacityExceeded {
            what: "reservations_active"
        }
    );
    engine.release("r1", NOW, None).unwrap();
    engine
        .reserve("r3", "", &[line("a", 1)], TTL, NOW, None)
        .unwrap();
}

#[test]
fn commit_everything_leaves_on_hand() {
    let mut engine = stocked(&[("a", 10)]);
    engine
        .reserve("r1", "", &[line("a", 4)], TTL, NOW, None)
        .unwrap();
    let answer = engine.commit("r1", None, NOW + 1, None).unwrap();
    let view = engine.view(&answer).unwrap();
    assert_eq!(view.status, Status::Committed);
    assert_eq!(view.committed_lines()[0].quantity, 4);
    assert_eq!(level(&engine, "a", NOW + 1), (6, 0, 6));
    engine.check_invariants();
}

#[test]
fn commit_part_releases_the_rest() {
    let mut engine = stocked(&[("a", 10), ("b", 10)]);
    engine
        .reserve("r1", "", &[line("a", 4), line("b", 2)], TTL, NOW, None)
        .unwrap();
    let answer = engine
        .commit("r1", Some(&[line("a", 1), line("a", 2)]), NOW, None)
        .unwrap();
    let view = engine.view(&answer).unwrap();
    assert_eq!(view.committed_lines().len(), 1);
    assert_eq!(view.committed_lines()[0].quantity, 3);
    assert_eq!(level(&engine, "a", NOW), (7, 0, 7));
    assert_eq!(level(&engine, "b", NOW), (10, 0, 10));
}

#[test]
fn commit_refuses_items_not_held_or_above_held() {
    let mut engine = stocked(&[("a", 10), ("b", 10)]);
    engine
        .reserve("r1", "", &[line("a", 4)], TTL, NOW, None)
        .unwrap();
    let error = engine
        .commit("r1", Some(&[line("b", 1)]), NOW, None)
        .unwrap_err();
    assert!(matches!(
        error,
        EngineError::InvalidRequest { field: "lines", .. }
    ));
    let error = engine
        .commit("r1", Some(&[line("a", 3), line("a", 2)]), NOW, None)
        .unwrap_err();
    assert!(matches!(
        error,
        EngineError::InvalidRequest { field: "lines", .. }
    ));
    assert_eq!(level(&engine, "a", NOW), (10, 4, 6));
}

#[test]
fn commit_is_idempotent_and_refused_after_release_or_expiry() {
    let mut engine = stocked(&[("a", 10)]);
    engine
        .reserve("r1", "", &[line("a", 4)], TTL, NOW, None)
        .unwrap();
    let answer = engine.commit("r1", None, NOW, None).unwrap();
    let first = engine.view(&answer).unwrap();
    let answer = engine
        .commit("r1", Some(&[line("a", 1)]), NOW + 5, None)
        .unwrap();
    let again = engine.view(&answer).unwrap();
    assert_eq!(first, again);
    assert_eq!(level(&engine, "a", NOW), (6, 0, 6));

    engine
        .reserve("r2", "", &[line("a", 1)], TTL, NOW, None)
        .unwrap();
    engine.release("r2", NOW, None).unwrap();
    let error = engine.commit("r2", None, NOW, None).unwrap_err();
    let expected = EngineError::WrongState {
        reservation_id: "r2".into(),
        status: Status::Released,
        operation: "commit",
    };
    assert_eq!(error, expected);

    engine
        .reserve("r3", "", &[line("a", 1)], TTL, NOW, None)
        .unwrap();
    let error = engine.commit("r3", None, NOW + TTL, None).unwrap_err();
    assert!(matches!(
        error,
        EngineError::WrongState {
            status: Status::Expired,
            ..
        }
    ));
    assert_eq!(level(&engine, "a", NOW + TTL), (6, 0, 6));
    engine.check_invariants();
}

#[test]
fn release_is_idempotent_and_refused_after_commit() {
    let mut engine = stocked(&[("a", 10)]);
    engine
        .reserve("r1", "", &[line("a", 4)], TTL, NOW, None)
        .unwrap();
    let answer = engine.release("r1", NOW, None).unwrap();
    let first = engine.view(&answer).unwrap();
    assert_eq!(first.status, Status::Released);
    let again = engine.release("r1", NOW + 1, None).unwrap();
    assert_eq!(engine.view(&again).unwrap(), first);
    assert_eq!(level(&engine, "a", NOW), (10, 0, 10));
    engine
        .reserve("r2", "", &[line("a", 4)], TTL, NOW, None)
        .unwrap();
    engine.commit("r2", None, NOW, None).unwrap();
    let error = engine.release("r2", NOW, None).unwrap_err();
    assert!(matches!(
        error,
        EngineError::WrongState {
            status: Status::Committed,
            ..
        }
    ));
    let error = engine.release("nope", NOW, None).unwrap_err();
    assert_eq!(
        error,
        EngineError::UnknownReservation {
            reservation_id: "nope".into()
        }
    );
}

#[test]
fn release_of_a_due_hold_answers_expired() {
    let mut engine = stocked(&[("a", 10)]);
    engine
        .reserve("r1", "", &[line("a", 4)], TTL, NOW, None)
        .unwrap();
    let answer = engine.release("r1", NOW + TTL, None).unwrap();
    let view = engine.view(&answer).unwrap();
    assert_eq!(view.status, Status::Expired);
    let batch = engine.take_journal(100).unwrap().unwrap();
    assert_eq!(batch.ledger().last().unwrap().kind, "expire");
}

#[test]
fn extend_only_while_active() {
    let mut engine = stocked(&[("a", 10)]);
    engine
        .reserve("r1", "", &[line("a", 4)], TTL, NOW, None)
        .unwrap();
    let answer = engine.extend("r1", 2 * TTL, NOW + 10).unwrap();
    let view = engine.view(&answer).unwrap();
    assert_eq!(view.expires_at_ms, NOW + 10 + 2 * TTL);
    assert_eq!(
        level(&engine, "a", NOW + TTL),
        (10, 4, 6),
        "old expiry no longer applies"
    );
    assert_eq!(engine.next_expiry_ms(), Some(NOW + 10 + 2 * TTL));
    assert!(engine.expire_due(NOW + TTL, 10).unwrap().is_empty());
    engine.release("r1", NOW + 20, None).unwrap();
    let error = engine.extend("r1", TTL, NOW + 30).unwrap_err();
    assert!(matches!(
        error,
        EngineError::WrongState {
            operation: "extend",
            ..
        }
    ));
    engine.check_invariants();
}

#[test]
fn expired_holds_stop_counting_before_any_sweep() {
    let mut engine = stocked(&[("a", 10)]);
    engine
        .reserve("r1", "", &[line("a", 10)], TTL, NOW, None)
        .unwrap();
    assert_eq!(level(&engine, "a", NOW + TTL - 1), (10, 10, 0));
    assert_eq!(level(&engine, "a", NOW + TTL), (10, 0, 10));
    assert_eq!(
        engine.get_reservation("r1", NOW + TTL).unwrap().status(),
        Status::Expired
    );
    // A new hold on the item expires the old one first (journaled) and succeeds.
    engine
        .reserve("r2", "", &[line("a", 10)], TTL, NOW + TTL, None)
        .unwrap();
    assert_eq!(
        engine.get_reservation("r1", NOW).unwrap().status(),
        Status::Expired
    );
    engine.check_invariants();
}

#[test]
fn expire_due_sweeps_in_bounded_batches_in_expiry_order() {
    let mut engine = stocked(&[("a", 100)]);
    for index in 0..5 {
        let id = format!("r{index}");
        engine
            .reserve(&id, "", &[line("a", 1)], TTL + 10 * (5 - index), NOW, None)
            .unwrap();
    }
    assert_eq!(engine.next_expiry_ms(), Some(NOW + TTL + 10));
    let first = engine.expire_due(NOW + 2 * TTL, 2).unwrap();
    assert_eq!(
        first.iter().map(|id| &**id).collect::<Vec<_>>(),
        vec!["r4", "r3"]
    );
    let rest = engine.expire_due(NOW + 2 * TTL, 10).unwrap();
    assert_eq!(rest.len(), 3);
    assert_eq!(engine.next_expiry_ms(), None);
    assert_eq!(level(&engine, "a", NOW), (100, 0, 100));
    assert_eq!(
        engine.expire_due(NOW, 0).unwrap_err(),
        limit("max_count", 1)
    );
    engine.check_invariants();
}

#[test]
fn decrement_is_all_or_nothing_within_available() {
    let mut engine = stocked(&[("a", 10), ("b", 1)]);
    engine
        .reserve("r1", "", &[line("a", 8)], TTL, NOW, None)
        .unwrap();
    let error = engine
        .decrement(&[line("a", 3), line("b", 1)], NOW, "o", None)
        .unwrap_err();
    assert!(matches!(error, EngineError::ShortStock { .. }));
    assert_eq!(level(&engine, "b", NOW), (1, 0, 1));
    let view = engine
        .decrement(&[line("a", 2), line("b", 1)], NOW, "o", None)
        .unwrap();
    assert_eq!(view.levels[0].on_hand, 8);
    assert_eq!(view.levels[1].available, 0);
    let error = engine
        .decrement(&[line("zz", 1)], NOW, "", None)
        .unwrap_err();
    assert!(matches!(error, EngineError::UnknownItem { .. }));
}

#[test]
fn adjust_creates_and_never_drops_below_reserved() {
    let mut engine = engine();
    let error = engine
        .adjust("a", "", -1, NOW, Annotation::default())
        .unwrap_err();
    assert!(matches!(error, EngineError::UnknownItem { .. }));
    engine
        .adjust("a", "w1", 5, NOW, Annotation::default())
        .unwrap();
    engine
        .reserve(
            "r1",
            "",
            &[LineInput {
                sku: "a",
                location: "w1",
                quantity: 4,
            }],
            TTL,
            NOW,
            None,
        )
        .unwrap();
    let error = engine
        .adjust("a", "w1", -2, NOW, Annotation::default())
        .unwrap_err();
    let expected = EngineError::OnHandBelowReserved {
        sku: "a".into(),
        location: "w1".into(),
        on_hand: 3,
        reserved: 4,
    };
    assert_eq!(error, expected);
    engine
        .adjust("a", "w1", -1, NOW, Annotation::default())
        .unwrap();
    let error = engine
        .adjust("a", "w1", 0, NOW, Annotation::default())
        .unwrap_err();
    assert_eq!(error, limit("delta", 1));
    engine.check_invariants();
}

#[test]
fn adjust_never_exceeds_on_hand_max() {
    let mut engine = engine();
    engine
        .set_stock(
            "a",
            "",
            ON_HAND_MAX as i64,
            None,
            NOW,
            Annotation::default(),
        )
        .unwrap();
    let error = engine
        .adjust("a", "", 1, NOW, Annotation::default())
        .unwrap_err();
    assert_eq!(error, limit("on_hand", ON_HAND_MAX));
}

#[test]
fn set_stock_is_compare_and_set() {
    let mut engine = engine();
    let error = engine
        .set_stock("a", "", 5, Some(3), NOW, Annotation::default())
        .unwrap_err();
    assert!(matches!(
        error,
        EngineError::ExpectedMismatch {
            expected: 3,
            actual: 0,
            ..
        }
    ));
    engine
        .set_stock("a", "", 5, Some(0), NOW, Annotation::default())
        .unwrap();
    let error = engine
        .set_stock("a", "", 9, Some(4), NOW, Annotation::default())
        .unwrap_err();
    assert!(matches!(
        error,
        EngineError::ExpectedMismatch {
            expected: 4,
            actual: 5,
            ..
        }
    ));
    engine
        .reserve("r1", "", &[line("a", 3)], TTL, NOW, None)
        .unwrap();
    let error = engine
        .set_stock("a", "", 2, Some(5), NOW, Annotation::default())
        .unwrap_err();
    assert!(matches!(
        error,
        EngineError::OnHandBelowReserved {
            on_hand: 2,
            reserved: 3,
            ..
        }
    ));
    // Once the hold is due it no longer counts, so the count may go below it.
    engine
        .set_stock("a", "", 2, Some(5), NOW + TTL, Annotation::default())
        .unwrap();
    assert_eq!(level(&engine, "a", NOW + TTL), (2, 0, 2));
    engine.check_invariants();
}

#[test]
fn idempotent_replay_returns_the_first_outcome_and_changes_nothing() {
    let mut engine = stocked(&[("a", 10)]);
    let answer = engine
        .reserve("r1", "o", &[line("a", 2)], TTL, NOW, Some("q1"))
        .unwrap();
    let first = engine.view(&answer).unwrap();
    let pending = engine.journal_pending();
    let answer = engine
        .reserve("r9", "o", &[line("a", 2)], TTL, NOW + 5, Some("q1"))
        .unwrap();
    let replay = engine.view(&answer).unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.reservation_id(), first.reservation_id());
    assert_eq!(replay.lsn, first.lsn);
    assert_eq!(engine.journal_pending(), pending);
    assert_eq!(level(&engine, "a", NOW), (10, 2, 8));
    let error = engine
        .reserve("r9", "o", &[line("a", 3)], TTL, NOW, Some("q1"))
        .unwrap_err();
    assert_eq!(
        error,
        EngineError::IdempotencyConflict {
            request_id: "q1".into()
        }
    );
    let error = engine
        .decrement(&[line("a", 2)], NOW, "o", Some("q1"))
        .unwrap_err();
    assert!(matches!(error, EngineError::IdempotencyConflict { .. }));
}

#[test]
fn refused_requests_are_not_remembered() {
    let mut engine = stocked(&[("a", 1)]);
    let error = engine
        .decrement(&[line("a", 2)], NOW, "", Some("q1"))
        .unwrap_err();
    assert!(matches!(error, EngineError::ShortStock { .. }));
    engine
        .adjust("a", "", 5, NOW, Annotation::default())
        .unwrap();
    let view = engine
        .decrement(&[line("a", 2)], NOW, "", Some("q1"))
        .unwrap();
    assert!(!view.replayed);
    assert_eq!(view.levels[0].on_hand, 4);
}

#[test]
fn idempotency_records_are_bounded_oldest_first() {
    let config = EngineConfig {
        idempotency_records_max: 2,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config).unwrap();
    for index in 0..3 {
        let request_id = format!("q{index}");
        let annotation = Annotation {
            request_id: Some(&request_id),
            ..Annotation::default()
        };
        engine.adjust("a", "", 1, NOW, annotation).unwrap();
    }
    assert_eq!(engine.stats().idempotency_records, 2);
    // q0 was evicted: the same request is applied again.
    let annotation = Annotation {
        request_id: Some("q0"),
        ..Annotation::default()
    };
    let view = engine.adjust("a", "", 1, NOW, annotation).unwrap();
    assert!(!view.replayed);
    assert_eq!(view.levels[0].on_hand, 4);
    let annotation = Annotation {
        request_id: Some("q2"),
        ..Annotation::default()
    };
    assert!(engine.adjust("a", "", 1, NOW, annotation).unwrap().replayed);
}

#[test]
fn terminal_reservations_are_retained_up_to_their_bound() {
    let mut engine = stocked(&[("a", 100)]);
    for index in 0..11 {
        let id = format!("r{index}");
        engine
            .reserve(&id, "", &[line("a", 1)], TTL, NOW, None)
            .unwrap();
        engine.release(&id, NOW, None).unwrap();
    }
    assert!(matches!(
        engine.get_reservation("r0", NOW).unwrap_err(),
        EngineError::UnknownReservation { .. }
    ));
    assert_eq!(
        engine.get_reservation("r1", NOW).unwrap().status(),
        Status::Released
    );
    assert_eq!(engine.stats().reservations_terminal, 10);
    engine.check_invariants();
}

#[test]
fn journal_is_bounded_and_drained_in_order() {
    let config = EngineConfig {
        journal_operations_max: 3,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config).unwrap();
    for _ in 0..3 {
        engine
            .adjust("a", "", 1, NOW, Annotation::default())
            .unwrap();
    }
    let error = engine
        .adjust("a", "", 1, NOW, Annotation::default())
        .unwrap_err();
    assert_eq!(error, EngineError::CapacityExceeded { what: "journal" });
    let batch = engine.take_journal(2).unwrap().unwrap();
    assert_eq!((batch.lsn_first, batch.lsn_last), (1, 2));
    assert_eq!(batch.items.len(), 1);
    assert_eq!(
        batch.items.get(0).on_hand,
        2,
        "final value as of the batch, not the engine"
    );
    let batch = engine.take_journal(10).unwrap().unwrap();
    assert_eq!((batch.lsn_first, batch.lsn_last), (3, 3));
    assert!(engine.take_journal(10).unwrap().is_none());
    assert_eq!(
        engine.take_journal(0).unwrap_err(),
        limit("max_operations", 1)
    );
}

#[test]
fn journal_aggregates_reservations_and_lines() {
    let mut engine = stocked(&[("a", 10), ("b", 10)]);
    engine.take_journal(100).unwrap();
    engine
        .reserve(
            "r1",
            "o1",
            &[line("a", 3), line("b", 2)],
            TTL,
            NOW,
            Some("q"),
        )
        .unwrap();
    engine
        .commit("r1", Some(&[line("a", 1)]), NOW + 1, None)
        .unwrap();
    engine
        .reserve("r2", "o2", &[line("a", 1)], TTL, NOW, None)
        .unwrap();
    let batch = engine.take_journal(100).unwrap().unwrap();
    assert_eq!(batch.reservations().len(), 2);
    let r1 = batch.reservations().next().unwrap();
    assert_eq!(
        (r1.reservation_id, r1.status, r1.request_id),
        ("r1", "committed", Some("q"))
    );
    let lines: Vec<_> = batch
        .reservation_lines()
        .map(|l| (l.reservation_id, l.sku, l.quantity, l.quantity_committed))
        .collect();
    assert_eq!(
        lines,
        vec![("r1", "a", 3, 1), ("r1", "b", 2, 0), ("r2", "a", 1, 0)]
    );
    let items: Vec<_> = batch
        .items
        .iter()
        .map(|i| (i.sku, i.on_hand, i.reserved))
        .collect();
    assert_eq!(items, vec![("a", 9, 1), ("b", 10, 0)]);
    assert_eq!(batch.ledger().len(), 5);
    assert_eq!(batch.idempotency.len(), 1);
    assert!(batch.idempotency[0]
        .outcome_json
        .contains("\"reservation_id\":\"r1\""));
    // A later commit of a reservation created earlier writes its committed quantities.
    engine.commit("r2", None, NOW, None).unwrap();
    let batch = engine.take_journal(100).unwrap().unwrap();
    assert_eq!(batch.reservation_lines().len(), 1);
    let line = batch.reservation_lines().next().unwrap();
    assert_eq!(line.quantity_committed, 1);
}

/// The binding converts each item and reservation once and finds it again by row position,
/// so every row's positions must name the row with the same item or reservation.
#[test]
fn journal_row_positions_name_their_rows() {
    let mut engine = stocked(&[("a", 10), ("b", 10)]);
    engine.take_journal(100).unwrap();
    engine
        .reserve("r1", "o1", &[line("b", 1), line("a", 2)], TTL, NOW, None)
        .unwrap();
    engine
        .reserve("r2", "o2", &[line("a", 1)], TTL, NOW, None)
        .unwrap();
    engine.commit("r1", None, NOW, None).unwrap();
    engine.release("r2", NOW, Some("q")).unwrap();
    let batch = engine.take_journal(100).unwrap().unwrap();
    let reservations: Vec<_> = batch.reservations().collect();
    assert_eq!(reservations.len(), 2);
    for row in batch.ledger() {
        let item = batch.items.get(row.item_row);
        assert_eq!((item.sku, item.location), (row.sku, row.location));
        let reservation = &reservations[row.reservation_row.expect("reservation operation")];
        assert_eq!(reservation.reservation_id, row.reservation_id);
        assert_eq!(reservation.order_id, row.order_id);
    }
    for line in batch.reservation_lines() {
        let item = batch.items.get(line.item_row);
        assert_eq!((item.sku, item.location), (line.sku, line.location));
        assert_eq!(
            reservations[line.reservation_row].reservation_id,
            line.reservation_id
        );
    }
    let operations: Vec<_> = batch.ledger().map(|row| row.operation).collect();
    assert_eq!(operations, vec![0, 0, 1, 2, 2, 3]);
    let request_ids: Vec<_> = batch.ledger().map(|row| row.request_id).collect();
    assert_eq!(request_ids, vec!["", "", "", "", "", "q"]);
}

#[test]
fn load_and_export_round_trip() {
    let mut engine = stocked(&[("a", 10), ("b", 5)]);
    engine
        .set_safety_stock("b", "", 2, NOW, Annotation::default())
        .unwrap();
    engine
        .reserve(
            "r1",
            "o1",
            &[line("a", 3), line("b", 1)],
            TTL,
            NOW,
            Some("q1"),
        )
        .unwrap();
    let journal = engine.take_journal(100).unwrap().unwrap();
    let state = engine.export();
    let items: Vec<LoadItem> = state
        .items
        .iter()
        .map(|(sku, location, on_hand, reserved, safety)| LoadItem {
            sku: sku.to_string(),
            location: location.to_string(),
            on_hand: *on_hand as i64,
            reserved: *reserved as i64,
            safety_stock: *safety as i64,
        })
        .collect();
    let holds: Vec<LoadHold> = state
        .holds
        .iter()
        .map(|hold| LoadHold {
            reservation_id: hold.reservation_id.to_string(),
            order_id: hold.order_id.to_string(),
            expires_at_ms: hold.expires_at_ms,
            created_at_ms: hold.created_at_ms,
            lines: hold
                .lines
                .iter()
                .map(|l| (l.sku.to_string(), l.location.to_string(), l.quantity as i64))
                .collect(),
        })
        .collect();
    let records: Vec<LoadIdempotency> = journal
        .idempotency
        .iter()
        .map(|row| LoadIdempotency {
            request_id: row.request_id.to_string(),
            fingerprint: row.fingerprint,
            operation: row.operation.to_string(),
            outcome_json: row.outcome_json.clone(),
            created_at_ms: row.created_at_ms,
        })
        .collect();
    let mut restored = engine_with_defaults();
    restored.load(&items, &holds, &records, NOW).unwrap();
    assert_eq!(restored.export(), state);
    let answer = restored
        .reserve(
            "rX",
            "o1",
            &[line("a", 3), line("b", 1)],
            TTL,
            NOW,
            Some("q1"),
        )
        .unwrap();
    let replay = restored.view(&answer).unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.lsn, 0);
    assert_eq!(replay.reservation_id(), "r1");
    restored.check_invariants();
    let error = restored.load(&items, &holds, &records, NOW).unwrap_err();
    assert!(matches!(error, EngineError::RecoveryMismatch { .. }));
}

fn engine_with_defaults() -> Engine {
    Engine::new(EngineConfig::default()).unwrap()
}

#[test]
fn load_refuses_reserved_that_differs_from_holds() {
    let items = vec![LoadItem {
        sku: "a".into(),
        location: "".into(),
        on_hand: 10,
        reserved: 2,
        safety_stock: 0,
    }];
    let holds = vec![LoadHold {
        reservation_id: "r1".into(),
        order_id: "".into(),
        expires_at_ms: NOW + TTL,
        created_at_ms: NOW,
        lines: vec![("a".into(), "".into(), 3)],
    }];
    let mut engine = engine_with_defaults();
    let error = engine.load(&items, &holds, &[], NOW).unwrap_err();
    assert!(matches!(error, EngineError::RecoveryMismatch { .. }));
    assert_eq!(
        engine.stats().items,
        0,
        "a failed load leaves the engine empty"
    );
}

#[test]
fn config_bounds_are_checked() {
    let config = EngineConfig {
        items_max: 0,
        ..EngineConfig::default()
    };
    assert_eq!(Engine::new(config).err().unwrap(), limit("items_max", 1));
}

#[test]
fn items_are_bounded() {
    let config = EngineConfig {
        items_max: 1,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config).unwrap();
    engine
        .adjust("a", "", 1, NOW, Annotation::default())
        .unwrap();
    let error = engine
        .adjust("b", "", 1, NOW, Annotation::default())
        .unwrap_err();
    assert_eq!(error, EngineError::CapacityExceeded { what: "items" });
}

/// PostgreSQL text cannot hold NUL: the engine refuses it in every text it stores, and a
/// refusal changes nothing.
#[test]
fn texts_with_nul_are_refused() {
    let mut engine = stocked(&[("a", 5)]);
    let pending = engine.journal_pending();
    let nul = |field: &'static str| EngineError::InvalidRequest {
        field,
        message: core_rs::validate::NUL_MESSAGE.to_string(),
    };
    let refused = [
        (
            nul("sku"),
            engine.reserve("r", "o", &[line("a\0", 1)], TTL, NOW, None),
        ),
        (
            nul("reservation_id"),
            engine.reserve("r\0", "o", &[line("a", 1)], TTL, NOW, None),
        ),
        (
            nul("order_id"),
            engine.reserve("r", "o\0", &[line("a", 1)], TTL, NOW, None),
        ),
        (
            nul("request_id"),
            engine.reserve("r", "o", &[line("a", 1)], TTL, NOW, Some("\0")),
        ),
    ];
    for (expected, result) in refused {
        assert_eq!(result.map(drop).unwrap_err(), expected);
    }
    let annotation = Annotation {
        reason: "\0",
        ..Annotation::default()
    };
    let error = engine.adjust("a", "", 1, NOW, annotation).unwrap_err();
    assert_eq!(error, nul("reason"));
    assert_eq!(level(&engine, "a", NOW), (5, 0, 5));
    assert_eq!(engine.journal_pending(), pending);
}

/// Operations on one reservation drained in different batches (a batch ends between
/// them): every batch names the reservation in its rows, with its state as of the batch's
/// last operation, however the operations share the reservation's fixed part.
#[test]
fn journal_batches_split_between_operations_on_one_reservation() {
    let mut engine = stocked(&[("a", 10)]);
    engine.take_journal(100).unwrap();
    engine
        .reserve("r1", "o1", &[line("a", 2)], TTL, NOW, Some("q1"))
        .unwrap();
    engine.extend("r1", TTL, NOW + 1).unwrap();
    engine.extend("r1", 2 * TTL, NOW + 2).unwrap();
    engine.release("r1", NOW + 3, None).unwrap();
    engine
        .reserve("r2", "o2", &[line("a", 1)], TTL, NOW, None)
        .unwrap();
    engine.commit("r2", None, NOW + 4, None).unwrap();
    let rows = |batch: &core_rs::journal::JournalBatch| {
        let reservations: Vec<_> = batch
            .reservations()
            .map(|r| {
                (
                    r.reservation_id.to_string(),
                    r.order_id.to_string(),
                    r.status,
                )
            })
            .collect();
        let ledger: Vec<_> = batch
            .ledger()
            .map(|l| (l.lsn, l.reservation_id.to_string(), l.order_id.to_string()))
            .collect();
        let lines: Vec<_> = batch
            .reservation_lines()
            .map(|l| {
                (
                    l.reservation_id.to_string(),
                    l.quantity,
                    l.quantity_committed,
                )
            })
            .collect();
        (reservations, ledger, lines)
    };
    let first = engine.take_journal(2).unwrap().unwrap();
    let (reservations, ledger, lines) = rows(&first);
    assert_eq!(reservations, vec![("r1".into(), "o1".into(), "active")]);
    assert_eq!(ledger, vec![(2, "r1".into(), "o1".into())]);
    assert_eq!(lines, vec![("r1".into(), 2, 0)]);
    assert_eq!(first.reservations().next().unwrap().request_id, Some("q1"));
    let second = engine.take_journal(3).unwrap().unwrap();
    let (reservations, ledger, lines) = rows(&second);
    assert_eq!(
        reservations,
        vec![
            ("r1".into(), "o1".into(), "released"),
            ("r2".into(), "o2".into(), "active")
        ]
    );
    assert_eq!(
        ledger,
        vec![(5, "r1".into(), "o1".into()), (6, "r2".into(), "o2".into())]
    );
    assert_eq!(lines, vec![("r2".into(), 1, 0)]);
    drop(first);
    let third = engine.take_journal(10).unwrap().unwrap();
    let (reservations, ledger, lines) = rows(&third);
    assert_eq!(reservations, vec![("r2".into(), "o2".into(), "committed")]);
    assert_eq!(ledger, vec![(7, "r2".into(), "o2".into())]);
    assert_eq!(lines, vec![("r2".into(), 1, 1)]);
    assert!(engine.take_journal(10).unwrap().is_none());
    engine.check_invariants();
}

/// A batch's reservation lines come row by row, in the order the batch first touched the
/// reservations, each reservation's lines in its order; also when a reservation touched
/// first is committed after another one was created.
#[test]
fn journal_lines_follow_their_rows() {
    let mut engine = stocked(&[("a", 10), ("b", 10), ("c", 10)]);
    engine
        .reserve("r1", "o1", &[line("b", 2), line("a", 3)], TTL, NOW, None)
        .unwrap();
    engine.take_journal(100).unwrap();
    engine.extend("r1", TTL, NOW + 1).unwrap();
    engine
        .reserve("r2", "o2", &[line("c", 1), line("a", 1)], TTL, NOW, None)
        .unwrap();
    engine
        .commit("r1", Some(&[line("a", 2)]), NOW + 2, None)
        .unwrap();
    engine.commit("r2", None, NOW + 3, None).unwrap();
    let batch = engine.take_journal(100).unwrap().unwrap();
    let rows: Vec<_> = batch.reservations().map(|r| r.reservation_id).collect();
    assert_eq!(rows, vec!["r1", "r2"]);
    let lines: Vec<_> = batch
        .reservation_lines()
        .map(|l| {
            let row = l.reservation_row;
            (
                row,
                l.reservation_id,
                l.sku,
                l.quantity,
                l.quantity_committed,
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (0, "r1", "b", 2, 0),
            (0, "r1", "a", 3, 2),
            (1, "r2", "c", 1, 1),
            (1, "r2", "a", 1, 1)
        ]
    );
}

/// An extend that moves a hold's expiry back to an earlier one counts the hold once (the
/// entries of that earlier expiry stay stale): levels, expiry and invariants agree.
#[test]
fn extend_back_to_an_earlier_expiry_counts_the_hold_once() {
    let mut engine = stocked(&[("a", 12)]);
    engine
        .reserve("r1", "", &[line("a", 1)], 1_000, NOW, None)
        .unwrap();
    engine.extend("r1", 1_001, NOW).unwrap();
    engine.extend("r1", 1_000, NOW).unwrap();
    engine.check_invariants();
    let levels = |engine: &Engine, now_ms| {
        let view = engine.get_stock(&["a"], "", now_ms).unwrap();
        let level = &view.levels[0];
        (level.on_hand, level.reserved, level.available)
    };
    assert_eq!(levels(&engine, NOW + 999), (12, 1, 11));
    assert_eq!(levels(&engine, NOW + 1_000), (12, 0, 12));
    let expired = engine.expire_due(NOW + 1_000, 10).unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(levels(&engine, NOW + 1_000), (12, 0, 12));
    engine.check_invariants();
}

#[test]
fn a_receipt_views_the_reservation_as_answered_until_it_is_gone() {
    let config = EngineConfig {
        reservations_terminal_max: 1,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config).unwrap();
    engine
        .set_stock("a", "", 10, None, NOW, Annotation::default())
        .unwrap();
    let reserved = engine
        .reserve("r1", "o1", &[line("a", 4)], TTL, NOW, None)
        .unwrap();
    let committed = engine.commit("r1", None, NOW, None).unwrap();
    // The reserve's receipt still shows the reservation as the reserve answered it.
    let view = engine.view(&reserved).unwrap();
    assert_eq!((view.status, view.reservation_id()), (Status::Active, "r1"));
    assert!(view.committed_lines().is_empty());
    let view = engine.view(&committed).unwrap();
    assert_eq!(view.status, Status::Committed);
    assert_eq!(view.committed_lines()[0].quantity, 4);
    // A moved expiry makes earlier receipts of the reservation stale.
    let answer = engine
        .reserve("r2", "", &[line("a", 1)], TTL, NOW, None)
        .unwrap();
    engine.extend("r2", 2 * TTL, NOW).unwrap();
    assert_eq!(engine.view(&answer), None);
    // Evicted (one terminal reservation is kept): its receipts name nothing any more.
    engine.release("r2", NOW, None).unwrap();
    assert_eq!(engine.view(&committed), None);
    engine
        .reserve("r3", "", &[line("a", 1)], TTL, NOW, None)
        .unwrap();
    assert_eq!(engine.view(&reserved), None);
}

/// The global expiry queue keeps entries of ended holds while any hold is live (they are
/// dropped at the top or by a sweep), and is emptied when the last active hold ends; expiry
/// works as before on the holds made afterwards.
#[test]
fn expiry_queue_is_emptied_when_no_hold_is_active() {
    let mut engine = stocked(&[("a", 10)]);
    let ttl = 1_000;
    for id in ["r1", "r2"] {
        engine
            .reserve(id, "", &[line("a", 1)], ttl, NOW, None)
            .unwrap();
    }
    engine.release("r1", NOW, None).unwrap();
    assert_eq!(engine.stats().expiry_queue_entries, 2, "r2 is still live");
    engine.commit("r2", None, NOW, None).unwrap();
    assert_eq!(engine.stats().reservations_active, 0);
    assert_eq!(engine.stats().expiry_queue_entries, 0);
    assert_eq!(engine.next_expiry_ms(), None);
    engine
        .reserve("r3", "", &[line("a", 2)], ttl, NOW, None)
        .unwrap();
    assert_eq!(engine.next_expiry_ms(), Some(NOW + ttl));
    let expired = engine.expire_due(NOW + ttl, 10).unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(&*expired[0], "r3");
    assert_eq!(engine.stats().expiry_queue_entries, 0);
    assert_eq!(level(&engine, "a", NOW + ttl), (9, 0, 9));
}

/// Churn at a steady 3,000 live holds on two items (a new hold and the end of a random one
/// per step, released or committed): the global queue's stale entries are swept out a few
/// per call, so it stays within its bound (and reaches the point where sweeps start), no
/// live hold's entry is lost, and expiry afterwards ends exactly the holds still live.
#[test]
fn churn_keeps_the_expiry_queue_bounded() {
    const LIVE: usize = 3_000;
    const STEPS: usize = 12_000;
    let mut engine = Engine::new(EngineConfig {
        idempotency_records_max: 100,
        reservations_active_max: LIVE + 1,
        reservations_terminal_max: 100,
        items_max: 10,
        journal_operations_max: 1_000,
        holds_presized: 0,
    })
    .unwrap();
    for sku in ["a", "b"] {
        engine
            .adjust(sku, "", 1_000_000, NOW, Annotation::default())
            .unwrap();
    }
    let drain = |engine: &mut Engine| while engine.take_journal(1_000).unwrap().is_some() {};
    let mut random = SmallRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
    let mut live: Vec<String> = Vec::new();
    let mut queue_max = 0;
    for step in 0..STEPS {
        let id = format!("r{step}");
        let sku = ["a", "b"][step % 2];
        let ttl = TTL + random.random_range(0..1_000);
        engine
            .reserve(&id, "", &[line(sku, 1)], ttl, NOW + step as i64, None)
            .unwrap();
        live.push(id);
        if live.len() > LIVE {
            let ended = live.swap_remove(random.random_range(0..live.len()));
            if step % 3 == 0 {
                engine
                    .commit(&ended, None, NOW + step as i64, None)
                    .unwrap();
            } else {
                engine.release(&ended, NOW + step as i64, None).unwrap();
            }
        }
        let entries = engine.stats().expiry_queue_entries;
        let active = engine.stats().reservations_active;
        assert!(
            entries <= ExpiryQueue::entries_bound(active),
            "step {step}: {entries} entries for {active} live holds"
        );
        queue_max = queue_max.max(entries);
        drain(&mut engine);
    }
    assert!(
        queue_max > STALE_FACTOR * LIVE + EXPIRY_SWEEP_SLACK,
        "no sweep ran: {queue_max}"
    );
    engine.check_invariants();
    let far = NOW + STEPS as i64 + TTL + 1_000;
    let mut expired: Vec<String> = Vec::new();
    loop {
        let batch = engine.expire_due(far, 1_000).unwrap();
        drain(&mut engine);
        if batch.is_empty() {
            break;
        }
        expired.extend(batch.iter().map(|id| id.to_string()));
    }
    expired.sort();
    live.sort();
    assert_eq!(expired, live);
    assert_eq!(engine.stats().expiry_queue_entries, 0);
    assert_eq!(level(&engine, "a", far).1 + level(&engine, "b", far).1, 0);
    engine.check_invariants();
}

/// (on_hand, reserved, available, safety_stock) of a default-location sku at `now_ms`.
fn safety_level(engine: &Engine, sku: &str, now_ms: i64) -> (u64, u64, u64, u64) {
    let view = engine.get_stock(&[sku], "", now_ms).unwrap();
    let level = &view.levels[0];
    (
        level.on_hand,
        level.reserved,
        level.available,
        level.safety_stock,
    )
}

/// Sets the safety stock of a default-location sku, with no annotation.
fn set_safety(engine: &mut Engine, sku: &str, safety_stock: i64) -> LevelsView {
    engine
        .set_safety_stock(sku, "", safety_stock, NOW, Annotation::default())
        .unwrap()
}

/// (sku, requested, available) of every shortfall of a `ShortStock` refusal.
fn shortfalls(error: EngineError) -> Vec<(String, u64, u64)> {
    let EngineError::ShortStock { shortfalls } = error else {
        panic!("expected ShortStock, got {error:?}")
    };
    shortfalls
        .iter()
        .map(|s| (s.sku.to_string(), s.requested, s.available))
        .collect()
}

/// A reserve holds only what lies above the safety stock: a refusal names, per short item,
/// what is available net of it (0 when the safety stock exceeds what is not held) and
/// changes nothing; a reserve of exactly that much is accepted and leaves nothing.
#[test]
fn reserve_never_holds_the_safety_stock() {
    let mut engine = stocked(&[("a", 10), ("b", 5), ("c", 3)]);
    engine
        .reserve("r0", "", &[line("a", 2)], TTL, NOW, None)
        .unwrap();
    let view = set_safety(&mut engine, "a", 3);
    assert_eq!(
        view.levels[0].available, 5,
        "10 on hand, 2 held, 3 kept back"
    );
    set_safety(&mut engine, "b", 1);
    set_safety(&mut engine, "c", 7);
    let pending = engine.journal_pending();
    let lines = [line("a", 6), line("b", 5), line("c", 1)];
    let error = engine
        .reserve("r1", "", &lines, TTL, NOW, None)
        .unwrap_err();
    let expected = vec![("a".into(), 6, 5), ("b".into(), 5, 4), ("c".into(), 1, 0)];
    assert_eq!(shortfalls(error), expected);
    assert_eq!(
        engine.journal_pending(),
        pending,
        "a refusal journals nothing"
    );
    assert_eq!(safety_level(&engine, "a", NOW), (10, 2, 5, 3));
    engine
        .reserve("r1", "", &[line("a", 5), line("b", 4)], TTL, NOW, None)
        .unwrap();
    assert_eq!(safety_level(&engine, "a", NOW), (10, 7, 0, 3));
    assert_eq!(safety_level(&engine, "b", NOW), (5, 4, 0, 1));
    let error = engine
        .reserve("r2", "", &[line("a", 1)], TTL, NOW, None)
        .unwrap_err();
    assert_eq!(shortfalls(error), vec![("a".into(), 1, 0)]);
    // Due holds stop counting; the safety stock still does.
    assert_eq!(safety_level(&engine, "a", NOW + TTL), (10, 0, 7, 3));
    engine
        .reserve("r2", "", &[line("a", 7)], TTL, NOW + TTL, None)
        .unwrap();
    assert_eq!(safety_level(&engine, "a", NOW + TTL), (10, 7, 0, 3));
    engine.check_invariants();
}

/// A decrement sells only what lies above the safety stock and what is held: refused with
/// the available quantity net of both, accepted up to it.
#[test]
fn decrement_never_sells_the_safety_stock() {
    let mut engine = stocked(&[("a", 10)]);
    engine
        .reserve("r1", "", &[line("a", 3)], TTL, NOW, None)
        .unwrap();
    set_safety(&mut engine, "a", 5);
    let pending = engine.journal_pending();
    let error = engine
        .decrement(&[line("a", 3)], NOW, "o", None)
        .unwrap_err();
    let expected = EngineError::ShortStock {
        shortfalls: vec![Shortfall {
            sku: "a".into(),
            location: "".into(),
            requested: 3,
            available: 2,
        }],
    };
    assert_eq!(error, expected);
    assert_eq!(engine.journal_pending(), pending);
    assert_eq!(safety_level(&engine, "a", NOW), (10, 3, 2, 5));
    let view = engine
        .decrement(&[line("a", 1), line("a", 1)], NOW, "o", None)
        .unwrap();
    let level = &view.levels[0];
    assert_eq!(
        (
            level.on_hand,
            level.reserved,
            level.available,
            level.safety_stock
        ),
        (8, 3, 0, 5)
    );
    let error = engine
        .decrement(&[line("a", 1)], NOW, "o", None)
        .unwrap_err();
    assert_eq!(shortfalls(error), vec![("a".into(), 1, 0)]);
    engine.check_invariants();
}

/// Held units are already taken: commit (whole or part), release, extend and expiry of
/// holds all succeed after the safety stock is raised above what is not held, and it never
/// makes anything available while on hand less reserved stays below it.
#[test]
fn holds_settle_whatever_the_safety_stock() {
    let mut engine = stocked(&[("a", 10)]);
    for (id, quantity) in [("r1", 4), ("r2", 2), ("r3", 1), ("r4", 1)] {
        engine
            .reserve(id, "", &[line("a", quantity)], TTL, NOW, None)
            .unwrap();
    }
    set_safety(&mut engine, "a", 8);
    assert_eq!(safety_level(&engine, "a", NOW), (10, 8, 0, 8));
    // Three of r1's four units leave on hand; the fourth is released.
    let answer = engine
        .commit("r1", Some(&[line("a", 3)]), NOW, None)
        .unwrap();
    assert_eq!(engine.view(&answer).unwrap().status, Status::Committed);
    assert_eq!(safety_level(&engine, "a", NOW), (7, 4, 0, 8));
    engine.commit("r2", None, NOW, None).unwrap();
    assert_eq!(safety_level(&engine, "a", NOW), (5, 2, 0, 8));
    engine.release("r4", NOW, None).unwrap();
    assert_eq!(safety_level(&engine, "a", NOW), (5, 1, 0, 8));
    let answer = engine.extend("r3", 2 * TTL, NOW).unwrap();
    assert_eq!(engine.view(&answer).unwrap().expires_at_ms, NOW + 2 * TTL);
    let expired = engine.expire_due(NOW + 2 * TTL, 10).unwrap();
    assert_eq!(expired, vec!["r3".into()]);
    assert_eq!(safety_level(&engine, "a", NOW + 2 * TTL), (5, 0, 0, 8));
    engine.check_invariants();
}

/// Adjustments and counts are not limited by the safety stock: they may leave less than it
/// not held (available is then 0), but still never go below what is held.
#[test]
fn adjust_and_set_stock_may_go_below_the_safety_stock() {
    let mut engine = stocked(&[("a", 10)]);
    engine
        .reserve("r1", "", &[line("a", 2)], TTL, NOW, None)
        .unwrap();
    set_safety(&mut engine, "a", 6);
    let view = engine
        .adjust("a", "", -5, NOW, Annotation::default())
        .unwrap();
    let level = &view.levels[0];
    assert_eq!(
        (
            level.on_hand,
            level.reserved,
            level.available,
            level.safety_stock
        ),
        (5, 2, 0, 6)
    );
    let error = engine
        .adjust("a", "", -4, NOW, Annotation::default())
        .unwrap_err();
    let expected = EngineError::OnHandBelowReserved {
        sku: "a".into(),
        location: "".into(),
        on_hand: 1,
        reserved: 2,
    };
    assert_eq!(error, expected);
    engine
        .set_stock("a", "", 2, Some(5), NOW, Annotation::default())
        .unwrap();
    assert_eq!(safety_level(&engine, "a", NOW), (2, 2, 0, 6));
    let error = engine
        .set_stock("a", "", 1, None, NOW, Annotation::default())
        .unwrap_err();
    assert!(matches!(
        error,
        EngineError::OnHandBelowReserved {
            on_hand: 1,
            reserved: 2,
            ..
        }
    ));
    // Restocking above the safety stock makes units available again.
    engine
        .adjust("a", "", 10, NOW, Annotation::default())
        .unwrap();
    assert_eq!(safety_level(&engine, "a", NOW), (12, 2, 4, 6));
    engine.check_invariants();
}

/// A safety stock may come before the goods: setting it on an unknown item creates the
/// item with nothing on hand (then known: a reserve of it is short, not unknown), within
/// the item capacity.
#[test]
fn set_safety_stock_creates_an_unknown_item() {
    let mut engine = engine();
    let view = engine
        .set_safety_stock("a", "w1", 3, NOW, Annotation::default())
        .unwrap();
    assert!(!view.replayed);
    assert_eq!((view.lsn, engine.lsn_last()), (1, 1));
    let level = &view.levels[0];
    let read = (&*level.sku, &*level.location, level.on_hand, level.reserved);
    assert_eq!(read, ("a", "w1", 0, 0));
    assert_eq!((level.available, level.safety_stock), (0, 3));
    assert_eq!(engine.stats().items, 1);
    let got = engine.get_stock(&["a"], "w1", NOW).unwrap();
    assert_eq!(got.levels, view.levels);
    let lines = [LineInput {
        sku: "a",
        location: "w1",
        quantity: 1,
    }];
    let error = engine
        .reserve("r1", "", &lines, TTL, NOW, None)
        .unwrap_err();
    assert_eq!(shortfalls(error), vec![("a".into(), 1, 0)]);
    let view = engine
        .adjust("a", "w1", 5, NOW, Annotation::default())
        .unwrap();
    assert_eq!(view.levels[0].available, 2);
    engine.check_invariants();
    // A new item counts toward the item bound.
    let config = EngineConfig {
        items_max: 1,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config).unwrap();
    set_safety(&mut engine, "a", 1);
    let error = engine
        .set_safety_stock("b", "", 1, NOW, Annotation::default())
        .unwrap_err();
    assert_eq!(error, EngineError::CapacityExceeded { what: "items" });
    assert_eq!((engine.stats().items, engine.journal_pending()), (1, 1));
}

/// The safety stock is bounded by 0..=ON_HAND_MAX: beyond, it is refused (also on an
/// unknown item, which is then not created, and with a request id, which is then not
/// remembered) and nothing changes; both bounds are accepted.
#[test]
fn set_safety_stock_is_bounded() {
    let mut engine = stocked(&[("a", 10)]);
    set_safety(&mut engine, "a", 2);
    let (pending, lsn) = (engine.journal_pending(), engine.lsn_last());
    let annotation = Annotation {
        request_id: Some("q1"),
        ..Annotation::default()
    };
    // As for on_hand in a count, the bound named is the one crossed.
    let out_of_bounds = [
        (-1, 0),
        (i64::MIN, 0),
        (ON_HAND_MAX as i64 + 1, ON_HAND_MAX),
        (i64::MAX, ON_HAND_MAX),
    ];
    for (value, bound) in out_of_bounds {
        for sku in ["a", "new"] {
            let error = engine
                .set_safety_stock(sku, "", value, NOW, annotation)
                .unwrap_err();
            assert_eq!(error, limit("safety_stock", bound), "{sku} {value}");
        }
    }
    assert_eq!(
        (engine.journal_pending(), engine.lsn_last()),
        (pending, lsn)
    );
    assert_eq!(safety_level(&engine, "a", NOW), (10, 0, 8, 2));
    assert!(engine
        .get_stock(&["new"], "", NOW)
        .unwrap()
        .levels
        .is_empty());
    assert_eq!(engine.stats().items, 1);
    let view = engine
        .set_safety_stock("a", "", ON_HAND_MAX as i64, NOW, annotation)
        .unwrap();
    assert!(!view.replayed, "the refused request was not remembered");
    assert_eq!(safety_level(&engine, "a", NOW), (10, 0, 0, ON_HAND_MAX));
    set_safety(&mut engine, "a", 0);
    assert_eq!(safety_level(&engine, "a", NOW), (10, 0, 10, 0));
    engine.check_invariants();
}

/// With a request id, the same request replays its first answer (even after the levels
/// moved) with no new LSN and no journal; the same id with any other argument, or with
/// another operation, is a conflict that changes nothing.
#[test]
fn set_safety_stock_replays_and_conflicts_by_request_id() {
    let mut engine = stocked(&[("a", 10), ("b", 10)]);
    let q1 = Annotation {
        reason: "season",
        actor: "ops",
        request_id: Some("q1"),
    };
    let first = engine.set_safety_stock("a", "", 4, NOW, q1).unwrap();
    assert!(!first.replayed);
    engine
        .adjust("a", "", 1, NOW, Annotation::default())
        .unwrap();
    let (pending, lsn) = (engine.journal_pending(), engine.lsn_last());
    let replay = engine.set_safety_stock("a", "", 4, NOW + 5, q1).unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.lsn, first.lsn);
    assert_eq!(
        replay.levels, first.levels,
        "the first answer, not today's levels"
    );
    assert_eq!(
        (engine.journal_pending(), engine.lsn_last()),
        (pending, lsn)
    );
    assert_eq!(safety_level(&engine, "a", NOW), (11, 0, 7, 4));
    let conflict = EngineError::IdempotencyConflict {
        request_id: "q1".into(),
    };
    let changed = [
        ("a", "", 5, q1),
        ("b", "", 4, q1),
        ("a", "w1", 4, q1),
        (
            "a",
            "",
            4,
            Annotation {
                reason: "count",
                ..q1
            },
        ),
        ("a", "", 4, Annotation { actor: "ann", ..q1 }),
    ];
    for (sku, location, value, annotation) in changed {
        let error = engine
            .set_safety_stock(sku, location, value, NOW, annotation)
            .unwrap_err();
        assert_eq!(error, conflict, "{sku} {location:?} {value} {annotation:?}");
    }
    let error = engine.adjust("a", "", 1, NOW, q1).unwrap_err();
    assert_eq!(error, conflict);
    let error = engine.set_stock("a", "", 4, None, NOW, q1).unwrap_err();
    assert_eq!(error, conflict);
    assert_eq!(
        (engine.journal_pending(), engine.lsn_last()),
        (pending, lsn)
    );
    assert_eq!(engine.stats().items, 2, "no conflict creates an item");
    // An id first used by another operation conflicts here.
    let q2 = Annotation {
        request_id: Some("q2"),
        ..Annotation::default()
    };
    engine.set_stock("b", "", 4, None, NOW, q2).unwrap();
    let (pending, lsn) = (engine.journal_pending(), engine.lsn_last());
    let error = engine.set_safety_stock("b", "", 4, NOW, q2).unwrap_err();
    assert!(matches!(error, EngineError::IdempotencyConflict { .. }));
    assert_eq!(
        (engine.journal_pending(), engine.lsn_last()),
        (pending, lsn)
    );
    assert_eq!(safety_level(&engine, "a", NOW), (11, 0, 7, 4));
    assert_eq!(safety_level(&engine, "b", NOW), (4, 0, 4, 0));
}

/// A safety stock change is one ledger row of kind "safety" that moves no unit (deltas
/// 0, 0 and new less old, safety_after the new value), with its annotation; every other
/// row carries the safety stock as it stands, and the item row its final value. The
/// idempotency row remembers the operation as "safety" with the safety stock in its levels.
#[test]
fn journal_records_safety_stock_changes() {
    let mut engine = stocked(&[("a", 10)]);
    engine.take_journal(100).unwrap();
    let annotation = Annotation {
        reason: "season",
        actor: "ops",
        request_id: Some("q1"),
    };
    engine
        .set_safety_stock("a", "", 4, NOW, annotation)
        .unwrap();
    engine
        .reserve("r1", "o1", &[line("a", 2)], TTL, NOW, None)
        .unwrap();
    engine
        .set_safety_stock("a", "", 1, NOW + 1, Annotation::default())
        .unwrap();
    engine
        .set_safety_stock("c", "w1", 2, NOW + 2, Annotation::default())
        .unwrap();
    let batch = engine.take_journal(100).unwrap().unwrap();
    assert_eq!((batch.lsn_first, batch.lsn_last), (2, 5));
    let rows: Vec<_> = batch
        .ledger()
        .map(|r| {
            let deltas = (r.delta_on_hand, r.delta_reserved, r.delta_safety);
            let after = (r.on_hand_after, r.reserved_after, r.safety_after);
            (r.lsn, r.sku, r.location, r.kind, deltas, after)
        })
        .collect();
    let expected = vec![
        (2, "a", "", "safety", (0, 0, 4), (10, 0, 4)),
        (3, "a", "", "reserve", (0, 2, 0), (10, 2, 4)),
        (4, "a", "", "safety", (0, 0, -3), (10, 2, 1)),
        (5, "c", "w1", "safety", (0, 0, 2), (0, 0, 2)),
    ];
    assert_eq!(rows, expected);
    let first = batch.ledger().next().unwrap();
    let texts = (first.reason, first.actor, first.request_id, first.order_id);
    assert_eq!(texts, ("season", "ops", "q1", ""));
    assert_eq!((first.at_ms, first.reservation_row), (NOW, None));
    let items: Vec<_> = batch
        .items
        .iter()
        .map(|i| (i.sku, i.location, i.on_hand, i.reserved, i.safety_stock))
        .collect();
    assert_eq!(items, vec![("a", "", 10, 2, 1), ("c", "w1", 0, 0, 2)]);
    assert_eq!(batch.idempotency.len(), 1);
    let remembered = &batch.idempotency[0];
    assert_eq!(
        (&*remembered.request_id, remembered.operation),
        ("q1", "safety")
    );
    assert!(
        remembered.outcome_json.contains(r#"["a","",10,0,6,4]"#),
        "{}",
        remembered.outcome_json
    );
}

/// Recovery keeps the safety stock: loaded items keep theirs (a reserve sees it), a
/// remembered safety stock request replays after a load with its levels, and a loaded
/// safety stock outside 0..=ON_HAND_MAX is a mismatch.
#[test]
fn load_keeps_the_safety_stock() {
    let mut engine = stocked(&[("a", 10)]);
    let annotation = Annotation {
        request_id: Some("q1"),
        ..Annotation::default()
    };
    let first = engine
        .set_safety_stock("a", "", 7, NOW, annotation)
        .unwrap();
    let batch = engine.take_journal(100).unwrap().unwrap();
    let records: Vec<LoadIdempotency> = batch
        .idempotency
        .iter()
        .map(|row| LoadIdempotency {
            request_id: row.request_id.to_string(),
            fingerprint: row.fingerprint,
            operation: row.operation.to_string(),
            outcome_json: row.outcome_json.clone(),
            created_at_ms: row.created_at_ms,
        })
        .collect();
    let item = |safety_stock| LoadItem {
        sku: "a".into(),
        location: "".into(),
        on_hand: 10,
        reserved: 0,
        safety_stock,
    };
    let mut restored = engine_with_defaults();
    restored.load(&[item(7)], &[], &records, NOW).unwrap();
    assert_eq!(restored.export(), engine.export());
    assert_eq!(safety_level(&restored, "a", NOW), (10, 0, 3, 7));
    let error = restored
        .reserve("r1", "", &[line("a", 4)], TTL, NOW, None)
        .unwrap_err();
    assert_eq!(shortfalls(error), vec![("a".into(), 4, 3)]);
    let replay = restored
        .set_safety_stock("a", "", 7, NOW, annotation)
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.levels, first.levels);
    for safety_stock in [-1, ON_HAND_MAX as i64 + 1] {
        let mut restored = engine_with_defaults();
        let error = restored
            .load(&[item(safety_stock)], &[], &[], NOW)
            .unwrap_err();
        assert!(
            matches!(error, EngineError::RecoveryMismatch { .. }),
            "{error:?}"
        );
        assert_eq!(restored.stats().items, 0);
    }
}
