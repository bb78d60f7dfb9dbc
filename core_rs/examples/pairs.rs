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

/// Nanoseconds this thread has run on a processor (Linux: /proc/thread-self/schedstat), so
/// that time the thread waited for a processor taken by other work on a shared host is not
/// counted; None elsewhere.
fn cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let warmup: u64 = args.next().map_or(300_000, |a| a.parse().unwrap());
    let measured: u64 = args.next().map_or(100_000, |a| a.parse().unwrap());
    let (mut engine, skus) = stocked_engine();
    let ids = ids("pair");
    let mut next = 0usize;
    pairs(&mut engine, &ids, &skus, &mut next, warmup, drain);
    let (start, cpu_start) = (std::time::Instant::now(), cpu_ns());
    measured_pairs(&mut engine, &ids, &skus, &mut next, measured);
    let (elapsed, cpu_end) = (start.elapsed(), cpu_ns());
    eprint!(
        "{measured} pairs, {:.1} ns per pair",
        elapsed.as_nanos() as f64 / measured as f64
    );
    if let (Some(cpu_start), Some(cpu_end)) = (cpu_start, cpu_end) {
        let cpu = (cpu_end - cpu_start) as f64 / measured as f64;
        eprint!(", {cpu:.1} ns per pair on the processor");
    }
    eprintln!();
}
