//! The reserve + release pair loop and its engine, shared by the criterion bench
//! (core_rs/benches/engine.rs) and the instruction-count program (core_rs/examples/pairs.rs),
//! so that both measure the same thing.

use std::hint::black_box;

use core_rs::engine::Annotation;
use core_rs::limits::JOURNAL_TAKE_OPERATIONS_MAX;
use core_rs::{Engine, EngineConfig, LineInput};

pub const ITEMS: usize = 1_000;
pub const ID_POOL: usize = 1 << 20;
pub const NOW_MS: i64 = 1_700_000_000_000;
pub const TTL_MS: i64 = 60_000;
/// The journal is drained (as the service does) every this many operations, inside the
/// timed loop: its cost is part of the throughput.
pub const DRAIN_EVERY_OPERATIONS: u64 = 10_000;

pub fn config() -> EngineConfig {
    EngineConfig {
        journal_operations_max: 100_000,
        ..EngineConfig::default()
    }
}

/// An engine holding ITEMS items with ample stock, its journal drained; and their skus.
pub fn stocked_engine() -> (Engine, Vec<String>) {
    let mut engine = Engine::new(config()).unwrap();
    let skus: Vec<String> = (0..ITEMS).map(|i| format!("sku-{i:06}")).collect();
    for sku in &skus {
        engine
            .set_stock(sku, "", 1_000_000_000, None, NOW_MS, Annotation::default())
            .unwrap();
    }
    drain(&mut engine);
    (engine, skus)
}

pub fn drain(engine: &mut Engine) {
    while engine
        .take_journal(JOURNAL_TAKE_OPERATIONS_MAX)
        .unwrap()
        .is_some()
    {}
}

/// ID_POOL reservation ids in the service's shape.
pub fn ids(prefix: &str) -> Vec<String> {
    (0..ID_POOL)
        .map(|i| format!("{prefix}-{i:08x}-0000-4000-8000-000000000000"))
        .collect()
}

/// `iterations` single-line reserve + release pairs of fresh ids (`next` continues across
/// calls, so ids are not reused while still retained); every DRAIN_EVERY_OPERATIONS
/// operations `drain_journal` is called to drain the journal, as the service does.
pub fn pairs(
    engine: &mut Engine,
    ids: &[String],
    skus: &[String],
    next: &mut usize,
    iterations: u64,
    mut drain_journal: impl FnMut(&mut Engine),
) {
    for _ in 0..iterations {
        let id = &ids[*next & (ID_POOL - 1)];
        let sku = &skus[*next % ITEMS];
        *next += 1;
        let line = [LineInput {
            sku,
            location: "",
            quantity: 1,
        }];
        black_box(
            engine
                .reserve(id, "order", &line, TTL_MS, NOW_MS, None)
                .unwrap(),
        );
        black_box(engine.release(id, NOW_MS, None).unwrap());
        if (2 * *next as u64).is_multiple_of(DRAIN_EVERY_OPERATIONS) {
            drain_journal(engine);
        }
    }
}
