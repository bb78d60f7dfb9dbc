//! Deterministic simulation: a seeded RNG drives many interleaved simulated clients, an
//! operator, a sweeper and a persister against one engine on a virtual clock. The persister
//! applies every journal batch to a simulated database; now and then the engine "crashes"
//! and is rebuilt from that database with `load`. After every step the engine's invariants
//! hold, and the database always equals the engine's own export.
//!
//! A failure prints its seed; `SIM_SEED=<seed> cargo test --test simulation` replays it
//! exactly (nothing reads a real clock or an unseeded source).

use std::collections::BTreeMap;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use core_rs::engine::Annotation;
use core_rs::journal::JournalBatch;
use core_rs::reservation::Status;
use core_rs::{Engine, EngineConfig, EngineError, LineInput, LoadHold, LoadIdempotency, LoadItem};

const SEEDS_DEFAULT: [u64; 4] = [1, 2, 3, 0x5eed_cafe];
const CLIENTS: usize = 40;
const STEPS: usize = 20_000;
const SKUS: usize = 12;
const LOCATIONS: [&str; 2] = ["", "north"];
const CRASH_ONE_IN: u32 = 2_500;

type Key = (String, String);

/// (order, status, expires_at, created_at, lines), as the reservation tables hold it.
type ReservationRow = (String, String, i64, i64, BTreeMap<Key, u64>);

#[derive(Default)]
struct Database {
    /// (on hand, reserved, safety stock) per item.
    items: BTreeMap<Key, (u64, u64, u64)>,
    reservations: BTreeMap<String, ReservationRow>,
    idempotency: BTreeMap<String, LoadIdempotency>,
    lsn_durable: u64,
}

impl Database {
    /// One PostgreSQL transaction per batch, as the service writes it.
    fn apply(&mut self, batch: &JournalBatch) {
        assert_eq!(
            batch.lsn_first,
            self.lsn_durable + 1,
            "journal batches are contiguous"
        );
        self.lsn_durable = batch.lsn_last;
        for row in batch.ledger() {
            let key = (row.sku.to_string(), row.location.to_string());
            let (on_hand, reserved, safety) = self.items.get(&key).copied().unwrap_or((0, 0, 0));
            assert_eq!(
                on_hand as i64 + row.delta_on_hand,
                row.on_hand_after as i64,
                "ledger chain"
            );
            assert_eq!(
                reserved as i64 + row.delta_reserved,
                row.reserved_after as i64,
                "ledger chain"
            );
            assert_eq!(
                safety as i64 + row.delta_safety,
                row.safety_after as i64,
                "ledger chain"
            );
            let after = (row.on_hand_after, row.reserved_after, row.safety_after);
            self.items.insert(key, after);
        }
        for item in batch.items.iter() {
            let key = (item.sku.to_string(), item.location.to_string());
            assert_eq!(
                self.items[&key],
                (item.on_hand, item.reserved, item.safety_stock),
                "item row equals ledger end"
            );
        }
        for row in batch.reservations() {
            let entry = self
                .reservations
                .entry(row.reservation_id.to_string())
                .or_default();
            entry.0 = row.order_id.to_string();
            entry.1 = row.status.to_string();
            entry.2 = row.expires_at_ms;
            entry.3 = row.created_at_ms;
        }
        for row in batch.reservation_lines() {
            let entry = self
                .reservations
                .get_mut(row.reservation_id)
                .expect("row before lines");
            entry.4.insert(
                (row.sku.to_string(), row.location.to_string()),
                row.quantity,
            );
        }
        for row in &batch.idempotency {
            self.idempotency.insert(
                row.request_id.to_string(),
                LoadIdempotency {
                    request_id: row.request_id.to_string(),
                    fingerprint: row.fingerprint,
                    operation: row.operation.to_string(),
                    outcome_json: row.outcome_json.clone(),
                    created_at_ms: row.created_at_ms,
                },
            );
        }
    }

