//! The criterion `single_line_pair` loop as a plain program, for instruction counts:
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured_pairs*'
//! target/release/examples/pairs WARMUP MEASURED` counts only the measured pairs (after a
//! warm-up that fills the retained terminal reservations, as in the bench's steady state).

#[path = "../benches/pairs_loop.rs"]
mod pairs_loop;

use core_rs::Engine;
use pairs_loop::{drain, ids, pairs, stocked_engine};

#[inline(never)]
fn measured_pairs(engine: &mut Engine, ids: &[String], skus: &[String], next: &mut usize, n: u64) {
    pairs(engine, ids, skus, next, n, drain);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let warmup: u64 = args.next().map_or(300_000, |a| a.parse().unwrap());
    let measured: u64 = args.next().map_or(100_000, |a| a.parse().unwrap());
    let (mut engine, skus) = stocked_engine();
    let ids = ids("pair");
    let mut next = 0usize;
    pairs(&mut engine, &ids, &skus, &mut next, warmup, drain);
    let start = std::time::Instant::now();
    measured_pairs(&mut engine, &ids, &skus, &mut next, measured);
    let elapsed = start.elapsed();
    eprintln!(
        "{measured} pairs, {:.1} ns per pair",
        elapsed.as_nanos() as f64 / measured as f64
    );
}
