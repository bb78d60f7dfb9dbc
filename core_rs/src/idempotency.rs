//! Bounded idempotency records: request id -> (fingerprint, first outcome, lsn).
//!
//! Oldest records are evicted first once `records_max` is reached. Outcomes are kept as
//! Rust values; their JSON form is built only when journaled (`take_journal`) and parsed
//! only when loaded at recovery.

use std::collections::VecDeque;
use std::fmt::Write;
use std::ops::Deref;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::record::LineTexts;
use crate::reservation::Status;
use crate::view::{Level, LevelsView, LineView, Outcome, ReservationView};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Reserve,
    Commit,
    Release,
    Decrement,
    Adjust,
    Set,
    Safety,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Reserve => "reserve",
            Operation::Commit => "commit",
            Operation::Release => "release",
            Operation::Decrement => "decrement",
            Operation::Adjust => "adjust",
            Operation::Set => "set",
            Operation::Safety => "safety",
        }
    }

    pub fn parse(text: &str) -> Option<Operation> {
        [
            Operation::Reserve,
            Operation::Commit,
            Operation::Release,
            Operation::Decrement,
            Operation::Adjust,
            Operation::Set,
            Operation::Safety,
        ]
        .into_iter()
        .find(|operation| operation.as_str() == text)
    }
}

#[derive(Debug)]
pub struct IdempotencyRecord {
    pub request_id: Arc<str>,
    pub fingerprint: i64,
    pub operation: Operation,
    pub outcome: Outcome,
    /// LSN of the operation that produced the outcome (0: loaded at recovery).
    pub lsn: u64,
    pub created_at_ms: i64,
}

#[derive(Debug)]
pub struct IdempotencyStore {
    records: FxHashMap<Arc<str>, Arc<IdempotencyRecord>>,
    order: VecDeque<Arc<str>>,
    records_max: usize,
}

impl IdempotencyStore {
    pub fn new(records_max: usize) -> IdempotencyStore {
        IdempotencyStore {
            records: FxHashMap::default(),
            order: VecDeque::new(),
            records_max,
        }
    }

