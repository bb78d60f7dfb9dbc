//! Engine throughput on one thread (criterion). Not a test: run with
//! `cargo bench --bench engine` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::time::{Duration, Instant};

use core_rs::limits::JOURNAL_TAKE_OPERATIONS_MAX;
use core_rs::{Engine, EngineConfig, LineInput, LoadHold, LoadItem};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

#[path = "pairs_loop.rs"]
mod pairs_loop;

use pairs_loop::{
    drain, ids, pairs, stocked_engine, DRAIN_EVERY_OPERATIONS, ID_POOL, ITEMS, NOW_MS, TTL_MS,
};

const LOAD_ITEMS: usize = 1_000_000;
const LOAD_HOLDS: usize = 1_000_000;

/// `iterations` pairs (`pairs_loop::pairs`); the time taken, with or without the drains.
fn timed_pairs(
    engine: &mut Engine,
    ids: &[String],
    skus: &[String],
    next: &mut usize,
    iterations: u64,
    drains_timed: bool,
) -> Duration {
    let mut untimed = Duration::ZERO;
    let start = Instant::now();
    pairs(engine, ids, skus, next, iterations, |engine| {
        let drain_start = Instant::now();
        drain(engine);
        if !drains_timed {
            untimed += drain_start.elapsed();
        }
    });
    let elapsed = start.elapsed() - untimed;
    drain(engine);
    elapsed
}

fn reserve_release_pairs(c: &mut Criterion) {
    let (mut engine, skus) = stocked_engine();
    let ids = ids("pair");
    // Continues across criterion's calls, so ids are not reused while still retained.
    let mut next = 0usize;
    let mut group = c.benchmark_group("reserve_release");
    group.throughput(Throughput::Elements(1));
    for (name, drains_timed) in [
        ("single_line_pair", true),
        ("single_line_pair_drain_untimed", false),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                timed_pairs(
                    &mut engine,
                    &ids,
                    &skus,
                    &mut next,
                    iterations,
                    drains_timed,
                )
            })
        });
    }
    group.finish();
}

/// Each reserve lands on an item whose previous hold is due: it first expires that hold
/// (journaled), then holds. The clock moves one TTL per reservation.
fn reserve_with_lazy_expiry(c: &mut Criterion) {
    let (mut engine, skus) = stocked_engine();
    let ids = ids("lazy");
    let mut now_ms = NOW_MS;
    let mut next = 0usize;
    let mut group = c.benchmark_group("reserve_lazy_expiry");
    group.throughput(Throughput::Elements(1));
    group.bench_function("reserve_expiring_previous_hold", |b| {
        b.iter_custom(|iterations| {
            let start = Instant::now();
            for _ in 0..iterations {
                let id = &ids[next & (ID_POOL - 1)];
                let sku = &skus[0];
                next += 1;
                now_ms += 1_000;
                let line = [LineInput {
                    sku,
                    location: "",
                    quantity: 1,
                }];
                black_box(engine.reserve(id, "", &line, 1_000, now_ms, None).unwrap());
                if (next as u64).is_multiple_of(DRAIN_EVERY_OPERATIONS / 2) {
                    drain(&mut engine);
                }
            }
            start.elapsed()
        })
    });
    group.finish();
}

fn take_journal(c: &mut Criterion) {
    let (mut engine, skus) = stocked_engine();
    let ids = ids("journal");
    let mut next = 0usize;
    let mut group = c.benchmark_group("take_journal");
    let operations = JOURNAL_TAKE_OPERATIONS_MAX;
    group.throughput(Throughput::Elements(operations as u64));
    group.bench_function("10k_operations_reserve_release", |b| {
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                // Fill outside the timed section: only the drain is measured.
                for _ in 0..operations / 2 {
                    let id = &ids[next & (ID_POOL - 1)];
                    let sku = &skus[next % ITEMS];
                    next += 1;
                    let line = [LineInput {
                        sku,
                        location: "",
                        quantity: 1,
                    }];
                    engine
                        .reserve(id, "order", &line, TTL_MS, NOW_MS, Some(id))
                        .unwrap();
                    engine.release(id, NOW_MS, None).unwrap();
                }
                let start = Instant::now();
                black_box(engine.take_journal(operations).unwrap());
                elapsed += start.elapsed();
            }
            elapsed
        })
    });
    group.finish();
}

fn load_inputs() -> (Vec<LoadItem>, Vec<LoadHold>) {
    let items = (0..LOAD_ITEMS)
        .map(|i| LoadItem {
            sku: format!("sku-{i:08}"),
            location: String::new(),
            on_hand: 10,
            reserved: 1,
            safety_stock: 0,
        })
        .collect();
    let holds = (0..LOAD_HOLDS)
        .map(|i| LoadHold {
            reservation_id: format!("{i:08x}-0000-4000-8000-000000000000"),
            order_id: format!("order-{i}"),
            expires_at_ms: NOW_MS + (i as i64 % 900_000),
            created_at_ms: NOW_MS,
            lines: vec![(format!("sku-{i:08}"), String::new(), 1)],
        })
        .collect();
    (items, holds)
}

fn load(c: &mut Criterion) {
    let (items, holds) = load_inputs();
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("1M_items_1M_holds", |b| {
        b.iter_batched(
            || Engine::new(EngineConfig::default()).unwrap(),
            |mut engine| {
                engine.load(&items, &holds, &[], NOW_MS).unwrap();
                engine
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    reserve_release_pairs,
    reserve_with_lazy_expiry,
    take_journal,
    load
);
criterion_main!(benches);
