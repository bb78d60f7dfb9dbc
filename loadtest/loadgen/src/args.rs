//! Command-line options: `--name value` pairs, every one with a default and a bound.
use std::collections::HashMap;

pub const USAGE: &str = "usage: loadgen seed|run [--target HOST:PORT] [--token T] \
[--scenario hot|spread|order3] [--mode closed|open] [--concurrency N] [--rate CALLS_PER_S] \
[--duration-s S] [--warmup-s S] [--batch B] [--connections C] [--ttl-ms MS] [--skus N] \
[--on-hand N] [--location L]";

/// In-flight calls are bounded so that an overloaded server cannot make the generator grow
/// without limit; 20,000 is far above any concurrency that still has useful latency here.
pub const CONCURRENCY_MAX: u64 = 20_000;
/// A batch call carries at most 1,000 operations (the API's BATCH_REQUESTS_MAX).
pub const BATCH_SIZE_MAX: u64 = 1_000;
/// Runs are bounded in time: a benchmark step must stop by itself.
pub const DURATION_S_MAX: u64 = 600;
pub const CONNECTIONS_MAX: u64 = 64;
pub const RATE_MAX: u64 = 1_000_000;
pub const SKUS_MAX: u64 = 1_000_000;
/// The engine's ON_HAND_MAX.
pub const ON_HAND_MAX: u64 = 1_000_000_000_000_000;

#[derive(Clone, Debug)]
pub struct Options {
    pub target: String,
    pub token: String,
    pub scenario: String,
    pub mode: String,
    pub concurrency: u64,
    pub rate: u64,
    pub duration_s: u64,
    pub warmup_s: u64,
    pub batch: u64,
    pub connections: u64,
    pub ttl_ms: u64,
    pub skus: u64,
    pub on_hand: u64,
    pub location: String,
}

impl Options {
    /// Parses `--name value` pairs; exits with the usage text on anything unknown or out of
    /// bounds, because a benchmark run with a silently wrong parameter is worse than none.
    pub fn parse(arguments: &[String]) -> Options {
        let mut values: HashMap<String, String> = HashMap::new();
        let mut iterator = arguments.iter();
        while let Some(name) = iterator.next() {
            let Some(key) = name.strip_prefix("--") else {
                fail(&format!("unexpected {name}"))
            };
            let Some(value) = iterator.next() else {
                fail(&format!("{name} needs a value"))
            };
            values.insert(key.to_string(), value.clone());
        }
        let options = Options {
            target: text(&mut values, "target", "127.0.0.1:50051"),
            token: text(&mut values, "token", ""),
            scenario: text(&mut values, "scenario", "hot"),
            mode: text(&mut values, "mode", "closed"),
            concurrency: number(&mut values, "concurrency", 64, 1, CONCURRENCY_MAX),
            rate: number(&mut values, "rate", 1_000, 1, RATE_MAX),
            duration_s: number(&mut values, "duration-s", 10, 1, DURATION_S_MAX),
            warmup_s: number(&mut values, "warmup-s", 2, 0, DURATION_S_MAX),
            batch: number(&mut values, "batch", 0, 0, BATCH_SIZE_MAX),
            connections: number(&mut values, "connections", 4, 1, CONNECTIONS_MAX),
            ttl_ms: number(&mut values, "ttl-ms", 2_000, 1_000, 86_400_000),
            skus: number(&mut values, "skus", 10_000, 1, SKUS_MAX),
            on_hand: number(&mut values, "on-hand", 1_000_000_000_000, 0, ON_HAND_MAX),
            location: text(&mut values, "location", ""),
        };
        if let Some(unknown) = values.keys().next() {
            fail(&format!("unknown option --{unknown}"));
        }
        if !["hot", "spread", "order3"].contains(&options.scenario.as_str()) {
            fail("--scenario must be hot, spread or order3");
        }
        if !["closed", "open"].contains(&options.mode.as_str()) {
            fail("--mode must be closed or open");
        }
        options
    }
}

fn text(values: &mut HashMap<String, String>, key: &str, default: &str) -> String {
    values.remove(key).unwrap_or_else(|| default.to_string())
}

fn number(
    values: &mut HashMap<String, String>,
    key: &str,
    default: u64,
    low: u64,
    high: u64,
) -> u64 {
    let Some(raw) = values.remove(key) else {
        return default;
    };
    match raw.replace('_', "").parse::<u64>() {
        Ok(value) if (low..=high).contains(&value) => value,
        _ => fail(&format!("--{key} must be an integer from {low} to {high}")),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("loadgen: {message}\n{USAGE}");
    std::process::exit(2)
}
