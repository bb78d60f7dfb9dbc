//! Recovery: bulk load of a PostgreSQL snapshot into an empty engine, and export.

use std::sync::Arc;

use super::Engine;
use crate::errors::{EngineError, EngineResult};
use crate::idempotency::{outcome_from_json, IdempotencyRecord, Operation};
use crate::item::ItemIndex;
use crate::limits::ON_HAND_MAX;
use crate::reservation::{HoldLine, IdHash, NewReservation, Status};
use crate::validate;
use crate::view::{LineView, Outcome};

#[derive(Clone, Debug)]
pub struct LoadItem {
    pub sku: String,
    pub location: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub safety_stock: i64,
}

#[derive(Clone, Debug)]
pub struct LoadHold {
    pub reservation_id: String,
    pub order_id: String,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub lines: Vec<(String, String, i64)>,
}

#[derive(Clone, Debug)]
pub struct LoadIdempotency {
    pub request_id: String,
    pub fingerprint: i64,
    pub operation: String,
    pub outcome_json: String,
    pub created_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportHold {
    pub reservation_id: Arc<str>,
    pub order_id: Arc<str>,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub lines: Vec<LineView>,
}

/// An exported item: (sku, location, on hand, reserved, safety stock).
pub type ExportItem = (Arc<str>, Arc<str>, u64, u64, u64);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineState {
    pub items: Vec<ExportItem>,
    pub holds: Vec<ExportHold>,
    pub idempotency_count: usize,
}

fn mismatch(message: String) -> EngineError {
    EngineError::RecoveryMismatch { message }
}

/// Converts a limit violation in recovery input into a recovery mismatch naming the row.
fn checked(result: EngineResult<()>, what: &str) -> EngineResult<()> {
    result.map_err(|error| mismatch(format!("{what}: {error}")))
}

impl Engine {
    /// Loads items, active holds and idempotency records into this empty engine. All or
    /// nothing: on error the engine is left empty.
    pub fn load(
        &mut self,
        items: &[LoadItem],
        holds: &[LoadHold],
        idempotency_records: &[LoadIdempotency],
        now_ms: i64,
    ) -> EngineResult<()> {
        let empty = self.items.is_empty()
            && self.reservations.is_empty()
            && self.idempotency.is_empty()
            && self.journal.last_lsn() == 0;
        if !empty {
            return Err(mismatch("load needs an empty engine".to_string()));
        }
        // Room for what is loaded, on top of the room a fresh engine keeps: the tables are
        // built once, at their final size.
        let loaded = holds.len().max(idempotency_records.len());
        let room = self.config.holds_presized.saturating_add(loaded);
        let mut fresh = Engine::with_room(self.config, room)?;
        let declared_reserved = fresh.load_items(items)?;
        fresh.load_holds(holds)?;
        fresh.check_loaded_reserved(&declared_reserved)?;
        fresh.load_idempotency(idempotency_records)?;
        // Due holds stay active: they expire (journaled) on the first sweep or touch.
        let _ = now_ms;
        *self = fresh;
        Ok(())
    }

    /// Loads items with reserved 0 (rebuilt from the holds); returns the declared reserved.
    fn load_items(&mut self, items: &[LoadItem]) -> EngineResult<Vec<u64>> {
        if items.len() > self.config.items_max {
            return Err(EngineError::CapacityExceeded { what: "items" });
        }
        let mut declared = Vec::with_capacity(items.len());
        for row in items {
            let what = format!("item ({:?}, {:?})", row.sku, row.location);
            checked(validate::id("sku", &row.sku), &what)?;
            checked(validate::optional_id("location", &row.location), &what)?;
            let valid = 0 <= row.reserved && row.reserved <= row.on_hand;
            let safety_valid = (0..=ON_HAND_MAX as i64).contains(&row.safety_stock);
            if !valid || !safety_valid || row.on_hand > ON_HAND_MAX as i64 {
                return Err(mismatch(format!(
                    "{what}: on_hand {} reserved {} safety_stock {}",
                    row.on_hand, row.reserved, row.safety_stock
                )));
            }
            if self.items.find(&row.sku, &row.location).is_some() {
                return Err(mismatch(format!("{what} loaded twice")));
            }
            let index = self.items.insert(&row.sku, &row.location);
            let item = self.items.get_mut(index);
            item.on_hand = row.on_hand as u64;
            item.safety_stock = row.safety_stock as u64;
            declared.push(row.reserved as u64);
        }
        Ok(declared)
    }

    fn load_hold_lines(&self, hold: &LoadHold, what: &str) -> EngineResult<Vec<HoldLine>> {
        checked(validate::line_count(hold.lines.len(), false), what)?;
        let mut lines: Vec<HoldLine> = Vec::with_capacity(hold.lines.len());
        for (sku, location, quantity) in &hold.lines {
            checked(validate::quantity("quantity", *quantity).map(drop), what)?;
            let Some(item) = self.items.find(sku, location) else {
                return Err(mismatch(format!(
                    "{what}: unknown item ({sku:?}, {location:?})"
                )));
            };
            match lines.iter_mut().find(|line| line.item == item) {
                Some(line) => line.quantity += *quantity as u64,
                None => lines.push(HoldLine {
                    item,
                    quantity: *quantity as u64,
                }),
            }
        }
        Ok(lines)
    }

