//! Latency samples and outcome counts, merged from every task, summarised as JSON.
use std::collections::BTreeMap;

/// Open-loop runs also keep, per window of this many milliseconds of intended send time, how
/// many calls were sent and the slowest one's latency: a p99 made by a few stalls shows as a
/// few slow windows, one made by steady queueing as many.
pub const TIMELINE_WINDOW_MS: u64 = 100;

/// One call's outcome: its gRPC status code name, and for batch calls how many of its
/// operations succeeded and failed.
pub struct Outcome {
    pub code: &'static str,
    /// The status message of a failed call (kept for the first failure of each code).
    pub message: Option<String>,
    /// The first refused operation of an answered batch call: "<grpc code>: <message>".
    pub operation_error: Option<String>,
    pub operations_ok: u64,
    pub operations_failed: u64,
}

#[derive(Default)]
pub struct Samples {
    latencies_us: Vec<u64>,
    codes: BTreeMap<&'static str, u64>,
    first_messages: BTreeMap<&'static str, String>,
    first_operation_error: Option<String>,
    operations_ok: u64,
    operations_failed: u64,
    /// (calls, slowest latency in us) per TIMELINE_WINDOW_MS; empty for closed-loop runs.
    timeline: Vec<(u64, u64)>,
}

impl Samples {
    /// `record` for a call meant to be sent `offset_us` after the measured window began.
    pub fn record_at(&mut self, offset_us: u64, latency_us: u64, outcome: &Outcome) {
        let window = (offset_us / (TIMELINE_WINDOW_MS * 1_000)) as usize;
        if self.timeline.len() <= window {
            self.timeline.resize(window + 1, (0, 0));
        }
        let (calls, slowest) = &mut self.timeline[window];
        *calls += 1;
        *slowest = (*slowest).max(latency_us);
        self.record(latency_us, outcome);
    }

    pub fn record(&mut self, latency_us: u64, outcome: &Outcome) {
        self.latencies_us.push(latency_us);
        *self.codes.entry(outcome.code).or_insert(0) += 1;
        if let Some(message) = &outcome.message {
            self.first_messages
                .entry(outcome.code)
                .or_insert_with(|| message.clone());
        }
        if self.first_operation_error.is_none() {
            self.first_operation_error = outcome.operation_error.clone();
        }
        self.operations_ok += outcome.operations_ok;
        self.operations_failed += outcome.operations_failed;
    }

    pub fn merge(&mut self, other: Samples) {
        self.latencies_us.extend(other.latencies_us);
        for (code, count) in other.codes {
            *self.codes.entry(code).or_insert(0) += count;
        }
        for (code, message) in other.first_messages {
            self.first_messages.entry(code).or_insert(message);
        }
        if self.first_operation_error.is_none() {
            self.first_operation_error = other.first_operation_error;
        }
        self.operations_ok += other.operations_ok;
        self.operations_failed += other.operations_failed;
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize(other.timeline.len(), (0, 0));
        }
        for (mine, (calls, slowest)) in self.timeline.iter_mut().zip(other.timeline) {
            mine.0 += calls;
            mine.1 = mine.1.max(slowest);
        }
    }

    /// The summary of a window of `window_s` seconds. Latency covers every answered call
    /// (a refusal for short stock is an answer too); throughput counts calls and operations.
    pub fn summary(mut self, window_s: f64) -> serde_json::Value {
        self.latencies_us.sort_unstable();
        let calls = self.latencies_us.len() as u64;
        let calls_ok = self.codes.get("OK").copied().unwrap_or(0);
        let timeline = (!self.timeline.is_empty()).then(|| {
            serde_json::json!({
                "window_ms": TIMELINE_WINDOW_MS,
                "calls": self.timeline.iter().map(|(calls, _)| calls).collect::<Vec<_>>(),
                "max_ms": self.timeline.iter()
                    .map(|(_, slowest)| *slowest as f64 / 1_000.0).collect::<Vec<_>>(),
            })
        });
        serde_json::json!({
            "calls": calls,
            "calls_ok": calls_ok,
            "codes": self.codes,
            "first_error_messages": self.first_messages,
            "calls_per_s": calls as f64 / window_s,
            "calls_ok_per_s": calls_ok as f64 / window_s,
            "operations_ok": self.operations_ok,
            "operations_failed": self.operations_failed,
            "first_operation_error": self.first_operation_error,
            "operations_ok_per_s": self.operations_ok as f64 / window_s,
            "latency_ms": {
                "p50": percentile_ms(&self.latencies_us, 0.50),
                "p90": percentile_ms(&self.latencies_us, 0.90),
                "p99": percentile_ms(&self.latencies_us, 0.99),
                "p999": percentile_ms(&self.latencies_us, 0.999),
                "max": percentile_ms(&self.latencies_us, 1.0),
            },
            "timeline": timeline,
        })
    }
}

/// Nearest-rank percentile of sorted samples, in milliseconds; null when there are none.
fn percentile_ms(sorted_us: &[u64], fraction: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = ((fraction * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    Some(sorted_us[rank - 1] as f64 / 1_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<u64> = (1..=1_000).map(|i| i * 1_000).collect();
        assert_eq!(percentile_ms(&samples, 0.50), Some(500.0));
        assert_eq!(percentile_ms(&samples, 0.99), Some(990.0));
        assert_eq!(percentile_ms(&samples, 0.999), Some(999.0));
        assert_eq!(percentile_ms(&samples, 1.0), Some(1_000.0));
        assert_eq!(percentile_ms(&[], 0.5), None);
    }

    #[test]
    fn the_timeline_keeps_each_windows_calls_and_slowest_latency() {
        let ok = Outcome {
            code: "OK",
            message: None,
            operation_error: None,
            operations_ok: 1,
            operations_failed: 0,
        };
        let mut first = Samples::default();
        first.record_at(10_000, 2_000, &ok);
        first.record_at(99_999, 7_000, &ok);
        first.record_at(250_000, 1_000, &ok);
        let mut second = Samples::default();
        second.record_at(120_000, 30_000, &ok);
        first.merge(second);
        let summary = first.summary(1.0);
        assert_eq!(summary["timeline"]["calls"], serde_json::json!([2, 1, 1]));
        assert_eq!(
            summary["timeline"]["max_ms"],
            serde_json::json!([7.0, 30.0, 1.0])
        );
        assert_eq!(summary["calls"], 4);
    }
}
