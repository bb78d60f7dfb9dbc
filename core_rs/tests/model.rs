//! Model test: random operation sequences, with time advancing, run against the engine and
//! against a deliberately simple reference model (recomputes everything from scratch, no
//! indices, no heaps, no lazy expiry). After every step the answers, every level and every
//! reservation status must agree, and the engine's invariants must hold.
//!
//! Levels include the safety stock: a reserve or a decrement may take only what is on hand,
//! not held and above the safety stock; nothing else is limited by it.

use std::collections::BTreeMap;

use core_rs::engine::Annotation;
use core_rs::reservation::Status;
use core_rs::view::{Answer, Outcome};
use core_rs::{Engine, EngineConfig, EngineError, LineInput};
use proptest::prelude::*;

const SKUS: [&str; 3] = ["a", "b", "c"];
/// Reservation ids a sequence draws from: few, so that operations meet the same
/// reservations often.
const RESERVATIONS: usize = 6;
/// Operations in a churn sequence, after its set-up.
const CHURN_OPS: std::ops::Range<usize> = 300..500;
/// In a churn sequence every reserve takes a fresh id, and commits, releases and extends
/// name one of the latest this many reservations, which are mostly still active.
const CHURN_RECENT: usize = 8;
/// A churn sequence's first hold, on every sku, has the shortest TTL: it stays at the top of
/// each item's heap while later holds come and go beneath it, so the heaps collect more
/// ended entries than their sweep threshold (twice their live holds plus 8). No operation
/// names it (its id is past the fresh ones); it expires when the clock passes its TTL.
const CHURN_ANCHOR: usize = CHURN_OPS.end;
const CHURN_ANCHOR_TTL_MS: i64 = 1_000;
/// Clock steps: up to a TTL's length in the short sequences, short in the churn ones so that
/// holds live through many operations.
const ADVANCE_MAX_MS: i64 = 3_000;
const ADVANCE_CHURN_MAX_MS: i64 = 50;
const REQUESTS: usize = 4;
/// Request ids of the churn sequences: enough that a repeated one is mostly a replay, not a
/// conflict that changes nothing.
const REQUESTS_CHURN: usize = 1_000;
const START_MS: i64 = 1_000_000;
/// Safety stocks drawn: up to about what a few adjustments stock, so that it sometimes
/// decides a reserve or a decrement and sometimes does not.
const SAFETY_MAX: i64 = 15;

#[derive(Clone, Debug)]
enum Op {
    Advance(i64),
    Reserve {
        id: usize,
        lines: Vec<(usize, i64)>,
        ttl_ms: i64,
        request: Option<usize>,
    },
    Commit {
        id: usize,
        lines: Option<Vec<(usize, i64)>>,
        request: Option<usize>,
    },
    Release {
        id: usize,
        request: Option<usize>,
    },
    Extend {
        id: usize,
        ttl_ms: i64,
    },
    Decrement {
        lines: Vec<(usize, i64)>,
        request: Option<usize>,
    },
    Adjust {
        sku: usize,
        delta: i64,
        request: Option<usize>,
    },
    Set {
        sku: usize,
        on_hand: i64,
        expected: Option<i64>,
        request: Option<usize>,
    },
    Safety {
        sku: usize,
        safety_stock: i64,
        request: Option<usize>,
    },
    ExpireDue {
        max_count: usize,
    },
}

fn lines_strategy(max_lines: usize) -> impl Strategy<Value = Vec<(usize, i64)>> {
    prop::collection::vec((0..SKUS.len(), 1..6i64), 1..=max_lines)
}

