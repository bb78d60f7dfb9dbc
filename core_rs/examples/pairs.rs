//! The criterion `single_line_pair` loop as a plain program, for instruction counts:
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured_pairs*'
//! target/release/examples/pairs WARMUP MEASURED` counts only the measured pairs (after a
//! warm-up that fills the retained terminal reservations, as in the bench's steady state).

use std::hint::black_box;

use core_rs::engine::Annotation;
use core_rs::limits::JOURNAL_TAKE_OPERATIONS_MAX;
use core_rs::{Engine, EngineConfig, LineInput};

const ITEMS: usize = 1_000;
const ID_POOL: usize = 1 << 20;
const NOW_MS: i64 = 1_700_000_000_000;
const TTL_MS: i64 = 60_000;
const DRAIN_EVERY_OPERATIONS: u64 = 10_000;

fn drain(engine: &mut Engine) {
    while engine
        .take_journal(JOURNAL_TAKE_OPERATIONS_MAX)
        .unwrap()
        .is_some()
    {}
}

#[inline(never)]
fn measured_pairs(engine: &mut Engine, ids: &[String], skus: &[String], next: &mut usize, n: u64) {
    pairs(engine, ids, skus, next, n);
}

fn pairs(engine: &mut Engine, ids: &[String], skus: &[String], next: &mut usize, n: u64) {
    for _ in 0..n {
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
            drain(engine);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let warmup: u64 = args.next().map_or(300_000, |a| a.parse().unwrap());
    let measured: u64 = args.next().map_or(100_000, |a| a.parse().unwrap());
    let config = EngineConfig {
        journal_operations_max: 100_000,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config).unwrap();
    let skus: Vec<String> = (0..ITEMS).map(|i| format!("sku-{i:06}")).collect();
    for sku in &skus {
        engine
            .set_stock(sku, "", 1_000_000_000, None, NOW_MS, Annotation::default())
            .unwrap();
    }
    drain(&mut engine);
    let ids: Vec<String> = (0..ID_POOL)
        .map(|i| format!("pair-{i:08x}-0000-4000-8000-000000000000"))
        .collect();
    let mut next = 0usize;
    pairs(&mut engine, &ids, &skus, &mut next, warmup);
    let start = std::time::Instant::now();
    measured_pairs(&mut engine, &ids, &skus, &mut next, measured);
    let elapsed = start.elapsed();
    eprintln!(
        "{measured} pairs, {:.1} ns per pair",
        elapsed.as_nanos() as f64 / measured as f64
    );
}
