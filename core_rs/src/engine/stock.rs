//! Stock without holds: sales (decrement), adjustments, counts (set) and reads.

use std::sync::Arc;

use super::{levels_outcome, Engine};
use crate::errors::{EngineError, EngineResult};
use crate::fingerprint::Fingerprint;
use crate::idempotency::Operation;
use crate::item::{available, ItemIndex};
use crate::journal::{LedgerEntry, LedgerKind, OperationExtra, StockTexts};
use crate::limits::{ON_HAND_MAX, QUANTITY_MAX, STOCK_QUERY_SKUS_MAX};
use crate::validate::{self, LineInput};
use crate::view::{Level, LevelsView, Outcome};

/// Who and why, carried into the ledger of an adjustment or count.
#[derive(Clone, Copy, Debug, Default)]
pub struct Annotation<'a> {
    pub reason: &'a str,
    pub actor: &'a str,
    pub request_id: Option<&'a str>,
}

fn optional_text(value: &str) -> Option<Arc<str>> {
    (!value.is_empty()).then(|| Arc::from(value))
}

/// How an accepted stock request is remembered: under its request id, if it has one.
struct Remembered<'a> {
    operation: Operation,
    fingerprint: i64,
    request_id: Option<&'a str>,
}

impl Engine {
    fn levels_view(&self, items: &[ItemIndex], lsn: u64, now_ms: i64) -> LevelsView {
        let levels = items
            .iter()
            .map(|&index| {
                let item = self.items.get(index);
                let reserved = item.reserved - self.due_quantity(index, now_ms);
                let (sku, location) = self.items.key(index);
                let (on_hand, safety_stock) = (item.on_hand, item.safety_stock);
                Level {
                    sku,
                    location,
                    on_hand,
                    reserved,
                    available: available(on_hand, reserved, safety_stock),
                    safety_stock,
                }
            })
            .collect();
        LevelsView {
            levels,
            lsn,
            replayed: false,
        }
    }

    /// Closes a stock operation: view, idempotency record, journal.
    fn accept_levels(
        &mut self,
        items: &[ItemIndex],
        now_ms: i64,
        lsn: u64,
        remembered: Remembered<'_>,
        mut extra: OperationExtra,
    ) -> LevelsView {
        let view = self.levels_view(items, lsn, now_ms);
        let Remembered {
            operation: kind,
            fingerprint,
            request_id,
        } = remembered;
        let outcome = request_id.map(|_| Outcome::Levels(view.clone()));
        extra.idempotency = outcome
            .and_then(|outcome| self.remember(request_id, kind, fingerprint, outcome, now_ms));
        let extra = (!extra.is_empty()).then_some(extra);
        self.journal.push_operation(lsn, now_ms, None, extra);
        self.debug_check_items(items.iter().copied());
        view
    }

    fn push_level_change(&mut self, item: ItemIndex, kind: LedgerKind, delta: i64, lsn: u64) {
        let entry = self.items.get_mut(item);
        let on_hand = entry.on_hand as i64 + delta;
        assert!(on_hand >= entry.reserved as i64, "on_hand below reserved");
        entry.on_hand = on_hand as u64;
        entry.last_lsn = lsn;
        entry.reserved_checked();
        let entry = LedgerEntry::after(item, entry, kind, (delta, 0, 0));
        self.journal.push_entry(entry);
    }