fn op_strategy(
    reservations: usize,
    requests: usize,
    advance_max_ms: i64,
) -> impl Strategy<Value = Op> {
    let request = prop::option::of(0..requests);
    prop_oneof![
        3 => (0..advance_max_ms).prop_map(Op::Advance),
        5 => (0..reservations, lines_strategy(3), 1_000..5_000i64, request.clone())
            .prop_map(|(id, lines, ttl_ms, request)| Op::Reserve { id, lines, ttl_ms, request }),
        3 => (0..reservations, prop::option::of(lines_strategy(2)), request.clone())
            .prop_map(|(id, lines, request)| Op::Commit { id, lines, request }),
        3 => (0..reservations, request.clone()).prop_map(|(id, request)| Op::Release { id, request }),
        1 => (0..reservations, 1_000..5_000i64).prop_map(|(id, ttl_ms)| Op::Extend { id, ttl_ms }),
        2 => (lines_strategy(2), request.clone())
            .prop_map(|(lines, request)| Op::Decrement { lines, request }),
        3 => (0..SKUS.len(), prop_oneof![-6..0i64, 1..12i64], request.clone())
            .prop_map(|(sku, delta, request)| Op::Adjust { sku, delta, request }),
        1 => (0..SKUS.len(), 0..20i64, prop::option::of(0..20i64), request.clone())
            .prop_map(|(sku, on_hand, expected, request)| Op::Set { sku, on_hand, expected, request }),
        1 => (0..SKUS.len(), 0..=SAFETY_MAX, request)
            .prop_map(|(sku, safety_stock, request)| Op::Safety { sku, safety_stock, request }),
        1 => (1..4usize).prop_map(|max_count| Op::ExpireDue { max_count }),
    ]
}

#[derive(Clone, Debug, PartialEq)]
enum ModelStatus {
    Active,
    Committed,
    Released,
}

#[derive(Clone, Debug)]
struct ModelReservation {
    status: ModelStatus,
    expires_at_ms: i64,
    lines: BTreeMap<usize, u64>,
}

/// One item's levels: sku, on hand, reserved, available, safety stock.
type ModelLevel = (String, u64, u64, u64, u64);

/// What a remembered request answered: reservation id and status, or the levels.
#[derive(Clone, Debug, PartialEq)]
enum ModelOutcome {
    Reservation(String, &'static str),
    Levels(Vec<ModelLevel>),
}

#[derive(Default)]
struct Model {
    now_ms: i64,
    on_hand: BTreeMap<usize, u64>,
    /// Safety stock per known sku (absent: 0).
    safety: BTreeMap<usize, u64>,
    reservations: BTreeMap<usize, ModelReservation>,
    requests: BTreeMap<usize, (String, ModelOutcome)>,
    /// A deliberately wrong model, for the harness's own check: reserves and decrements
    /// are decided on what is not held, ignoring the safety stock (levels still report it).
    ignores_safety: bool,
}

type ModelAnswer = Result<ModelOutcome, &'static str>;

impl Model {
    fn reserved(&self, sku: usize) -> u64 {
        self.reservations
            .values()
            .filter(|r| r.status == ModelStatus::Active && r.expires_at_ms > self.now_ms)
            .map(|r| r.lines.get(&sku).copied().unwrap_or(0))
            .sum()
    }

    fn safety(&self, sku: usize) -> u64 {
        self.safety.get(&sku).copied().unwrap_or(0)
    }

    /// On hand, less what live holds keep, less the safety stock; at least 0.
    fn available(&self, sku: usize) -> u64 {
        let unheld = self.on_hand[&sku] - self.reserved(sku);
        unheld.saturating_sub(self.safety(sku))
    }

    fn status(&self, id: usize) -> Option<&'static str> {
        let r = self.reservations.get(&id)?;
        Some(match r.status {
            ModelStatus::Active if r.expires_at_ms <= self.now_ms => "expired",
            ModelStatus::Active => "active",
            ModelStatus::Committed => "committed",
            ModelStatus::Released => "released",
        })
    }

    fn levels(&self, skus: &BTreeMap<usize, u64>) -> ModelOutcome {
        ModelOutcome::Levels(
            skus.keys()
                .map(|&sku| {
                    let (on_hand, reserved) = (self.on_hand[&sku], self.reserved(sku));
                    let (available, safety) = (self.available(sku), self.safety(sku));
                    (SKUS[sku].to_string(), on_hand, reserved, available, safety)
                })
                .collect(),
        )
    }