    fn load_input(&self) -> (Vec<LoadItem>, Vec<LoadHold>, Vec<LoadIdempotency>) {
        let items = self
            .items
            .iter()
            .map(|((sku, location), (on_hand, reserved, safety))| LoadItem {
                sku: sku.clone(),
                location: location.clone(),
                on_hand: *on_hand as i64,
                reserved: *reserved as i64,
                safety_stock: *safety as i64,
            })
            .collect();
        let holds = self
            .reservations
            .iter()
            .filter(|(_, r)| r.1 == "active")
            .map(|(id, r)| LoadHold {
                reservation_id: id.clone(),
                order_id: r.0.clone(),
                expires_at_ms: r.2,
                created_at_ms: r.3,
                lines: r
                    .4
                    .iter()
                    .map(|((s, l), q)| (s.clone(), l.clone(), *q as i64))
                    .collect(),
            })
            .collect();
        (items, holds, self.idempotency.values().cloned().collect())
    }
}

#[derive(Clone)]
enum Client {
    Idle,
    Holding {
        reservation_id: String,
        request_id: Option<String>,
        lines: Vec<(usize, usize, i64)>,
        ttl_ms: i64,
    },
}

struct Simulation {
    rng: SmallRng,
    now_ms: i64,
    engine: Engine,
    database: Database,
    clients: Vec<Client>,
    next_id: u64,
    crashes: usize,
    answered: BTreeMap<&'static str, usize>,
}

fn config() -> EngineConfig {
    EngineConfig {
        idempotency_records_max: 5_000,
        reservations_active_max: 10_000,
        reservations_terminal_max: 500,
        items_max: 1_000,
        journal_operations_max: 50_000,
        // Below what the run stores: both the room made in advance and growth past it.
        holds_presized: 2_000,
    }
}

fn sku(index: usize) -> String {
    format!("sku-{index}")
}

/// Sku names with a static lifetime, for line inputs.
static SKU_NAMES: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| (0..SKUS).map(sku).collect());

impl Simulation {
    fn new(seed: u64) -> Simulation {
        let mut simulation = Simulation {
            rng: SmallRng::seed_from_u64(seed),
            now_ms: 1_700_000_000_000,
            engine: Engine::new(config()).unwrap(),
            database: Database::default(),
            clients: vec![Client::Idle; CLIENTS],
            next_id: 0,
            crashes: 0,
            answered: BTreeMap::new(),
        };
        for index in 0..SKUS {
            for location in LOCATIONS {
                let on_hand = simulation.rng.random_range(0..40);
                let engine = &mut simulation.engine;
                engine
                    .set_stock(
                        &sku(index),
                        location,
                        on_hand,
                        Some(0),
                        0,
                        Annotation::default(),
                    )
                    .unwrap();
            }
        }
        simulation
    }