    /// A sale with no hold: all or nothing, never beyond available.
    pub fn decrement(
        &mut self,
        lines: &[LineInput<'_>],
        now_ms: i64,
        order_id: &str,
        request_id: Option<&str>,
    ) -> EngineResult<LevelsView> {
        validate::lines(lines, false)?;
        validate::optional_id("order_id", order_id)?;
        validate::request_id(request_id)?;
        let fingerprint = match request_id {
            Some(_) => Fingerprint::new("decrement")
                .text(order_id)
                .lines(Some(lines))
                .finish(),
            None => 0,
        };
        if let Some(outcome) = self.replay(request_id, Operation::Decrement, fingerprint)? {
            return Ok(levels_outcome(outcome));
        }
        let holds = self.resolve_lines(lines)?;
        self.expire_items(holds.iter().map(|hold| hold.item), now_ms, 1)?;
        self.check_available(&holds)?;
        let lsn = self.next_lsn();
        for hold in &holds {
            self.push_level_change(
                hold.item,
                LedgerKind::Decrement,
                -(hold.quantity as i64),
                lsn,
            );
        }
        let items: Vec<ItemIndex> = holds.iter().map(|hold| hold.item).collect();
        let texts = StockTexts {
            order_id: optional_text(order_id),
            ..StockTexts::default()
        };
        let operation = stock_operation(texts);
        let remembered = Remembered {
            operation: Operation::Decrement,
            fingerprint,
            request_id,
        };
        Ok(self.accept_levels(&items, now_ms, lsn, remembered, operation))
    }

    fn create_item(&mut self, sku: &str, location: &str) -> EngineResult<ItemIndex> {
        if self.items.len() >= self.config.items_max {
            return Err(EngineError::CapacityExceeded { what: "items" });
        }
        Ok(self.items.insert(sku, location))
    }

    /// Checks the on-hand quantity an adjustment or count would leave.
    fn check_on_hand(
        &self,
        sku: &str,
        location: &str,
        on_hand: i64,
        reserved: u64,
    ) -> EngineResult<()> {
        if on_hand > ON_HAND_MAX as i64 {
            return Err(EngineError::LimitExceeded {
                field: "on_hand",
                bound: ON_HAND_MAX,
            });
        }
        if on_hand < reserved as i64 {
            return Err(EngineError::OnHandBelowReserved {
                sku: sku.to_string(),
                location: location.to_string(),
                on_hand,
                reserved,
            });
        }
        Ok(())
    }

    /// Adds `delta` to on-hand stock; a positive delta on an unknown item creates it.
    pub fn adjust(
        &mut self,
        sku: &str,
        location: &str,
        delta: i64,
        now_ms: i64,
        annotation: Annotation<'_>,
    ) -> EngineResult<LevelsView> {
        validate::id("sku", sku)?;
        validate::optional_id("location", location)?;
        validate::quantity("delta", delta.checked_abs().unwrap_or(i64::MAX))?;
        validate::reason_actor(annotation.reason, annotation.actor)?;
        validate::request_id(annotation.request_id)?;
        let fingerprint = operator_fingerprint("adjust", sku, location, annotation, |f| {
            f.integer(delta);
        });
        if let Some(outcome) = self.replay(annotation.request_id, Operation::Adjust, fingerprint)? {
            return Ok(levels_outcome(outcome));
        }
        let existing = self.items.find(sku, location);
        if delta <= 0 && existing.is_none() {
            let items = vec![(sku.to_string(), location.to_string())];
            return Err(EngineError::UnknownItem { items });
        }
        let item = self.item_for_change(existing, sku, location, now_ms)?;
        let entry = self.items.get(item);
        self.check_on_hand(sku, location, entry.on_hand as i64 + delta, entry.reserved)?;
        let lsn = self.next_lsn();
        self.push_level_change(item, LedgerKind::Adjust, delta, lsn);
        let remembered = Remembered {
            operation: Operation::Adjust,
            fingerprint,
            request_id: annotation.request_id,
        };
        Ok(self.accept_change(item, now_ms, lsn, remembered, annotation))
    }

    /// A stock count: sets on-hand stock, compare-and-set against `expected_on_hand`.
    #[allow(clippy::too_many_arguments)]
    pub fn set_stock(
        &mut self,
        sku: &str,
        location: &str,
        on_hand: i64,
        expected_on_hand: Option<i64>,
        now_ms: i64,
        annotation: Annotation<'_>,
    ) -> EngineResult<LevelsView> {
        validate::id("sku", sku)?;
        validate::optional_id("location", location)?;
        level_value("on_hand", on_hand)?;
        if expected_on_hand.is_some_and(|expected| expected < 0 || expected > ON_HAND_MAX as i64) {
            return Err(EngineError::LimitExceeded {
                field: "expected_on_hand",
                bound: ON_HAND_MAX,
            });
        }
        validate::reason_actor(annotation.reason, annotation.actor)?;
        validate::request_id(annotation.request_id)?;
        let fingerprint = operator_fingerprint("set", sku, location, annotation, |f| {
            f.integer(on_hand).optional_integer(expected_on_hand);
        });
        if let Some(outcome) = self.replay(annotation.request_id, Operation::Set, fingerprint)? {
            return Ok(levels_outcome(outcome));
        }
        let existing = self.items.find(sku, location);
        let actual = existing.map_or(0, |item| self.items.get(item).on_hand);
        if let Some(expected) = expected_on_hand {
            if expected as u64 != actual {
                return Err(EngineError::ExpectedMismatch {
                    sku: sku.to_string(),
                    location: location.to_string(),
                    expected: expected as u64,
                    actual,
                });
            }
        }
        let item = self.item_for_change(existing, sku, location, now_ms)?;
        self.check_on_hand(sku, location, on_hand, self.items.get(item).reserved)?;
        let lsn = self.next_lsn();
        let delta = on_hand - self.items.get(item).on_hand as i64;
        self.push_level_change(item, LedgerKind::Set, delta, lsn);
        let remembered = Remembered {
            operation: Operation::Set,
            fingerprint,
            request_id: annotation.request_id,
        };
        Ok(self.accept_change(item, now_ms, lsn, remembered, annotation))
    }

    /// Sets the units of an item kept back from sale; an unknown item is created with
    /// nothing on hand (the safety stock may come before the goods). Moves no unit: what
    /// is held stays held, and a safety stock above what is not held leaves nothing
    /// available.
    pub fn set_safety_stock(
        &mut self,
        sku: &str,
        location: &str,
        safety_stock: i64,
        now_ms: i64,
        annotation: Annotation<'_>,
    ) -> EngineResult<LevelsView> {
        validate::id("sku", sku)?;
        validate::optional_id("location", location)?;
        level_value("safety_stock", safety_stock)?;
        validate::reason_actor(annotation.reason, annotation.actor)?;
        validate::request_id(annotation.request_id)?;
        let fingerprint = operator_fingerprint("safety", sku, location, annotation, |f| {
            f.integer(safety_stock);
        });
        if let Some(outcome) = self.replay(annotation.request_id, Operation::Safety, fingerprint)? {
            return Ok(levels_outcome(outcome));
        }
        let existing = self.items.find(sku, location);
        let item = self.item_for_change(existing, sku, location, now_ms)?;
        let lsn = self.next_lsn();
        let entry = self.items.get_mut(item);
        let delta = safety_stock - entry.safety_stock as i64;
        entry.safety_stock = safety_stock as u64;
        entry.last_lsn = lsn;
        entry.reserved_checked();
        let entry = LedgerEntry::after(item, entry, LedgerKind::Safety, (0, 0, delta));
        self.journal.push_entry(entry);
        let remembered = Remembered {
            operation: Operation::Safety,
            fingerprint,
            request_id: annotation.request_id,
        };
        Ok(self.accept_change(item, now_ms, lsn, remembered, annotation))
    }

    /// The item an operator change names (`existing`: found already), its due holds
    /// expired first; an unknown one is created with nothing on hand.
    fn item_for_change(
        &mut self,
        existing: Option<ItemIndex>,
        sku: &str,
        location: &str,
        now_ms: i64,
    ) -> EngineResult<ItemIndex> {
        match existing {
            Some(item) => {
                self.expire_items(std::iter::once(item), now_ms, 1)?;
                Ok(item)
            }
            None => {
                self.ensure_journal_room(1)?;
                self.create_item(sku, location)
            }
        }
    }

    /// Closes operator change `lsn` of `item`: journaled with its reason and actor.
    fn accept_change(
        &mut self,
        item: ItemIndex,
        now_ms: i64,
        lsn: u64,
        remembered: Remembered<'_>,
        annotation: Annotation<'_>,
    ) -> LevelsView {
        let operation = annotated_operation(annotation);
        self.accept_levels(&[item], now_ms, lsn, remembered, operation)
    }

    /// Levels of the known skus at one location, as of `now_ms` (due holds excluded).
    pub fn get_stock(
        &self,
        skus: &[&str],
        location: &str,
        now_ms: i64,
    ) -> EngineResult<LevelsView> {
        if skus.len() > STOCK_QUERY_SKUS_MAX {
            let bound = STOCK_QUERY_SKUS_MAX as u64;
            return Err(EngineError::LimitExceeded {
                field: "skus",
                bound,
            });
        }
        validate::optional_id("location", location)?;
        let mut items = Vec::with_capacity(skus.len());
        for sku in skus {
            validate::id("sku", sku)?;
            if let Some(item) = self.items.find(sku, location) {
                if !items.contains(&item) {
                    items.push(item);
                }
            }
        }
        let lsn = items
            .iter()
            .map(|&item| self.items.get(item).last_lsn)
            .max()
            .unwrap_or(0);
        Ok(self.levels_view(&items, lsn, now_ms))
    }
}

/// A level an operator sets (on hand, safety stock): 0..=ON_HAND_MAX, a negative one
/// refused with the bound 0.
fn level_value(field: &'static str, value: i64) -> EngineResult<()> {
    let bound = match value {
        ..0 => 0,
        _ if value > ON_HAND_MAX as i64 => ON_HAND_MAX,
        _ => return Ok(()),
    };
    Err(EngineError::LimitExceeded { field, bound })
}

/// The fingerprint of an operator change given a request id (0 without one): the
/// operation's name, the item, the change's own `values`, then why and who. The order is
/// part of every stored fingerprint: changing it would turn retries of stored requests into
/// conflicts.
fn operator_fingerprint(
    name: &str,
    sku: &str,
    location: &str,
    annotation: Annotation<'_>,
    values: impl FnOnce(&mut Fingerprint),
) -> i64 {
    if annotation.request_id.is_none() {
        return 0;
    }
    let mut fingerprint = Fingerprint::new(name);
    fingerprint.text(sku).text(location);
    values(&mut fingerprint);
    fingerprint
        .text(annotation.reason)
        .text(annotation.actor)
        .finish()
}

fn annotated_operation(annotation: Annotation<'_>) -> OperationExtra {
    stock_operation(StockTexts {
        reason: optional_text(annotation.reason),
        actor: optional_text(annotation.actor),
        ..StockTexts::default()
    })
}

/// A stock operation carrying `texts`; operations without any keep none.
fn stock_operation(texts: StockTexts) -> OperationExtra {
    let empty = texts.order_id.is_none() && texts.reason.is_none() && texts.actor.is_none();
    OperationExtra {
        texts: (!empty).then(|| Box::new(texts)),
        idempotency: None,
    }
}

// The adjust delta is bounded by QUANTITY_MAX; keep the relation visible where it is used.
const _: () = assert!(QUANTITY_MAX < ON_HAND_MAX);
