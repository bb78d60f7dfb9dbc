//! A journal batch as PostgreSQL array literals: one text per column of every table the
//! service writes, so persistence sends a whole batch as a few dozen text parameters
//! (`$n::text::bigint[]` in SQL) instead of converting every row to Python objects and
//! every element through the driver's array encoder.
//!
//! The tables and column order are `TABLES`; `service/persistence.py` checks its SQL against
//! them (`Engine.pg_tables()`), so the two cannot drift apart silently.

use rustc_hash::FxHashSet;

use crate::journal::JournalBatch;

/// (table, columns) in the order `batch_columns` renders them.
pub const TABLES: [(&str, &[&str]); 5] = [
    (
        "items",
        &["sku", "location", "on_hand", "reserved", "safety_stock"],
    ),
    (
        "reservations",
        &[
            "reservation_id",
            "order_id",
            "status",
            "expires_at_ms",
            "created_at_ms",
            "updated_at_ms",
            "request_id",
        ],
    ),
    (
        "reservation_lines",
        &[
            "reservation_id",
            "sku",
            "location",
            "quantity",
            "quantity_committed",
            "line_number",
        ],
    ),
    (
        "idempotency",
        &[
            "request_id",
            "fingerprint",
            "operation",
            "outcome_json",
            "lsn",
            "created_at_ms",
        ],
    ),
    (
        "ledger",
        &[
            "lsn",
            "at_ms",
            "sku",
            "location",
            "kind",
            "delta_on_hand",
            "delta_reserved",
            "on_hand_after",
            "reserved_after",
            "delta_safety",
            "safety_after",
            "reservation_id",
            "order_id",
            "request_id",
            "reason",
            "actor",
        ],
    ),
];

/// True when two batches write a common keyed row: an item, a reservation (with its lines)
/// or an idempotency record. Batches that do not may be written on two connections at once
/// (each one's rows then hold values that no operation of the other changed, so either may
/// commit without the other); batches that do must be written one after the other.
pub fn share_rows(first: &JournalBatch, second: &JournalBatch) -> bool {
    let items: FxHashSet<(&str, &str)> = first
        .items
        .iter()
        .map(|item| (item.sku, item.location))
        .collect();
    if second
        .items
        .iter()
        .any(|item| items.contains(&(item.sku, item.location)))
    {
        return true;
    }
    let reservations: FxHashSet<&str> = first.reservations().map(|r| r.reservation_id).collect();
    if second
        .reservations()
        .any(|r| reservations.contains(r.reservation_id))
    {
        return true;
    }
    let requests: FxHashSet<&str> = first.idempotency.iter().map(|r| &*r.request_id).collect();
    second
        .idempotency
        .iter()
        .any(|r| requests.contains(&*r.request_id))
}

/// Number of columns over all tables: the length of `batch_columns`' answer.
pub fn column_count() -> usize {
    TABLES.iter().map(|(_, columns)| columns.len()).sum()
}

/// One array literal under construction, e.g. `{"a","b\"c",NULL}` or `{1,2}`.
struct ArrayText {
    text: String,
    empty: bool,
}

impl ArrayText {
    fn with_capacity(bytes: usize) -> ArrayText {
        let mut text = String::with_capacity(bytes + 2);
        text.push('{');
        ArrayText { text, empty: true }
    }

    fn separate(&mut self) {
        if !self.empty {
            self.text.push(',');
        }
        self.empty = false;
    }

    /// Quoted, with `"` and `\` escaped: any other character (commas, braces, newlines,
    /// spaces) is literal inside quotes.
    fn push_text(&mut self, value: &str) {
        self.separate();
        self.text.push('"');
        // Almost every text (ids, skus) has neither: copied whole (memchr2 looks at many
        // bytes at a time; the split below goes character by character).
        if memchr::memchr2(b'"', b'\\', value.as_bytes()).is_none() {
            self.text.push_str(value);
            self.text.push('"');
            return;
        }
        for piece in value.split_inclusive(['"', '\\']) {
            match piece.as_bytes().last() {
                Some(b'"' | b'\\') => {
                    let (head, tail) = piece.split_at(piece.len() - 1);
                    self.text.push_str(head);
                    self.text.push('\\');
                    self.text.push_str(tail);
                }
                _ => self.text.push_str(piece),
            }
        }
        self.text.push('"');
    }