    fn summed(lines: &[(usize, i64)]) -> BTreeMap<usize, u64> {
        let mut summed = BTreeMap::new();
        for (sku, quantity) in lines {
            *summed.entry(*sku).or_insert(0) += *quantity as u64;
        }
        summed
    }

    /// Replay or conflict for a remembered request id.
    fn remembered(&self, request: Option<usize>, key: &str) -> Option<ModelAnswer> {
        let (first_key, outcome) = self.requests.get(&request?)?;
        Some(if first_key == key {
            Ok(outcome.clone())
        } else {
            Err("idempotency_conflict")
        })
    }

    fn remember(&mut self, request: Option<usize>, key: String, outcome: &ModelOutcome) {
        if let Some(request) = request {
            self.requests.insert(request, (key, outcome.clone()));
        }
    }

    fn short_or_unknown(&self, summed: &BTreeMap<usize, u64>) -> Option<&'static str> {
        if summed.keys().any(|sku| !self.on_hand.contains_key(sku)) {
            return Some("unknown_item");
        }
        let short = summed.iter().any(|(&sku, &q)| match self.ignores_safety {
            false => self.available(sku) < q,
            true => self.on_hand[&sku] - self.reserved(sku) < q,
        });
        short.then_some("short_stock")
    }

    fn reserve(
        &mut self,
        id: usize,
        lines: &[(usize, i64)],
        ttl_ms: i64,
        request: Option<usize>,
    ) -> ModelAnswer {
        let key = format!("reserve {lines:?} {ttl_ms}");
        if let Some(answer) = self.remembered(request, &key) {
            return answer;
        }
        if self.reservations.contains_key(&id) {
            return Err("reservation_exists");
        }
        let summed = Self::summed(lines);
        if let Some(error) = self.short_or_unknown(&summed) {
            return Err(error);
        }
        let expires_at_ms = self.now_ms + ttl_ms;
        let reservation = ModelReservation {
            status: ModelStatus::Active,
            expires_at_ms,
            lines: summed,
        };
        self.reservations.insert(id, reservation);
        let outcome = ModelOutcome::Reservation(format!("r{id}"), "active");
        self.remember(request, key, &outcome);
        Ok(outcome)
    }

    fn commit(
        &mut self,
        id: usize,
        lines: &Option<Vec<(usize, i64)>>,
        request: Option<usize>,
    ) -> ModelAnswer {
        let key = format!("commit {id} {lines:?}");
        if let Some(answer) = self.remembered(request, &key) {
            return answer;
        }
        let status = self.status(id).ok_or("unknown_reservation")?;
        match status {
            "committed" => return Ok(ModelOutcome::Reservation(format!("r{id}"), "committed")),
            "active" => {}
            _ => return Err("wrong_state"),
        }
        let held = self.reservations[&id].lines.clone();
        let committed = match lines {
            None => held.clone(),
            Some(lines) => Self::summed(lines),
        };
        for (sku, quantity) in &committed {
            if held.get(sku).is_none_or(|h| h < quantity) {
                return Err("invalid_request");
            }
        }
        for (sku, quantity) in &committed {
            *self.on_hand.get_mut(sku).unwrap() -= quantity;
        }
        self.reservations.get_mut(&id).unwrap().status = ModelStatus::Committed;
        let outcome = ModelOutcome::Reservation(format!("r{id}"), "committed");
        self.remember(request, key, &outcome);
        Ok(outcome)
    }

    fn release(&mut self, id: usize, request: Option<usize>) -> ModelAnswer {
        let key = format!("release {id}");
        if let Some(answer) = self.remembered(request, &key) {
            return answer;
        }
        let status = self.status(id).ok_or("unknown_reservation")?;
        match status {
            "committed" => return Err("wrong_state"),
            "active" => {}
            other => return Ok(ModelOutcome::Reservation(format!("r{id}"), other)),
        }
        self.reservations.get_mut(&id).unwrap().status = ModelStatus::Released;
        let outcome = ModelOutcome::Reservation(format!("r{id}"), "released");
        self.remember(request, key, &outcome);
        Ok(outcome)
    }

    fn extend(&mut self, id: usize, ttl_ms: i64) -> ModelAnswer {
        let status = self.status(id).ok_or("unknown_reservation")?;
        if status != "active" {
            return Err("wrong_state");
        }
        self.reservations.get_mut(&id).unwrap().expires_at_ms = self.now_ms + ttl_ms;
        Ok(ModelOutcome::Reservation(format!("r{id}"), "active"))
    }

    fn decrement(&mut self, lines: &[(usize, i64)], request: Option<usize>) -> ModelAnswer {
        let key = format!("decrement {lines:?}");
        if let Some(answer) = self.remembered(request, &key) {
            return answer;
        }
        let summed = Self::summed(lines);
        if let Some(error) = self.short_or_unknown(&summed) {
            return Err(error);
        }
        for (sku, quantity) in &summed {
            *self.on_hand.get_mut(sku).unwrap() -= quantity;
        }
        let outcome = self.levels(&summed);
        self.remember(request, key, &outcome);
        Ok(outcome)
    }

    fn adjust(&mut self, sku: usize, delta: i64, request: Option<usize>) -> ModelAnswer {
        let key = format!("adjust {sku} {delta}");
        if let Some(answer) = self.remembered(request, &key) {
            return answer;
        }
        match self.on_hand.get(&sku) {
            None if delta < 0 => return Err("unknown_item"),
            None => {}
            Some(&on_hand) if (on_hand as i64 + delta) < self.reserved(sku) as i64 => {
                return Err("on_hand_below_reserved");
            }
            Some(_) => {}
        }
        let on_hand = self.on_hand.entry(sku).or_insert(0);
        *on_hand = (*on_hand as i64 + delta) as u64;
        let outcome = self.levels(&BTreeMap::from([(sku, 0)]));
        self.remember(request, key, &outcome);
        Ok(outcome)
    }

    fn set(
        &mut self,
        sku: usize,
        on_hand: i64,
        expected: Option<i64>,
        request: Option<usize>,
    ) -> ModelAnswer {
        let key = format!("set {sku} {on_hand} {expected:?}");
        if let Some(answer) = self.remembered(request, &key) {
            return answer;
        }
        let actual = self.on_hand.get(&sku).copied().unwrap_or(0);
        if expected.is_some_and(|expected| expected as u64 != actual) {
            return Err("expected_mismatch");
        }
        if (on_hand as u64) < self.reserved(sku) {
            return Err("on_hand_below_reserved");
        }
        self.on_hand.insert(sku, on_hand as u64);
        let outcome = self.levels(&BTreeMap::from([(sku, 0)]));
        self.remember(request, key, &outcome);
        Ok(outcome)
    }

    /// Sets the safety stock; an unknown sku becomes known with nothing on hand. Never
    /// refused (the values drawn are within bounds), moves no unit.
    fn set_safety(&mut self, sku: usize, safety_stock: i64, request: Option<usize>) -> ModelAnswer {
        let key = format!("safety {sku} {safety_stock}");
        if let Some(answer) = self.remembered(request, &key) {
            return answer;
        }
        self.on_hand.entry(sku).or_insert(0);
        self.safety.insert(sku, safety_stock as u64);
        let outcome = self.levels(&BTreeMap::from([(sku, 0)]));
        self.remember(request, key, &outcome);
        Ok(outcome)
    }
}

