//! Ending and changing holds: commit, release, extend, and the shared bookkeeping that
//! expiry also uses.

use std::sync::Arc;

use super::{reservation_outcome, Engine};
use crate::errors::{EngineError, EngineResult};
use crate::fingerprint::Fingerprint;
use crate::idempotency::{IdempotencyRecord, Operation};
use crate::item::ItemIndex;
use crate::journal::{LedgerEntry, LedgerKind, OperationExtra, ReservationSnapshot};
use crate::record::CommittedLines;
use crate::reservation::Status;
use crate::validate::{self, LineInput};
use crate::view::{Answer, Outcome};

impl Engine {
    pub(super) fn find_reservation(&self, reservation_id: &str) -> EngineResult<u32> {
        self.reservations
            .find(reservation_id)
            .ok_or_else(|| EngineError::UnknownReservation {
                reservation_id: reservation_id.to_string(),
            })
    }

    fn wrong_state(&self, slot: u32, now_ms: i64, operation: &'static str) -> EngineError {
        let reservation = self.reservations.get(slot);
        EngineError::WrongState {
            reservation_id: reservation.id().to_string(),
            status: reservation.status_at(now_ms),
            operation,
        }
    }

    /// Gives back every hold of the reservation at `slot`; `committed` (per line) leaves
    /// on-hand stock as well. Always inlined: called out of line (each release, commit and
    /// expiry), it cost 23 instructions more per reserve + release pair (callgrind).
    #[inline(always)]
    pub(super) fn settle_lines(
        &mut self,
        slot: u32,
        kind: LedgerKind,
        committed: Option<&[u64]>,
        lsn: u64,
    ) {
        // Items and the journal change, the reservation is only read: borrowed apart.
        let lines = self.reservations.get(slot).lines();
        for (index, &line) in lines.iter().enumerate() {
            let quantity_committed = committed.map_or(0, |quantities| quantities[index]);
            assert!(quantity_committed <= line.quantity, "commit above held");
            let item = self.items.get_mut(line.item);
            assert!(
                item.reserved >= line.quantity,
                "item reserved below a live hold"
            );
            item.reserved -= line.quantity;
            item.on_hand -= quantity_committed;
            item.last_lsn = lsn;
            item.holds.ended();
            item.reserved_checked();
            let deltas = (-(quantity_committed as i64), -(line.quantity as i64), 0);
            let entry = LedgerEntry::after(line.item, item, kind, deltas);
            self.journal.push_entry(entry);
        }
    }

    /// Closes the journal operation `lsn` for the reservation at `slot`, remembering
    /// `idempotency` with it. The operation is built once, where the journal keeps it.
    pub(super) fn journal_reservation(
        &mut self,
        slot: u32,
        created: bool,
        now_ms: i64,
        lsn: u64,
        idempotency: Option<Arc<IdempotencyRecord>>,
    ) {
        let reservation = self.reservations.get_mut(slot);
        let previous_lsn = std::mem::replace(&mut reservation.journaled_lsn, lsn);
        assert!(previous_lsn < lsn, "reservation journaled out of order");
        // A batch writes the operation's time as the reservation's update time.
        assert_eq!(reservation.updated_at_ms, now_ms, "journaled as updated");
        let snapshot = ReservationSnapshot {
            record: self.journal.record_copy(previous_lsn, &reservation.record),
            status: reservation.status,
            created,
            expires_at_ms: reservation.expires_at_ms,
            previous_lsn,
        };
        if cfg!(debug_assertions) {
            // Release builds skip the checks; not even the slot is looked up for them.
            self.debug_check_journaled_lines(slot, &snapshot);
            let lines = self.reservations.get(slot).lines();
            self.debug_check_items(lines.iter().map(|line| line.item));
        }
        let extra = idempotency.map(|record| OperationExtra {
            texts: None,
            idempotency: Some(record),
        });
        self.journal
            .push_operation(lsn, now_ms, Some(snapshot), extra);
    }

    /// A batch reads the lines of a reservation created or committed by an operation from
    /// the operation's ledger entries, not from the record: they must be the record's
    /// lines, in its order.
    fn debug_check_journaled_lines(&self, slot: u32, snapshot: &ReservationSnapshot) {
        if !snapshot.created && snapshot.status != Status::Committed {
            return;
        }
        let holds = self.reservations.get(slot).lines();
        let kind = match snapshot.created {
            true => LedgerKind::Reserve,
            false => LedgerKind::Commit,
        };
        let entries: Vec<&LedgerEntry> = self.journal.open_entries().collect();
        assert_eq!(entries.len(), holds.len(), "one ledger entry per line");
        for (entry, hold) in entries.into_iter().zip(holds) {
            assert_eq!(entry.kind, kind);
            assert_eq!(entry.item, hold.item, "entries in the order of the lines");
            assert_eq!(entry.delta_reserved.unsigned_abs(), hold.quantity);
        }
    }