    fn push_optional_text(&mut self, value: Option<&str>) {
        match value {
            Some(text) => self.push_text(text),
            None => {
                self.separate();
                self.text.push_str("NULL");
            }
        }
    }

    fn push_integer(&mut self, value: impl itoa::Integer) {
        self.separate();
        self.text.push_str(itoa::Buffer::new().format(value));
    }

    fn finish(mut self) -> String {
        self.text.push('}');
        self.text
    }
}

/// Columns of `rows` rows, each started with room for `bytes_per_row` bytes.
fn arrays(count: usize, rows: usize, bytes_per_row: usize) -> Vec<ArrayText> {
    (0..count)
        .map(|_| ArrayText::with_capacity(rows * bytes_per_row))
        .collect()
}

/// Every column of every table in `TABLES` order, as PostgreSQL array literals.
pub fn batch_columns(batch: &JournalBatch) -> Vec<String> {
    let mut out = Vec::with_capacity(column_count());

    let mut items = arrays(5, batch.items.len(), 16);
    for item in batch.items.iter() {
        items[0].push_text(item.sku);
        items[1].push_text(item.location);
        items[2].push_integer(item.on_hand);
        items[3].push_integer(item.reserved);
        items[4].push_integer(item.safety_stock);
    }
    out.extend(items.into_iter().map(ArrayText::finish));

    let mut reservations = arrays(7, batch.reservations().len(), 24);
    for row in batch.reservations() {
        reservations[0].push_text(row.reservation_id);
        reservations[1].push_text(row.order_id);
        reservations[2].push_text(row.status);
        reservations[3].push_integer(row.expires_at_ms);
        reservations[4].push_integer(row.created_at_ms);
        reservations[5].push_integer(row.updated_at_ms);
        reservations[6].push_optional_text(row.request_id);
    }
    out.extend(reservations.into_iter().map(ArrayText::finish));

    // A reservation's lines come together, in request order: number them in that order.
    let mut lines = arrays(6, batch.reservation_lines().len(), 16);
    let mut previous_row = usize::MAX;
    let mut line_number = 0u32;
    for row in batch.reservation_lines() {
        if row.reservation_row != previous_row {
            previous_row = row.reservation_row;
            line_number = 0;
        }
        lines[0].push_text(row.reservation_id);
        lines[1].push_text(row.sku);
        lines[2].push_text(row.location);
        lines[3].push_integer(row.quantity);
        lines[4].push_integer(row.quantity_committed);
        lines[5].push_integer(line_number);
        line_number += 1;
    }
    out.extend(lines.into_iter().map(ArrayText::finish));

    let mut idempotency = arrays(6, batch.idempotency.len(), 24);
    for row in &batch.idempotency {
        idempotency[0].push_text(&row.request_id);
        idempotency[1].push_integer(row.fingerprint);
        idempotency[2].push_text(row.operation);
        idempotency[3].push_text(&row.outcome_json);
        idempotency[4].push_integer(row.lsn);
        idempotency[5].push_integer(row.created_at_ms);
    }
    out.extend(idempotency.into_iter().map(ArrayText::finish));

    let mut ledger = arrays(16, batch.ledger().len(), 16);
    for row in batch.ledger() {
        ledger[0].push_integer(row.lsn);
        ledger[1].push_integer(row.at_ms);
        ledger[2].push_text(row.sku);
        ledger[3].push_text(row.location);
        ledger[4].push_text(row.kind);
        ledger[5].push_integer(row.delta_on_hand);
        ledger[6].push_integer(row.delta_reserved);
        ledger[7].push_integer(row.on_hand_after);
        ledger[8].push_integer(row.reserved_after);
        ledger[9].push_integer(row.delta_safety);
        ledger[10].push_integer(row.safety_after);
        ledger[11].push_text(row.reservation_id);
        ledger[12].push_text(row.order_id);
        ledger[13].push_text(row.request_id);
        ledger[14].push_text(row.reason);
        ledger[15].push_text(row.actor);
    }
    out.extend(ledger.into_iter().map(ArrayText::finish));

    debug_assert_eq!(out.len(), column_count());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Parses one literal written by `ArrayText` back into its elements (None for NULL): the
    /// inverse, for tests.
    fn parse_array(literal: &str) -> Vec<Option<String>> {
        let inner = literal
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
            .expect("an array literal is enclosed in braces");
        let mut elements = Vec::new();
        let mut chars = inner.chars().peekable();
        while chars.peek().is_some() {
            if chars.peek() == Some(&'"') {
                chars.next();
                let mut element = String::new();
                loop {
                    match chars.next().expect("a quoted element is closed") {
                        '\\' => element.push(chars.next().expect("an escape is followed")),
                        '"' => break,
                        other => element.push(other),
                    }
                }
                elements.push(Some(element));
            } else {
                let mut bare = String::new();
                while let Some(&next) = chars.peek() {
                    if next == ',' {
                        break;
                    }
                    bare.push(next);
                    chars.next();
                }
                elements.push(if bare == "NULL" { None } else { Some(bare) });
            }
            if chars.peek() == Some(&',') {
                chars.next();
            }
        }
        elements
    }

    /// One text list rendered as `batch_columns` renders a text column.
    fn text_array(values: &[Option<&str>]) -> String {
        let mut array = ArrayText::with_capacity(values.len() * 8);
        for value in values {
            array.push_optional_text(*value);
        }
        array.finish()
    }

    #[test]
    fn quotes_and_escapes() {
        let rendered = text_array(&[Some("a"), Some("b\"c"), Some("d\\e"), None, Some("")]);
        assert_eq!(rendered, r#"{"a","b\"c","d\\e",NULL,""}"#);
    }

    #[test]
    fn batches_share_rows_through_items_reservations_and_request_ids() {
        use crate::engine::Annotation;
        use crate::{Engine, EngineConfig, LineInput};
        const NOW: i64 = 1_700_000_000_000;
        let mut engine = Engine::new(EngineConfig::default()).unwrap();
        for sku in ["a", "b", "c"] {
            engine
                .set_stock(sku, "", 100, None, NOW, Annotation::default())
                .unwrap();
        }
        engine.take_journal(100).unwrap();
        let line = |sku| LineInput {
            sku,
            location: "",
            quantity: 1,
        };
        let take = |engine: &mut Engine| engine.take_journal(100).unwrap().unwrap();
        engine
            .reserve("r1", "o", &[line("a")], 60_000, NOW, Some("q1"))
            .unwrap();
        let on_a = take(&mut engine);
        engine
            .reserve("r2", "o", &[line("b")], 60_000, NOW, Some("q2"))
            .unwrap();
        let on_b = take(&mut engine);
        engine
            .reserve("r3", "o", &[line("a")], 60_000, NOW, None)
            .unwrap();
        let on_a_again = take(&mut engine);
        engine.extend("r2", 120_000, NOW).unwrap();
        let extend_r2 = take(&mut engine);
        assert!(!share_rows(&on_a, &on_b) && !share_rows(&on_b, &on_a));
        assert!(share_rows(&on_a, &on_a_again) && share_rows(&on_a_again, &on_a));
        // No item row at all, but the same reservation.
        assert!(extend_r2.items.is_empty());
        assert!(share_rows(&on_b, &extend_r2) && !share_rows(&on_a, &extend_r2));
    }

    #[test]
    fn empty_array() {
        assert_eq!(text_array(&[]), "{}");
    }

    #[test]
    fn integers() {
        let mut array = ArrayText::with_capacity(4);
        array.push_integer(-5i64);
        array.push_integer(u64::MAX);
        assert_eq!(array.finish(), "{-5,18446744073709551615}");
    }

    proptest! {
        #[test]
        fn any_text_round_trips(values in proptest::collection::vec(
            proptest::option::of("\\PC{0,12}"), 0..8)) {
            let borrowed: Vec<Option<&str>> = values.iter().map(|v| v.as_deref()).collect();
            let parsed = parse_array(&text_array(&borrowed));
            prop_assert_eq!(parsed, values);
        }
    }
}