    fn fresh_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }

    fn count(&mut self, what: &'static str) {
        *self.answered.entry(what).or_default() += 1;
    }

    fn random_lines(&mut self) -> Vec<(usize, usize, i64)> {
        let count = self.rng.random_range(1..=3);
        (0..count)
            .map(|_| {
                let sku = self.rng.random_range(0..SKUS);
                let location = self.rng.random_range(0..LOCATIONS.len());
                (sku, location, self.rng.random_range(1..=5))
            })
            .collect()
    }

    fn step(&mut self) {
        self.now_ms += self.rng.random_range(0..60);
        match self.rng.random_range(0..100) {
            0..=79 => {
                let client = self.rng.random_range(0..CLIENTS);
                self.client_step(client);
            }
            80..=87 => self.operator_step(),
            88..=93 => self.sale_step(),
            94..=96 => self.sweep_step(),
            _ => self.persist(),
        }
        if self.rng.random_ratio(1, CRASH_ONE_IN) {
            self.crash_and_recover();
        }
    }

    fn client_step(&mut self, index: usize) {
        match self.clients[index].clone() {
            Client::Idle => self.client_reserve(index),
            Client::Holding {
                reservation_id,
                request_id,
                lines,
                ttl_ms,
            } => match self.rng.random_range(0..10) {
                0..=3 => self.client_commit(index, &reservation_id, &lines),
                4..=5 => self.client_release(index, &reservation_id),
                6 => self.client_extend(&reservation_id),
                7 => {
                    let request_id = request_id.as_deref();
                    self.client_retry_reserve(&reservation_id, request_id, &lines, ttl_ms);
                }
                8 => self.clients[index] = Client::Idle, // abandoned: it will expire
                _ => {}
            },
        }
    }

    fn client_reserve(&mut self, index: usize) {
        let lines = self.random_lines();
        let reservation_id = self.fresh_id("r");
        let request_id = self.rng.random_ratio(1, 2).then(|| self.fresh_id("q"));
        let ttl_ms = self.rng.random_range(1_000..11_000);
        let inputs = inputs(&lines);
        let result = self.engine.reserve(
            &reservation_id,
            "order",
            &inputs,
            ttl_ms,
            self.now_ms,
            request_id.as_deref(),
        );
        match result {
            Ok(answer) => {
                let view = self.engine.view(&answer).expect("viewed right away");
                assert_eq!(view.reservation_id(), reservation_id);
                assert_eq!(view.status, Status::Active);
                self.count("reserved");
                self.clients[index] = Client::Holding {
                    reservation_id,
                    request_id,
                    lines,
                    ttl_ms,
                };
            }
            Err(EngineError::ShortStock { shortfalls }) => {
                assert!(!shortfalls.is_empty());
                self.count("short");
            }
            Err(other) => panic!("reserve: unexpected {other:?}"),
        }
    }

    /// A client that did not see its answer sends the same request again.
    fn client_retry_reserve(
        &mut self,
        reservation_id: &str,
        request_id: Option<&str>,
        lines: &[(usize, usize, i64)],
        ttl_ms: i64,
    ) {
        let Some(request_id) = request_id else { return };
        let retry_id = self.fresh_id("r");
        let inputs = inputs(lines);
        // One retry in four changes a parameter: the same request id must then conflict.
        let ttl_ms = if self.rng.random_ratio(1, 4) {
            ttl_ms + 1
        } else {
            ttl_ms
        };
        match self.engine.reserve(
            &retry_id,
            "order",
            &inputs,
            ttl_ms,
            self.now_ms,
            Some(request_id),
        ) {
            Ok(answer) => {
                let view = self.engine.view(&answer).expect("viewed right away");
                assert!(view.replayed, "retry must replay");
                assert_eq!(view.reservation_id(), reservation_id);
                self.count("replayed");
            }
            Err(EngineError::IdempotencyConflict { .. }) => self.count("conflict"),
            // Evicted from the bounded window: decided afresh.
            Err(EngineError::ShortStock { .. }) => self.count("short"),
            Err(other) => panic!("retry: unexpected {other:?}"),
        }
    }

    fn client_commit(&mut self, index: usize, reservation_id: &str, lines: &[(usize, usize, i64)]) {
        let partial: Option<Vec<(usize, usize, i64)>> = self
            .rng
            .random_ratio(1, 3)
            .then(|| vec![(lines[0].0, lines[0].1, 1)]);
        let inputs = partial.as_deref().map(inputs);
        match self
            .engine
            .commit(reservation_id, inputs.as_deref(), self.now_ms, None)
        {
            Ok(answer) => {
                let view = self.engine.view(&answer).expect("viewed right away");
                assert_eq!(view.status, Status::Committed);
                self.count("committed");
            }
            Err(EngineError::WrongState {
                status: Status::Expired,
                ..
            }) => self.count("commit_expired"),
            Err(EngineError::UnknownReservation { .. }) => self.count("commit_forgotten"),
            Err(other) => panic!("commit: unexpected {other:?}"),
        }
        self.clients[index] = Client::Idle;
    }

    fn client_release(&mut self, index: usize, reservation_id: &str) {
        match self.engine.release(reservation_id, self.now_ms, None) {
            Ok(answer) => {
                let view = self.engine.view(&answer).expect("viewed right away");
                assert!(matches!(view.status, Status::Released | Status::Expired));
                self.count("released");
            }
            Err(EngineError::UnknownReservation { .. }) => self.count("release_forgotten"),
            Err(other) => panic!("release: unexpected {other:?}"),
        }
        self.clients[index] = Client::Idle;
    }

    fn client_extend(&mut self, reservation_id: &str) {
        match self.engine.extend(reservation_id, 5_000, self.now_ms) {
            Ok(answer) => {
                let view = self.engine.view(&answer).expect("viewed right away");
                assert_eq!(view.expires_at_ms, self.now_ms + 5_000);
            }
            Err(EngineError::WrongState { .. } | EngineError::UnknownReservation { .. }) => {}
            Err(other) => panic!("extend: unexpected {other:?}"),
        }
    }

    fn operator_step(&mut self) {
        let sku = sku(self.rng.random_range(0..SKUS));
        let location = LOCATIONS[self.rng.random_range(0..LOCATIONS.len())];
        if self.rng.random_ratio(1, 4) {
            let safety = self.rng.random_range(0..10);
            let view = self
                .engine
                .set_safety_stock(&sku, location, safety, self.now_ms, Annotation::default())
                .expect("a safety stock within bounds is always accepted");
            let level = &view.levels[0];
            assert_eq!(level.safety_stock, safety as u64);
            let unheld = level.on_hand - level.reserved;
            assert_eq!(level.available, unheld.saturating_sub(safety as u64));
            self.count("safety_set");
            return;
        }
        if self.rng.random_ratio(1, 2) {
            let delta = self.rng.random_range(-10..20);
            let delta = if delta == 0 { 1 } else { delta };
            match self
                .engine
                .adjust(&sku, location, delta, self.now_ms, Annotation::default())
            {
                Ok(_) => self.count("adjusted"),
                Err(EngineError::OnHandBelowReserved { .. }) => self.count("adjust_refused"),
                Err(other) => panic!("adjust: unexpected {other:?}"),
            }
            return;
        }
        let seen = self
            .engine
            .get_stock(&[&sku], location, self.now_ms)
            .unwrap();
        let expected = seen.levels[0].on_hand as i64;
        let counted = self.rng.random_range(0..50);
        let annotation = Annotation {
            reason: "count",
            actor: "sim",
            request_id: None,
        };
        match self.engine.set_stock(
            &sku,
            location,
            counted,
            Some(expected),
            self.now_ms,
            annotation,
        ) {
            Ok(view) => assert_eq!(view.levels[0].on_hand, counted as u64),
            Err(EngineError::OnHandBelowReserved { reserved, .. }) => {
                assert!(reserved > counted as u64)
            }
            Err(other) => panic!("set: unexpected {other:?}"),
        }
    }

    fn sale_step(&mut self) {
        let lines = self.random_lines();
        let before: Vec<u64> = lines.iter().map(|l| self.available(l.0, l.1)).collect();
        match self
            .engine
            .decrement(&inputs(&lines), self.now_ms, "walk-in", None)
        {
            Ok(_) => self.count("sold"),
            Err(EngineError::ShortStock { shortfalls }) => {
                for shortfall in shortfalls {
                    let position = lines
                        .iter()
                        .position(|l| {
                            sku(l.0) == *shortfall.sku && LOCATIONS[l.1] == &*shortfall.location
                        })
                        .unwrap();
                    assert_eq!(
                        shortfall.available, before[position],
                        "shortfall names the available"
                    );
                }
                self.count("sale_short");
            }
            Err(other) => panic!("decrement: unexpected {other:?}"),
        }
    }

    fn available(&self, sku_index: usize, location: usize) -> u64 {
        let view = self
            .engine
            .get_stock(&[&sku(sku_index)], LOCATIONS[location], self.now_ms)
            .unwrap();
        view.levels[0].available
    }

    fn sweep_step(&mut self) {
        let max_count = self.rng.random_range(1..=20);
        let expired = self.engine.expire_due(self.now_ms, max_count).unwrap();
        for id in &expired {
            assert_eq!(
                self.engine
                    .get_reservation(id, self.now_ms)
                    .unwrap()
                    .status(),
                Status::Expired
            );
        }
        if let Some(next) = self.engine.next_expiry_ms() {
            assert!(
                expired.len() == max_count || next > self.now_ms,
                "sweep left a due hold"
            );
        }
    }

    fn persist(&mut self) {
        while let Some(batch) = self
            .engine
            .take_journal(self.rng.random_range(1..=500))
            .unwrap()
        {
            self.database.apply(&batch);
        }
        let state = self.engine.export();
        let engine_items: BTreeMap<Key, (u64, u64, u64)> = state
            .items
            .iter()
            .map(|(s, l, on_hand, reserved, safety)| {
                (
                    (s.to_string(), l.to_string()),
                    (*on_hand, *reserved, *safety),
                )
            })
            .collect();
        assert_eq!(
            engine_items, self.database.items,
            "database equals the engine"
        );
    }

    /// The service's failure path: drain what was acknowledged, throw the engine away and
    /// rebuild it from the database.
    fn crash_and_recover(&mut self) {
        self.persist();
        let before = self.engine.export();
        let (items, holds, records) = self.database.load_input();
        let mut engine = Engine::new(config()).unwrap();
        engine.load(&items, &holds, &records, self.now_ms).unwrap();
        let after = engine.export();
        let (mut items_before, mut items_after) = (before.items.clone(), after.items.clone());
        items_before.sort();
        items_after.sort();
        assert_eq!(items_after, items_before);
        let mut ids_before: Vec<_> = before
            .holds
            .iter()
            .map(|h| h.reservation_id.clone())
            .collect();
        let mut ids_after: Vec<_> = after
            .holds
            .iter()
            .map(|h| h.reservation_id.clone())
            .collect();
        ids_before.sort();
        ids_after.sort();
        assert_eq!(ids_after, ids_before);
        self.engine = engine;
        self.database.lsn_durable = 0;
        self.crashes += 1;
    }
}