fn engine_lines(lines: &[(usize, i64)]) -> Vec<LineInput<'static>> {
    lines
        .iter()
        .map(|&(sku, quantity)| LineInput {
            sku: SKUS[sku],
            location: "",
            quantity,
        })
        .collect()
}

/// An operator change's annotation: only its request id.
fn with_request(request: &Option<String>) -> Annotation<'_> {
    Annotation {
        request_id: request.as_deref(),
        ..Annotation::default()
    }
}

fn request_name(request: Option<usize>) -> Option<String> {
    request.map(|r| format!("q{r}"))
}

fn engine_answer(result: Result<Outcome, EngineError>) -> ModelAnswer {
    match result {
        Err(error) => Err(error.code()),
        Ok(Outcome::Reservation(view)) => Ok(ModelOutcome::Reservation(
            view.reservation_id().to_string(),
            view.status.as_str(),
        )),
        Ok(Outcome::Levels(view)) => {
            // The engine answers in request order; the model in sku order.
            let mut levels: Vec<_> = view
                .levels
                .iter()
                .map(|l| {
                    let sku = l.sku.to_string();
                    (sku, l.on_hand, l.reserved, l.available, l.safety_stock)
                })
                .collect();
            levels.sort();
            Ok(ModelOutcome::Levels(levels))
        }
    }
}