    fn load_holds(&mut self, holds: &[LoadHold]) -> EngineResult<()> {
        if holds.len() > self.config.reservations_active_max {
            return Err(EngineError::CapacityExceeded {
                what: "reservations_active",
            });
        }
        for hold in holds {
            let what = format!("hold {:?}", hold.reservation_id);
            checked(validate::id("reservation_id", &hold.reservation_id), &what)?;
            checked(validate::optional_id("order_id", &hold.order_id), &what)?;
            let id_hash = IdHash::of(&hold.reservation_id);
            if self
                .reservations
                .find_hashed(&hold.reservation_id, id_hash)
                .is_some()
            {
                return Err(mismatch(format!("{what} loaded twice")));
            }
            let lines = self.load_hold_lines(hold, &what)?;
            for line in &lines {
                let item = self.items.get_mut(line.item);
                item.reserved += line.quantity;
                if item.reserved > item.on_hand {
                    return Err(mismatch(format!("{what}: holds exceed on_hand")));
                }
            }
            let new = NewReservation {
                reservation_id: &hold.reservation_id,
                order_id: &hold.order_id,
                request_id: None,
                holds: &lines,
                created_at_ms: hold.created_at_ms,
                expires_at_ms: hold.expires_at_ms,
                lsn: 0,
            };
            let slot = self.reservations.insert(new, id_hash);
            self.schedule_holds(slot);
        }
        Ok(())
    }

    /// Each loaded item's reserved must equal the sum of its loaded holds.
    fn check_loaded_reserved(&self, declared_reserved: &[u64]) -> EngineResult<()> {
        for (index, declared) in declared_reserved.iter().enumerate() {
            let item = self.items.get(index as ItemIndex);
            if item.reserved != *declared {
                let location = self.items.location_of(index as ItemIndex);
                return Err(mismatch(format!(
                    "item ({:?}, {:?}): reserved {} but its holds sum to {}",
                    item.sku, location, declared, item.reserved
                )));
            }
        }
        Ok(())
    }

    fn load_idempotency(&mut self, records: &[LoadIdempotency]) -> EngineResult<()> {
        let mut order: Vec<&LoadIdempotency> = records.iter().collect();
        // Oldest first, so the bounded store evicts the oldest when there are too many.
        order.sort_by_key(|record| record.created_at_ms);
        for record in order {
            let what = format!("idempotency record {:?}", record.request_id);
            checked(validate::id("request_id", &record.request_id), &what)?;
            let operation = Operation::parse(&record.operation)
                .ok_or_else(|| mismatch(format!("{what}: unknown operation")))?;
            let outcome = outcome_from_json(&record.outcome_json)
                .ok_or_else(|| mismatch(format!("{what}: unreadable outcome")))?;
            let reservation_kind = matches!(
                operation,
                Operation::Reserve | Operation::Commit | Operation::Release
            );
            if reservation_kind != matches!(outcome, Outcome::Reservation(_)) {
                return Err(mismatch(format!(
                    "{what}: outcome does not match operation"
                )));
            }
            if self.idempotency.get(&record.request_id).is_some() {
                return Err(mismatch(format!("{what} loaded twice")));
            }
            self.idempotency.insert(Arc::new(IdempotencyRecord {
                request_id: Arc::from(record.request_id.as_str()),
                fingerprint: record.fingerprint,
                operation,
                outcome,
                lsn: 0,
                created_at_ms: record.created_at_ms,
            }));
        }
        Ok(())
    }

    /// The whole state as stored: items with their reserved quantity and every active hold
    /// (including holds already due but not yet expired, which `reserved` still counts).
    pub fn export(&self) -> EngineState {
        let items = (0..self.items.len() as ItemIndex)
            .map(|index| {
                let item = self.items.get(index);
                let (sku, location) = self.items.key(index);
                (
                    sku,
                    location,
                    item.on_hand,
                    item.reserved,
                    item.safety_stock,
                )
            })
            .collect();
        let holds = self
            .reservations
            .iter()
            .filter(|(_, reservation)| reservation.status == Status::Active)
            .map(|(_, reservation)| ExportHold {
                reservation_id: Arc::from(reservation.id()),
                order_id: Arc::from(reservation.record.order_id()),
                expires_at_ms: reservation.expires_at_ms,
                created_at_ms: reservation.record.created_at_ms,
                lines: reservation
                    .lines()
                    .iter()
                    .map(|line| {
                        let (sku, location) = self.items.key(line.item);
                        LineView {
                            sku,
                            location,
                            quantity: line.quantity,
                        }
                    })
                    .collect(),
            })
            .collect();
        EngineState {
            items,
            holds,
            idempotency_count: self.idempotency.len(),
        }
    }
}
