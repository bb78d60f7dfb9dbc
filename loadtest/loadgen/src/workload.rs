//! What each call asks for: the scenario decides the lines of one reservation.
use crate::args::Options;
use crate::proto::{Line, ReserveBatchRequest, ReserveRequest};

/// A prepared call: one Reserve, or one ReserveBatch.
pub enum Call {
    Single(ReserveRequest),
    Batch(ReserveBatchRequest),
}

/// The single SKU every buyer wants in the flash sale.
pub const HOT_SKU: &str = "hot-0";
/// Lines per order in the multi-line scenario.
pub const ORDER_LINES: usize = 3;

/// The name of SKU number `index` in the spread scenarios (fixed width so names sort).
pub fn sku_name(index: u64) -> String {
    format!("sku-{index:07}")
}

/// A tiny xorshift generator: the workload needs speed and independence between tasks, not
/// statistical quality, and this keeps the crate free of another dependency.
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Random {
        Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// Builds the requests of one task; request ids are unique per run (prefix) and per task.
pub struct Workload {
    options: Options,
    random: Random,
    request_prefix: String,
    counter: u64,
}

impl Workload {
    pub fn new(options: &Options, run_id: u64, task: u64) -> Workload {
        Workload {
            options: options.clone(),
            random: Random::new(run_id ^ (task + 1)),
            request_prefix: format!("lg-{run_id:x}-{task}-"),
            counter: 0,
        }
    }

    pub fn reserve(&mut self) -> ReserveRequest {
        self.counter += 1;
        ReserveRequest {
            request_id: format!("{}{}", self.request_prefix, self.counter),
            order_id: format!("order-{}{}", self.request_prefix, self.counter),
            lines: self.lines(),
            ttl_ms: self.options.ttl_ms as i64,
        }
    }

    /// The next call: a ReserveBatch of `batch` requests when `batch` > 0, else a Reserve.
    pub fn next_call(&mut self, batch: u64) -> Call {
        if batch == 0 {
            Call::Single(self.reserve())
        } else {
            Call::Batch(self.reserve_batch())
        }
    }

    pub fn reserve_batch(&mut self) -> ReserveBatchRequest {
        let size = self.options.batch.max(1) as usize;
        ReserveBatchRequest {
            requests: (0..size).map(|_| self.reserve()).collect(),
        }
    }

    fn lines(&mut self) -> Vec<Line> {
        match self.options.scenario.as_str() {
            "hot" => vec![self.line(HOT_SKU.to_string())],
            "spread" => {
                let index = self.random.below(self.options.skus);
                vec![self.line(sku_name(index))]
            }
            _ => self
                .distinct_indexes(ORDER_LINES)
                .into_iter()
                .map(|i| self.line(sku_name(i)))
                .collect(),
        }
    }

    /// Distinct SKUs: an order names each item once. Bounded retries because with fewer SKUs
    /// than lines no amount of drawing finds enough.
    fn distinct_indexes(&mut self, count: usize) -> Vec<u64> {
        let wanted = count.min(self.options.skus as usize);
        let mut indexes = Vec::with_capacity(wanted);
        for _ in 0..wanted * 16 {
            let index = self.random.below(self.options.skus);
            if !indexes.contains(&index) {
                indexes.push(index);
            }
            if indexes.len() == wanted {
                break;
            }
        }
        indexes
    }

    fn line(&self, sku: String) -> Line {
        Line {
            sku,
            quantity: 1,
            location: self.options.location.clone(),
        }
    }
}
