//! Load generator for the stock reservation gRPC API.
//!
//! Python gRPC clients spend about one core per 7,000 calls/s, which on a 2-core machine starves
//! the server under test; this generator spends a small fraction of that. Two sub-commands:
//!
//! * `seed`: creates the benchmark stock with SetStock (operator token).
//! * `run`: closed loop (N calls always in flight: maximum throughput) or open loop (a fixed
//!   offered rate, latency measured from each call's intended send time so that a slow server
//!   cannot hide its queueing delay: no coordinated omission). Prints one JSON object.
mod args;
mod proto;
mod run;
mod stats;
mod workload;

use std::process::ExitCode;

// One thread: the generator must leave the cores to the server under test, and a single
// thread avoids cross-thread wake-ups on every answer.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match arguments.first().map(String::as_str) {
        Some("seed") => run::seed(args::Options::parse(&arguments[1..])).await,
        Some("run") => run::run(args::Options::parse(&arguments[1..])).await,
        _ => Err(args::USAGE.to_string()),
    };
    match outcome {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("loadgen: {message}");
            ExitCode::FAILURE
        }
    }
}