    /// Moves the reservation at `slot` to a terminal status and journals it.
    pub(super) fn finish_reservation(&mut self, slot: u32, status: Status, now_ms: i64, lsn: u64) {
        self.reservations.get_mut(slot).finish(status, now_ms, lsn);
        self.journal_reservation(slot, false, now_ms, lsn, None);
        self.retire(slot);
    }

    /// Files a terminal reservation in the bounded FIFO and tidies its items' heaps.
    fn retire(&mut self, slot: u32) {
        // The reservation's lines are read while item heaps change: borrowed apart.
        let reservations = &self.reservations;
        for line in reservations.get(slot).lines() {
            super::expire::tidy_holds(reservations, &mut self.items.get_mut(line.item).holds);
        }
        self.reservations
            .retire(slot, self.config.reservations_terminal_max);
        // With no hold active, every entry of the global expiry queue is stale: dropped
        // now, no sweep needs to read each one's slot (long finished, seldom cached) to
        // learn it.
        if self.reservations.active_count == 0 && !self.expiry.is_empty() {
            let reservations = &self.reservations;
            self.expiry
                .clear_stale(|entry| super::expire::expiry_entry_live(reservations, entry));
        }
    }

    /// Commit of a hold that became due: it expires (journaled) and the caller is refused.
    fn expire_and_refuse(
        &mut self,
        slot: u32,
        now_ms: i64,
        operation: &'static str,
    ) -> EngineError {
        if let Err(error) = self.ensure_journal_room(1) {
            return error;
        }
        self.expire_reservation(slot, now_ms);
        self.wrong_state(slot, now_ms, operation)
    }

    pub fn release(
        &mut self,
        reservation_id: &str,
        now_ms: i64,
        request_id: Option<&str>,
    ) -> EngineResult<Answer> {
        validate::id("reservation_id", reservation_id)?;
        validate::request_id(request_id)?;
        let fingerprint = match request_id {
            Some(_) => Fingerprint::new("release").text(reservation_id).finish(),
            None => 0,
        };
        if let Some(outcome) = self.replay(request_id, Operation::Release, fingerprint)? {
            return Ok(reservation_outcome(outcome));
        }
        let slot = self.find_reservation(reservation_id)?;
        let reservation = self.reservations.get(slot);
        match reservation.status {
            Status::Committed => return Err(self.wrong_state(slot, now_ms, "release")),
            Status::Released | Status::Expired => {
                return Ok(Answer::Receipt(self.receipt(
                    slot,
                    now_ms,
                    reservation.last_lsn,
                )));
            }
            Status::Active if reservation.expires_at_ms <= now_ms => {
                // Releasing an expired hold answers it unchanged; the expiry is journaled.
                self.ensure_journal_room(1)?;
                let lsn = self.expire_reservation(slot, now_ms);
                return Ok(Answer::Receipt(self.receipt(slot, now_ms, lsn)));
            }
            Status::Active => {}
        }
        self.ensure_journal_room(1)?;
        let lsn = self.next_lsn();
        self.settle_lines(slot, LedgerKind::Release, None, lsn);
        self.reservations
            .get_mut(slot)
            .finish(Status::Released, now_ms, lsn);
        self.accept(
            slot,
            now_ms,
            lsn,
            request_id,
            Operation::Release,
            fingerprint,
        )
    }

    /// The common tail of an accepted commit or release: receipt, idempotency record,
    /// journal.
    fn accept(
        &mut self,
        slot: u32,
        now_ms: i64,
        lsn: u64,
        request_id: Option<&str>,
        operation: Operation,
        fingerprint: i64,
    ) -> EngineResult<Answer> {
        let receipt = self.receipt(slot, now_ms, lsn);
        let outcome = request_id.map(|_| Outcome::Reservation(self.outcome_view(receipt)));
        let idempotency = outcome
            .and_then(|outcome| self.remember(request_id, operation, fingerprint, outcome, now_ms));
        self.journal_reservation(slot, false, now_ms, lsn, idempotency);
        // Retiring evicts only older terminal reservations (at least one is retained), so
        // the receipt stays good.
        self.retire(slot);
        Ok(Answer::Receipt(receipt))
    }