/// A reservation operation's outcome: the view of its answer, built right away (as the
/// binding does).
fn reservation(
    engine: &Engine,
    answer: Result<Answer, EngineError>,
) -> Result<Outcome, EngineError> {
    answer.map(|answer| Outcome::Reservation(engine.view(&answer).expect("viewed right away")))
}

fn apply_engine(engine: &mut Engine, now_ms: i64, op: &Op) -> Option<ModelAnswer> {
    let levels = |l| Outcome::Levels(l);
    let result = match op {
        Op::Advance(_) | Op::ExpireDue { .. } => return None,
        Op::Reserve {
            id,
            lines,
            ttl_ms,
            request,
        } => {
            let request = request_name(*request);
            let lines = engine_lines(lines);
            let answer = engine.reserve(
                &format!("r{id}"),
                "o",
                &lines,
                *ttl_ms,
                now_ms,
                request.as_deref(),
            );
            reservation(engine, answer)
        }
        Op::Commit { id, lines, request } => {
            let request = request_name(*request);
            let lines = lines.as_ref().map(|lines| engine_lines(lines));
            let answer = engine.commit(
                &format!("r{id}"),
                lines.as_deref(),
                now_ms,
                request.as_deref(),
            );
            reservation(engine, answer)
        }
        Op::Release { id, request } => {
            let request = request_name(*request);
            let answer = engine.release(&format!("r{id}"), now_ms, request.as_deref());
            reservation(engine, answer)
        }
        Op::Extend { id, ttl_ms } => {
            let answer = engine.extend(&format!("r{id}"), *ttl_ms, now_ms);
            reservation(engine, answer)
        }
        Op::Decrement { lines, request } => {
            let request = request_name(*request);
            engine
                .decrement(&engine_lines(lines), now_ms, "o", request.as_deref())
                .map(levels)
        }
        Op::Adjust {
            sku,
            delta,
            request,
        } => {
            let request = request_name(*request);
            let annotation = with_request(&request);
            engine
                .adjust(SKUS[*sku], "", *delta, now_ms, annotation)
                .map(levels)
        }
        Op::Set {
            sku,
            on_hand,
            expected,
            request,
        } => {
            let request = request_name(*request);
            let annotation = with_request(&request);
            engine
                .set_stock(SKUS[*sku], "", *on_hand, *expected, now_ms, annotation)
                .map(levels)
        }
        Op::Safety {
            sku,
            safety_stock,
            request,
        } => {
            let request = request_name(*request);
            let annotation = with_request(&request);
            engine
                .set_safety_stock(SKUS[*sku], "", *safety_stock, now_ms, annotation)
                .map(levels)
        }
    };
    Some(engine_answer(result))
}

fn apply_model(model: &mut Model, op: &Op) -> Option<ModelAnswer> {
    Some(match op {
        Op::Advance(_) | Op::ExpireDue { .. } => return None,
        Op::Reserve {
            id,
            lines,
            ttl_ms,
            request,
        } => model.reserve(*id, lines, *ttl_ms, *request),
        Op::Commit { id, lines, request } => model.commit(*id, lines, *request),
        Op::Release { id, request } => model.release(*id, *request),
        Op::Extend { id, ttl_ms } => model.extend(*id, *ttl_ms),
        Op::Decrement { lines, request } => model.decrement(lines, *request),
        Op::Adjust {
            sku,
            delta,
            request,
        } => model.adjust(*sku, *delta, *request),
        Op::Set {
            sku,
            on_hand,
            expected,
            request,
        } => model.set(*sku, *on_hand, *expected, *request),
        Op::Safety {
            sku,
            safety_stock,
            request,
        } => model.set_safety(*sku, *safety_stock, *request),
    })
}