fn inputs(lines: &[(usize, usize, i64)]) -> Vec<LineInput<'static>> {
    lines
        .iter()
        .map(|&(sku_index, location, quantity)| LineInput {
            sku: SKU_NAMES[sku_index].as_str(),
            location: LOCATIONS[location],
            quantity,
        })
        .collect()
}

fn simulate(seed: u64) {
    eprintln!("simulation seed = {seed} (replay with SIM_SEED={seed})");
    let mut simulation = Simulation::new(seed);
    for step in 0..STEPS {
        simulation.step();
        if step % 64 == 0 {
            simulation.engine.check_invariants();
        }
    }
    simulation.persist();
    simulation.engine.check_invariants();
    eprintln!(
        "seed {seed}: crashes {} answers {:?}",
        simulation.crashes, simulation.answered
    );
    let expected = [
        "reserved",
        "committed",
        "released",
        "short",
        "sold",
        "adjusted",
        "safety_set",
        "replayed",
        "conflict",
    ];
    assert!(simulation.crashes > 0, "seed {seed}: never crashed");
    for outcome in expected {
        assert!(
            simulation.answered.get(outcome).copied().unwrap_or(0) > 0,
            "never {outcome}"
        );
    }
}

#[test]
fn simulated_clients_never_break_the_engine() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("SIM_SEED is a u64")],
        Err(_) => SEEDS_DEFAULT.to_vec(),
    };
    for seed in seeds {
        simulate(seed);
    }
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut simulation = Simulation::new(seed);
        for _ in 0..2_000 {
            simulation.step();
        }
        simulation.persist();
        (
            simulation.answered,
            simulation.database.items,
            simulation.now_ms,
        )
    };
    assert_eq!(run(7), run(7));
}