    pub fn commit(
        &mut self,
        reservation_id: &str,
        lines: Option<&[LineInput<'_>]>,
        now_ms: i64,
        request_id: Option<&str>,
    ) -> EngineResult<Answer> {
        validate::id("reservation_id", reservation_id)?;
        if let Some(lines) = lines {
            validate::lines(lines, true)?;
        }
        validate::request_id(request_id)?;
        let fingerprint = match request_id {
            Some(_) => Fingerprint::new("commit")
                .text(reservation_id)
                .lines(lines)
                .finish(),
            None => 0,
        };
        if let Some(outcome) = self.replay(request_id, Operation::Commit, fingerprint)? {
            return Ok(reservation_outcome(outcome));
        }
        let slot = self.find_reservation(reservation_id)?;
        let reservation = self.reservations.get(slot);
        match reservation.status {
            Status::Committed => {
                return Ok(Answer::Receipt(self.receipt(
                    slot,
                    now_ms,
                    reservation.last_lsn,
                )));
            }
            Status::Released | Status::Expired => {
                return Err(self.wrong_state(slot, now_ms, "commit"));
            }
            Status::Active if reservation.expires_at_ms <= now_ms => {
                return Err(self.expire_and_refuse(slot, now_ms, "commit"));
            }
            Status::Active => {}
        }
        let quantities = self.commit_quantities(slot, lines.unwrap_or(&[]))?;
        self.ensure_journal_room(1)?;
        let lsn = self.next_lsn();
        self.settle_lines(slot, LedgerKind::Commit, Some(&quantities), lsn);
        let lines = self.line_views(self.reservations.get(slot).lines(), &quantities);
        let reservation = self.reservations.get_mut(slot);
        reservation.committed = Some(Box::new(CommittedLines {
            quantities: quantities.into(),
            lines,
        }));
        reservation.finish(Status::Committed, now_ms, lsn);
        self.accept(
            slot,
            now_ms,
            lsn,
            request_id,
            Operation::Commit,
            fingerprint,
        )
    }

    /// Quantities to commit per held line: all of it when no lines are given, else the
    /// given quantities (summed per item), each at most what is held.
    fn commit_quantities(&self, slot: u32, lines: &[LineInput<'_>]) -> EngineResult<Vec<u64>> {
        let held = self.reservations.get(slot).lines();
        if lines.is_empty() {
            return Ok(held.iter().map(|line| line.quantity).collect());
        }
        let mut quantities = vec![0u64; held.len()];
        for line in lines {
            let item: Option<ItemIndex> = self.items.find(line.sku, line.location);
            let position = item.and_then(|item| held.iter().position(|h| h.item == item));
            let Some(position) = position else {
                return Err(EngineError::InvalidRequest {
                    field: "lines",
                    message: format!(
                        "({:?}, {:?}) is not held by this reservation",
                        line.sku, line.location
                    ),
                });
            };
            quantities[position] += line.quantity as u64;
            if quantities[position] > held[position].quantity {
                return Err(EngineError::InvalidRequest {
                    field: "lines",
                    message: format!(
                        "commit of {} ({:?}, {:?}) is above the {} held",
                        quantities[position], line.sku, line.location, held[position].quantity
                    ),
                });
            }
        }
        Ok(quantities)
    }

    /// Moves an active hold's expiry to `now_ms + ttl_ms`.
    pub fn extend(
        &mut self,
        reservation_id: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> EngineResult<Answer> {
        validate::id("reservation_id", reservation_id)?;
        validate::ttl_ms(ttl_ms)?;
        let slot = self.find_reservation(reservation_id)?;
        let reservation = self.reservations.get(slot);
        match reservation.status {
            Status::Active if reservation.expires_at_ms <= now_ms => {
                return Err(self.expire_and_refuse(slot, now_ms, "extend"));
            }
            Status::Active => {}
            _ => return Err(self.wrong_state(slot, now_ms, "extend")),
        }
        self.ensure_journal_room(1)?;
        let lsn = self.next_lsn();
        let expires_at_ms = now_ms.saturating_add(ttl_ms);
        let reservation = self.reservations.get_mut(slot);
        let moved = reservation.expires_at_ms != expires_at_ms;
        reservation.expires_at_ms = expires_at_ms;
        reservation.updated_at_ms = now_ms;
        reservation.last_lsn = lsn;
        if moved {
            // The old entries go stale (a new generation); new ones replace them. Extend is
            // rare: a copy of the lines keeps them readable while items change.
            let holds = reservation.record.holds.clone();
            self.reservations.new_generation(slot);
            let lines = holds.iter();
            for line in lines.clone() {
                self.items.get_mut(line.item).holds.ended();
            }
            self.schedule_holds(slot);
            for line in lines {
                self.tidy_item_holds(line.item);
            }
        }
        let receipt = self.receipt(slot, now_ms, lsn);
        self.journal_reservation(slot, false, now_ms, lsn, None);
        Ok(Answer::Receipt(receipt))
    }

    pub fn get_reservation(&self, reservation_id: &str, now_ms: i64) -> EngineResult<Answer> {
        validate::id("reservation_id", reservation_id)?;
        let slot = self.find_reservation(reservation_id)?;
        let lsn = self.reservations.get(slot).last_lsn;
        Ok(Answer::Receipt(self.receipt(slot, now_ms, lsn)))
    }
}