/// Compares levels and statuses, then checks the engine's invariants; returns how many item
/// heaps were mid-sweep.
fn compare_state(engine: &Engine, model: &Model, reservations: usize) -> usize {
    let view = engine.get_stock(&SKUS, "", model.now_ms).unwrap();
    let levels: Vec<_> = view
        .levels
        .iter()
        .map(|l| {
            let sku = l.sku.to_string();
            (sku, l.on_hand, l.reserved, l.available, l.safety_stock)
        })
        .collect();
    assert_eq!(
        ModelOutcome::Levels(levels),
        model.levels(&model.on_hand.keys().map(|&k| (k, 0)).collect())
    );
    for id in 0..reservations {
        let engine_status = engine
            .get_reservation(&format!("r{id}"), model.now_ms)
            .ok()
            .map(|answer| answer.status().as_str());
        assert_eq!(engine_status, model.status(id), "status of r{id}");
    }
    engine.check_invariants()
}

/// Runs `ops` (reservation ids below `reservations`) against the engine and the model,
/// comparing after every step; returns whether some item's heap was ever found mid-sweep.
fn run(ops: &[Op], reservations: usize) -> bool {
    run_against(ops, reservations, Model::default())
}

/// `run` against `model` (its clock is set to the start).
fn run_against(ops: &[Op], reservations: usize, model: Model) -> bool {
    let config = EngineConfig {
        reservations_terminal_max: 1_000,
        journal_operations_max: 100_000,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config).unwrap();
    let mut model = Model {
        now_ms: START_MS,
        ..model
    };
    let mut reached_sweep = false;
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Advance(ms) => model.now_ms += ms,
            Op::ExpireDue { max_count } => {
                let expired = engine.expire_due(model.now_ms, *max_count).unwrap();
                assert!(expired.len() <= *max_count);
                for id in &expired {
                    let index: usize = id[1..].parse().unwrap();
                    assert_eq!(
                        model.status(index),
                        Some("expired"),
                        "step {step}: swept a live hold"
                    );
                }
            }
            _ => {
                let expected = apply_model(&mut model, op);
                let actual = apply_engine(&mut engine, model.now_ms, op);
                assert_eq!(actual, expected, "step {step}: {op:?}");
            }
        }
        reached_sweep |= compare_state(&engine, &model, reservations) > 0;
    }
    // A full sweep leaves nothing due.
    let expired = engine.expire_due(model.now_ms, 10_000).unwrap();
    assert!(expired.len() <= reservations);
    assert!(engine.expire_due(model.now_ms, 10_000).unwrap().is_empty());
    compare_state(&engine, &model, reservations);
    reached_sweep
}

/// Churn sequences: every sku stocked (so that most reserves succeed) and held by the
/// anchor, then operations whose ids `churn_ids` rewrote.
fn churn_strategy() -> impl Strategy<Value = Vec<Op>> {
    let mut setup: Vec<Op> = (0..SKUS.len())
        .map(|sku| Op::Adjust {
            sku,
            delta: 500,
            request: None,
        })
        .collect();
    setup.push(Op::Reserve {
        id: CHURN_ANCHOR,
        lines: (0..SKUS.len()).map(|sku| (sku, 1)).collect(),
        ttl_ms: CHURN_ANCHOR_TTL_MS,
        request: None,
    });
    let ops = op_strategy(CHURN_RECENT, REQUESTS_CHURN, ADVANCE_CHURN_MAX_MS);
    prop::collection::vec(ops, CHURN_OPS)
        .prop_map(move |ops| setup.iter().cloned().chain(churn_ids(ops)).collect())
}

