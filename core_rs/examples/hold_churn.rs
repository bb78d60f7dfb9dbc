//! Per-call latency of reserve and release at a steady number of live holds: fills `LIVE`
//! one-line holds (TTL 1 h, one millisecond apart), then `STEPS` times reserves a new one
//! and releases one of the live holds taken at random, timing each call. Holds so end long
//! before they expire and in no order of expiry, as in a shop where orders are paid or
//! abandoned within minutes under a longer TTL: the ended holds' entries stay in the expiry
//! heaps until a sweep drops them (the oldest ones also reach the top, where the sweeper's
//! rounds pop them). Stalls that come once per many calls (tables
//! growing, stale heap entries dropped) show in the maximum and the count of slow calls.
//! `cargo run --release --example hold_churn -- LIVE STEPS ITEMS` (defaults 200000 600000
//! 1000; ITEMS 1 puts every hold on one hot item). Prints one JSON line; with `SLOW=1`, also
//! each call over 200 µs as (step, r|x for reserve|release, µs, expiry queue entries). Every
//! `SWEEP_EVERY_STEPS` steps a sweeper round runs, timed apart from the calls.

// Only `drain` and `NOW_MS` are used here; the rest serves the pair benchmarks.
#[allow(dead_code)]
#[path = "../benches/pairs_loop.rs"]
mod pairs_loop;

use std::time::Instant;

use core_rs::engine::Annotation;
use core_rs::{Engine, EngineConfig, LineInput};
use pairs_loop::{drain, NOW_MS};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const TTL_MS: i64 = 3_600_000;
/// Memory touched before the run (as the service does at start), so that page faults of
/// fresh memory do not pass for the engine's own stalls.
const PREFAULT_MIB: usize = 2_048;
const SLOW_NS: u64 = 200_000;
/// Steps between two sweeper rounds (`expire_due`, then `next_expiry_ms`, as the service's
/// sweeper does): 250 ms at about 7,000 steps/s. Nothing is due (holds of an hour), so a
/// round only pops the stale entries that reached the top of the queue since the last one.
const SWEEP_EVERY_STEPS: usize = 1_750;

struct Churn {
    engine: Engine,
    skus: Vec<String>,
    live: Vec<String>,
    next: usize,
    /// Chooses the hold to release.
    random: SmallRng,
}

impl Churn {
    /// A new hold at time `next` ms; returns how long the call took.
    fn reserve(&mut self) -> u64 {
        let id = format!("r-{:012}-0000-4000-8000-000000000000", self.next);
        let sku = &self.skus[self.next % self.skus.len()];
        let line = [LineInput {
            sku,
            location: "",
            quantity: 1,
        }];
        let now_ms = NOW_MS + self.next as i64;
        self.next += 1;
        let start = Instant::now();
        self.engine
            .reserve(&id, "order", &line, TTL_MS, now_ms, None)
            .unwrap();
        let took = start.elapsed().as_nanos() as u64;
        self.live.push(id);
        took
    }

    /// One sweeper round; returns how long it took.
    fn sweep(&mut self) -> u64 {
        let now_ms = NOW_MS + self.next as i64;
        let start = Instant::now();
        let expired = self.engine.expire_due(now_ms, 1_000).unwrap();
        self.engine.next_expiry_ms();
        let took = start.elapsed().as_nanos() as u64;
        assert!(expired.is_empty(), "no hold is due");
        took
    }

    /// Releases a live hold taken at random; returns how long the call took.
    fn release_random(&mut self) -> u64 {
        let index = self.random.random_range(0..self.live.len());
        let id = self.live.swap_remove(index);
        let now_ms = NOW_MS + self.next as i64;
        let start = Instant::now();
        self.engine.release(&id, now_ms, None).unwrap();
        start.elapsed().as_nanos() as u64
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut arg = |default: usize| args.next().map_or(default, |a| a.parse().unwrap());
    let (live, steps, items) = (arg(200_000), arg(600_000), arg(1_000));
    let show_slow = std::env::var_os("SLOW").is_some();
    core_rs::memory::prefault(PREFAULT_MIB).unwrap();
    // Tables sized for the live holds and the finished reservations kept, as the service
    // sizes them (STOCK_ENGINE_HOLDS_PRESIZED): no table grows under a timed call.
    let defaults = EngineConfig::default();
    let mut engine = Engine::new(EngineConfig {
        journal_operations_max: 200_000,
        holds_presized: live + defaults.reservations_terminal_max,
        ..defaults
    })
    .unwrap();
    let skus: Vec<String> = (0..items.max(1)).map(|i| format!("sku-{i:06}")).collect();
    for sku in &skus {
        engine
            .set_stock(sku, "", 1_000_000_000, None, NOW_MS, Annotation::default())
            .unwrap();
    }
    let mut churn = Churn {
        engine,
        skus,
        live: Vec::with_capacity(live + 1),
        next: 0,
        random: SmallRng::seed_from_u64(0x9e37_79b9_7f4a_7c15),
    };
    for i in 0..live {
        churn.reserve();
        if i % 10_000 == 0 {
            drain(&mut churn.engine);
        }
    }
    drain(&mut churn.engine);
    let mut times: Vec<u64> = Vec::with_capacity(2 * steps);
    let mut slow = Vec::new();
    let mut queue_max = 0;
    let mut sweeps: Vec<u64> = Vec::new();
    let run = Instant::now();
    for step in 0..steps {
        for (kind, took) in [('r', churn.reserve()), ('x', churn.release_random())] {
            times.push(took);
            if took > SLOW_NS {
                let entries = churn.engine.stats().expiry_queue_entries;
                slow.push((step, kind, took / 1_000, entries));
            }
        }
        queue_max = queue_max.max(churn.engine.stats().expiry_queue_entries);
        if step % 5_000 == 0 {
            drain(&mut churn.engine);
        }
        if step % SWEEP_EVERY_STEPS == 0 {
            sweeps.push(churn.sweep());
        }
    }
    let step_ns = run.elapsed().as_nanos() as f64 / steps as f64;
    if show_slow {
        eprintln!("{slow:?}");
    }
    let mean = times.iter().sum::<u64>() as f64 / times.len() as f64;
    let over_1ms = times.iter().filter(|&&t| t > 1_000_000).count();
    times.sort_unstable();
    let quantile = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "{{\"live\":{live},\"steps\":{steps},\"items\":{items},\"mean_ns\":{mean:.0},\
         \"p99_ns\":{},\"p99_99_ns\":{},\"max_ns\":{},\"calls_over_200us\":{},\
         \"calls_over_1ms\":{over_1ms},\"expiry_queue_max\":{queue_max},\"step_ns\":{step_ns:.0},\
         \"sweep_rounds\":{},\"sweep_mean_ns\":{:.0},\"sweep_max_ns\":{}}}",
        quantile(0.99),
        quantile(0.9999),
        times[times.len() - 1],
        slow.len(),
        sweeps.len(),
        sweeps.iter().sum::<u64>() as f64 / sweeps.len().max(1) as f64,
        sweeps.iter().max().copied().unwrap_or(0),
    );
}