    pub fn get(&self, request_id: &str) -> Option<&Arc<IdempotencyRecord>> {
        self.records.get(request_id)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Makes room for `records` in all, so that remembering up to that many never rehashes
    /// the map or copies the order list under a call. One more: an insert at the bound
    /// holds it briefly before evicting the oldest.
    pub fn reserve_total(&mut self, records: usize) {
        let records = records + 1;
        self.records
            .reserve(records.saturating_sub(self.records.len()));
        self.order.reserve(records.saturating_sub(self.order.len()));
    }

    /// Records the map can hold before it grows, for monitoring.
    pub fn capacity(&self) -> usize {
        self.records.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Remembers a record, evicting the oldest beyond the bound.
    pub fn insert(&mut self, record: Arc<IdempotencyRecord>) {
        let request_id = record.request_id.clone();
        let previous = self.records.insert(request_id.clone(), record);
        assert!(previous.is_none(), "request id remembered twice");
        self.order.push_back(request_id);
        while self.records.len() > self.records_max {
            let oldest = self.order.pop_front().expect("order tracks every record");
            self.records.remove(&oldest);
        }
        debug_assert_eq!(self.records.len(), self.order.len());
    }
}

/// Appends `text` as a JSON string literal. Ids are almost always plain ASCII with nothing
/// to escape; those are copied as they are, anything else goes through serde_json.
fn push_text(out: &mut String, text: &str) {
    let plain = text
        .bytes()
        .all(|byte| (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\');
    if plain {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&Value::from(text).to_string());
    }
}

/// Appends `,` then the integers in decimal, without a temporary string per number.
fn push_integers(out: &mut String, values: &[i128]) {
    for value in values {
        // Writing into a String cannot fail.
        let _ = write!(out, ",{value}");
    }
}

fn push_lines<S: Deref<Target = str>>(out: &mut String, lines: &[LineView<S>]) {
    out.push('[');
    for (index, line) in lines.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push('[');
        push_text(out, &line.sku);
        out.push(',');
        push_text(out, &line.location);
        push_integers(out, &[line.quantity as i128]);
        out.push(']');
    }
    out.push(']');
}

/// The outcome snapshot as stored in PostgreSQL; written directly (it is built for every
/// remembered request), in the shape `outcome_from_json` reads.
pub fn outcome_to_json(outcome: &Outcome) -> String {
    let mut out = String::with_capacity(256);
    match outcome {
        Outcome::Reservation(view) => {
            out.push_str("{\"kind\":\"reservation\",\"reservation_id\":");
            push_text(&mut out, view.reservation_id());
            out.push_str(",\"order_id\":");
            push_text(&mut out, view.order_id());
            out.push_str(",\"status\":\"");
            out.push_str(view.status.as_str());
            out.push_str("\",\"lines\":");
            push_lines(&mut out, &view.lines());
            out.push_str(",\"committed_lines\":");
            push_lines(&mut out, &view.committed_lines());
            out.push_str(",\"expires_at_ms\":");
            let _ = write!(out, "{}}}", view.expires_at_ms);
        }
        Outcome::Levels(view) => {
            out.push_str("{\"kind\":\"levels\",\"levels\":[");
            for (index, level) in view.levels.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push('[');
                push_text(&mut out, &level.sku);
                out.push(',');
                push_text(&mut out, &level.location);
                let (on_hand, reserved) = (level.on_hand, level.reserved);
                let (available, safety_stock) = (level.available, level.safety_stock);
                push_integers(
                    &mut out,
                    &[
                        on_hand as i128,
                        reserved as i128,
                        available as i128,
                        safety_stock as i128,
                    ],
                );
                out.push(']');
            }
            out.push_str("]}");
        }
    }
    out
}

fn text(value: &Value) -> Option<Arc<str>> {
    value.as_str().map(Arc::from)
}

fn lines_from_json(value: &Value) -> Option<LineTexts> {
    let mut lines = LineTexts::default();
    for line in value.as_array()? {
        let line = line.as_array()?;
        if line.len() != 3 {
            return None;
        }
        lines.push(line[0].as_str()?, line[1].as_str()?, line[2].as_u64()?);
    }
    Some(lines)
}

fn levels_from_json(value: &Value) -> Option<Vec<Level>> {
    let mut levels = Vec::new();
    for level in value.as_array()? {
        let level = level.as_array()?;
        // Outcomes stored before safety stock existed have five elements (no safety stock).
        let safety_stock = match level.len() {
            5 => 0,
            6 => level[5].as_u64()?,
            _ => return None,
        };
        levels.push(Level {
            sku: text(&level[0])?,
            location: text(&level[1])?,
            on_hand: level[2].as_u64()?,
            reserved: level[3].as_u64()?,
            available: level[4].as_u64()?,
            safety_stock,
        });
    }
    Some(levels)
}

/// Parses a stored outcome; None when it is not one this engine wrote. Loaded outcomes
/// replay at LSN 0: they are durable already.
pub fn outcome_from_json(text_json: &str) -> Option<Outcome> {
    let value: Value = serde_json::from_str(text_json).ok()?;
    match value.get("kind")?.as_str()? {
        "reservation" => Some(Outcome::Reservation(ReservationView::detached(
            value.get("reservation_id")?.as_str()?,
            value.get("order_id")?.as_str()?,
            Status::parse(value.get("status")?.as_str()?)?,
            lines_from_json(value.get("lines")?)?,
            lines_from_json(value.get("committed_lines")?)?,
            value.get("expires_at_ms")?.as_i64()?,
        ))),
        "levels" => Some(Outcome::Levels(LevelsView {
            levels: levels_from_json(value.get("levels")?)?,
            lsn: 0,
            replayed: false,
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_json_round_trips() {
        let line = |sku: &str, quantity| LineView {
            sku: Arc::from(sku),
            location: Arc::from("w\"1"),
            quantity,
        };
        let reservation = Outcome::Reservation(ReservationView::detached(
            "r-é",
            "",
            Status::Committed,
            [line("a", 3), line("b", 1)].into_iter().collect(),
            [line("a", 2)].into_iter().collect(),
            1_700_000_000_000,
        ));
        let text = outcome_to_json(&reservation);
        assert_eq!(outcome_from_json(&text), Some(reservation));
        let levels = Outcome::Levels(LevelsView {
            levels: vec![Level {
                sku: Arc::from("a"),
                location: Arc::from(""),
                on_hand: 5,
                reserved: 2,
                available: 1,
                safety_stock: 2,
            }],
            lsn: 0,
            replayed: false,
        });
        assert_eq!(outcome_from_json(&outcome_to_json(&levels)), Some(levels));
        assert_eq!(outcome_from_json("{\"kind\":\"other\"}"), None);
        // An outcome stored before safety stock existed: five numbers, safety stock 0.
        let stored = r#"{"kind":"levels","levels":[["a","",5,2,3]]}"#;
        let Some(Outcome::Levels(old)) = outcome_from_json(stored) else {
            panic!("a five-element level parses");
        };
        assert_eq!(
            (old.levels[0].available, old.levels[0].safety_stock),
            (3, 0)
        );
        // Plain ids are copied; quotes, backslashes and control characters are escaped.
        let mut out = String::new();
        push_text(&mut out, "ab-1");
        push_text(&mut out, "q\"\\\n\u{1}é");
        assert_eq!(out, r#""ab-1""q\"\\\n\u0001é""#);
    }
}