/// Gives each reserve the next fresh id, and turns the id `k` (below `CHURN_RECENT`) of
/// every other operation into the id of the `k`-th latest reservation.
fn churn_ids(mut ops: Vec<Op>) -> Vec<Op> {
    let mut reserved = 0;
    for op in &mut ops {
        match op {
            Op::Reserve { id, .. } => {
                *id = reserved;
                reserved += 1;
            }
            Op::Commit { id, .. } | Op::Release { id, .. } | Op::Extend { id, .. } => {
                *id = reserved.saturating_sub(1 + *id);
            }
            _ => {}
        }
    }
    ops
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        // Failures print the minimal sequence; the repository keeps no regression files.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_agrees_with_the_reference_model(
        ops in prop::collection::vec(op_strategy(RESERVATIONS, REQUESTS, ADVANCE_MAX_MS), 1..150)
    ) {
        run(&ops, RESERVATIONS);
    }
}

/// The same comparison over churn sequences, which reach the item heaps' sweeps (the short
/// sequences above never do): the test fails unless most cases saw a heap mid-sweep.
#[test]
fn engine_agrees_with_the_reference_model_through_heap_sweeps() {
    const CASES: u32 = 128;
    let config = ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let cases_sweeping = std::cell::Cell::new(0u32);
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(&churn_strategy(), |ops| {
        let reached_sweep = run(&ops, CHURN_ANCHOR + 1);
        cases_sweeping.set(cases_sweeping.get() + u32::from(reached_sweep));
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let cases_sweeping = cases_sweeping.get();
    eprintln!("{cases_sweeping} of {CASES} churn cases reached an item heap sweep");
    assert!(
        cases_sweeping >= CASES / 2,
        "only {cases_sweeping} of {CASES} churn cases reached an item heap sweep"
    );
}

/// Guards the model itself: it refuses a reserve above what is on hand, and one above what
/// the safety stock leaves (as a decrement), and reports the safety stock in its levels.
#[test]
fn reference_model_detects_a_wrong_answer() {
    let mut model = Model {
        now_ms: START_MS,
        ..Model::default()
    };
    model.adjust(0, 5, None).unwrap();
    let answer = model.reserve(0, &[(0, 6)], 1_000, None);
    assert_eq!(answer, Err("short_stock"));
    // 5 on hand, 2 kept back: 3 available.
    model.set_safety(0, 2, None).unwrap();
    assert_eq!(model.reserve(0, &[(0, 4)], 1_000, None), Err("short_stock"));
    assert_eq!(model.decrement(&[(0, 4)], None), Err("short_stock"));
    model.reserve(0, &[(0, 3)], 1_000, None).unwrap();
    let levels = model.levels(&BTreeMap::from([(0, 0)]));
    assert_eq!(levels, ModelOutcome::Levels(vec![("a".into(), 5, 3, 0, 2)]));
    assert_eq!(Status::Active.as_str(), "active");
}

/// Guards the harness: a sequence where the safety stock refuses a reserve passes against
/// the reference model, and fails at that reserve against a model that decides reserves
/// without the safety stock.
#[test]
fn a_model_ignoring_safety_stock_is_caught() {
    let ops = [
        Op::Adjust {
            sku: 0,
            delta: 5,
            request: None,
        },
        Op::Safety {
            sku: 0,
            safety_stock: 3,
            request: None,
        },
        Op::Reserve {
            id: 0,
            lines: vec![(0, 3)],
            ttl_ms: 1_000,
            request: None,
        },
    ];
    run(&ops, RESERVATIONS);
    let blind = Model {
        ignores_safety: true,
        ..Model::default()
    };
    let failure = std::panic::catch_unwind(|| run_against(&ops, RESERVATIONS, blind))
        .expect_err("a model blind to the safety stock must disagree with the engine");
    let message = failure
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or_default();
    assert!(
        message.contains("step 2: Reserve"),
        "failed elsewhere: {message}"
    );
}
