//! Expiry: lazily on every item a mutation touches, and in bounded sweeps (`expire_due`).

use std::sync::Arc;

use super::Engine;
use crate::errors::{EngineError, EngineResult};
use crate::expiry::ExpiryEntry;
use crate::item::{HoldEntry, ItemHolds, ItemIndex};
use crate::journal::LedgerKind;
use crate::limits::EXPIRE_BATCH_MAX;
use crate::reservation::{Reservations, Status};
use crate::validate;

/// An expiry entry (an item heap's or the global queue's) is live while the hold it was made
/// for is still active under the same (slot, generation). A moved expiry (an extend) gives
/// the reservation a new generation, so entries of an earlier expiry are stale whatever
/// expiry it has later: the generation alone decides.
fn entry_live(reservations: &Reservations, slot: u32, generation: u32) -> bool {
    reservations
        .get_versioned(slot, generation)
        .is_some_and(|reservation| reservation.status == Status::Active)
}

pub(super) fn hold_entry_live(reservations: &Reservations, entry: &HoldEntry) -> bool {
    entry_live(reservations, entry.slot, entry.generation)
}

pub(super) fn expiry_entry_live(reservations: &Reservations, entry: &ExpiryEntry) -> bool {
    entry_live(reservations, entry.slot, entry.generation)
}

/// One bounded step of dropping the stale entries of an item's heap (a sweep runs once they
/// outnumber its live holds).
pub(super) fn tidy_holds(reservations: &Reservations, holds: &mut ItemHolds) {
    holds.tidy(
        |entry| hold_entry_live(reservations, entry),
        |entry| reservations.prefetch_slot(entry.slot),
    );
}

impl Engine {
    /// Appends the slots of `item`'s due holds to `out`, dropping stale entries on the way.
    /// Cheap when nothing is due: one look at the top of the item's heap.
    fn collect_due(&mut self, item: ItemIndex, now_ms: i64, out: &mut Vec<u32>) {
        let reservations = &self.reservations;
        let holds = &mut self.items.get_mut(item).holds;
        while let Some(top) = holds.peek() {
            if hold_entry_live(reservations, &top) {
                break;
            }
            holds.pop();
        }
        if holds.peek().is_some_and(|top| top.expires_at_ms <= now_ms) {
            out.extend(
                holds
                    .iter()
                    .filter(|e| e.expires_at_ms <= now_ms && hold_entry_live(reservations, e))
                    .map(|e| e.slot),
            );
        }
    }

    /// The quantity reserved on `item` by holds already due at `now_ms`: reads subtract it,
    /// because a due hold no longer counts even before a sweep ran.
    pub(super) fn due_quantity(&self, item: ItemIndex, now_ms: i64) -> u64 {
        let holds = &self.items.get(item).holds;
        if holds.peek().is_none_or(|top| top.expires_at_ms > now_ms) {
            return 0;
        }
        holds
            .iter()
            .filter(|e| e.expires_at_ms <= now_ms && hold_entry_live(&self.reservations, e))
            .map(|e| e.quantity)
            .sum()
    }

    /// Expires every due hold on `items` before a mutation decides anything about them.
    /// Refuses (changing nothing) unless the journal has room for those expirations plus
    /// `extra` operations.
    pub(super) fn expire_items(
        &mut self,
        items: impl Iterator<Item = ItemIndex>,
        now_ms: i64,
        extra: usize,
    ) -> EngineResult<()> {
        let mut due = std::mem::take(&mut self.scratch_slots);
        due.clear();
        for item in items {
            self.collect_due(item, now_ms, &mut due);
        }
        if due.len() > 1 {
            due.sort_unstable();
            due.dedup();
        }
        let room = self.ensure_journal_room(due.len() + extra);
        if room.is_ok() {
            for &slot in &due {
                self.expire_reservation(slot, now_ms);
            }
        }
        self.scratch_slots = due;
        room
    }

    /// Expires one due active reservation: its holds stop counting, one journal operation.
    pub(super) fn expire_reservation(&mut self, slot: u32, now_ms: i64) -> u64 {
        let reservation = self.reservations.get(slot);
        assert!(reservation.status == Status::Active && reservation.expires_at_ms <= now_ms);
        let lsn = self.next_lsn();
        self.settle_lines(slot, LedgerKind::Expire, None, lsn);
        self.finish_reservation(slot, Status::Expired, now_ms, lsn);
        lsn
    }

    /// Expires up to `max_count` due reservations in expiry order; returns their ids.
    /// Stops early when the journal is full; refuses only if it could expire none.
    pub fn expire_due(&mut self, now_ms: i64, max_count: usize) -> EngineResult<Vec<Arc<str>>> {
        validate::count("max_count", max_count, EXPIRE_BATCH_MAX)?;
        let mut expired = Vec::new();
        while expired.len() < max_count {
            let Some(top) = self.expiry.peek() else { break };
            if !expiry_entry_live(&self.reservations, &top) {
                self.expiry.pop();
                continue;
            }
            if top.expires_at_ms > now_ms {
                break;
            }
            if self.journal.room() == 0 {
                if expired.is_empty() {
                    return Err(EngineError::CapacityExceeded { what: "journal" });
                }
                break;
            }
            self.expiry.pop();
            let id = Arc::from(self.reservations.get(top.slot).id());
            self.expire_reservation(top.slot, now_ms);
            expired.push(id);
        }
        Ok(expired)
    }

    /// The earliest expiry among active holds (due or not), or None.
    pub fn next_expiry_ms(&mut self) -> Option<i64> {
        while let Some(top) = self.expiry.peek() {
            if expiry_entry_live(&self.reservations, &top) {
                return Some(top.expires_at_ms);
            }
            self.expiry.pop();
        }
        None
    }

    /// Registers a hold's expiry with each of its items and with the global queue.
    pub(super) fn schedule_holds(&mut self, slot: u32) {
        let (reservation, generation) = self.reservations.get_with_generation(slot);
        let expires_at_ms = reservation.expires_at_ms;
        for line in reservation.lines() {
            let entry = HoldEntry {
                expires_at_ms,
                slot,
                generation,
                quantity: line.quantity,
            };
            self.items.get_mut(line.item).holds.push(entry);
        }
        self.expiry.push(ExpiryEntry {
            expires_at_ms,
            slot,
            generation,
        });
        let reservations = &self.reservations;
        self.expiry.tidy(
            reservations.active_count,
            |entry| expiry_entry_live(reservations, entry),
            |entry| reservations.prefetch_slot(entry.slot),
        );
    }

    /// `tidy_holds` for one item.
    pub(super) fn tidy_item_holds(&mut self, item: ItemIndex) {
        tidy_holds(&self.reservations, &mut self.items.get_mut(item).holds);
    }
}
