//! The reservation engine: every state transition of stock and reservations.
//!
//! Operations live in submodules by concern; this file holds the state, configuration and
//! the small helpers they share (LSNs, views, idempotency, journal capacity).

mod check;
mod expire;
mod recovery;
mod reserve;
mod settle;
mod stock;

use std::sync::Arc;

pub use recovery::{EngineState, ExportHold, LoadHold, LoadIdempotency, LoadItem};
pub use stock::Annotation;

use crate::errors::{EngineError, EngineResult};
use crate::expiry::ExpiryQueue;
use crate::idempotency::{IdempotencyRecord, IdempotencyStore, Operation};
use crate::item::Items;
use crate::journal::{Journal, JournalBatch};
use crate::limits::{
    IDEMPOTENCY_RECORDS_MAX_DEFAULT, ITEMS_MAX_DEFAULT, JOURNAL_OPERATIONS_MAX_DEFAULT,
    JOURNAL_TAKE_OPERATIONS_MAX, RESERVATIONS_ACTIVE_MAX_DEFAULT,
    RESERVATIONS_TERMINAL_MAX_DEFAULT, TABLE_SIZE_MAX,
};
use crate::record::{LineTexts, RecordTexts};
use crate::reservation::{HoldLine, Reservations, Status};
use crate::validate;
use crate::view::{Answer, LineRef, Outcome, Receipt, ReplayedView, ReservationView};

/// The bounds of every table, fixed when the engine is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    pub idempotency_records_max: usize,
    pub reservations_active_max: usize,
    pub reservations_terminal_max: usize,
    pub items_max: usize,
    pub journal_operations_max: usize,
    /// Holds the tables that grow with holds (the reservation index, the expiry queue with
    /// room for its stale entries, the idempotency records) are sized for when the engine
    /// is built, and again on top of what a load brings: below that, no call pays for a
    /// table growing, a rehash or copy of every entry (measured: docs/BENCHMARKS.md,
    /// "Tables sized in advance"). Each table is sized within its own bound. 0: tables
    /// start small and double as they fill.
    pub holds_presized: usize,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            idempotency_records_max: IDEMPOTENCY_RECORDS_MAX_DEFAULT,
            reservations_active_max: RESERVATIONS_ACTIVE_MAX_DEFAULT,
            reservations_terminal_max: RESERVATIONS_TERMINAL_MAX_DEFAULT,
            items_max: ITEMS_MAX_DEFAULT,
            journal_operations_max: JOURNAL_OPERATIONS_MAX_DEFAULT,
            holds_presized: 0,
        }
    }
}

impl EngineConfig {
    fn validate(&self) -> EngineResult<()> {
        let bound = TABLE_SIZE_MAX as u64;
        let tables = [
            ("idempotency_records_max", self.idempotency_records_max, 0),
            ("reservations_active_max", self.reservations_active_max, 1),
            (
                "reservations_terminal_max",
                self.reservations_terminal_max,
                1,
            ),
            ("items_max", self.items_max, 1),
            ("journal_operations_max", self.journal_operations_max, 1),
            ("holds_presized", self.holds_presized, 0),
        ];
        for (field, value, minimum) in tables {
            if value < minimum {
                return Err(EngineError::LimitExceeded {
                    field,
                    bound: minimum as u64,
                });
            }
            if value > TABLE_SIZE_MAX {
                return Err(EngineError::LimitExceeded { field, bound });
            }
        }
        if self.reservations_active_max + self.reservations_terminal_max > TABLE_SIZE_MAX {
            return Err(EngineError::LimitExceeded {
                field: "reservations_terminal_max",
                bound,
            });
        }
        Ok(())
    }
}

/// Table sizes, for monitoring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineStats {
    pub items: usize,
    pub reservations_active: usize,
    pub reservations_terminal: usize,
    pub idempotency_records: usize,
    pub journal_pending: usize,
    pub lsn_last: u64,
    pub expiry_queue_entries: usize,
    /// Reservations (active and terminal) the id index holds before it grows.
    pub reservations_capacity: usize,
    /// Idempotency records the map holds before it grows.
    pub idempotency_capacity: usize,
}

pub struct Engine {
    config: EngineConfig,
    items: Items,
    reservations: Reservations,
    expiry: ExpiryQueue,
    idempotency: IdempotencyStore,
    journal: Journal,
    /// Reused buffers, so the hot path does not allocate for them.
    scratch_slots: Vec<u32>,
}

impl Engine {
    pub fn new(config: EngineConfig) -> EngineResult<Engine> {
        Engine::with_room(config, config.holds_presized)
    }

    /// An empty engine whose growing tables have room for `holds` (`make_room`).
    pub(crate) fn with_room(config: EngineConfig, holds: usize) -> EngineResult<Engine> {
        config.validate()?;
        let mut engine = Engine {
            config,
            items: Items::default(),
            reservations: Reservations::default(),
            expiry: ExpiryQueue::default(),
            idempotency: IdempotencyStore::new(config.idempotency_records_max),
            journal: Journal::new(config.journal_operations_max),
            scratch_slots: Vec::new(),
        };
        engine.make_room(holds);
        Ok(engine)
    }

    /// Sizes every table that grows with holds for `holds` more holds (and as many more
    /// idempotency records) than it stores now, each within its bound: storing up to that
    /// many then copies or rehashes no table.
    fn make_room(&mut self, holds: usize) {
        if holds == 0 {
            return;
        }
        let config = self.config;
        let reservations_max = config.reservations_active_max + config.reservations_terminal_max;
        let reservations = self
            .reservations
            .len()
            .saturating_add(holds)
            .min(reservations_max);
        self.reservations
            .reserve_total(reservations, config.reservations_terminal_max);
        let holds_active = self
            .reservations
            .active_count
            .saturating_add(holds)
            .min(config.reservations_active_max);
        self.expiry
            .reserve_total(ExpiryQueue::entries_bound(holds_active));
        let records = self
            .idempotency
            .len()
            .saturating_add(holds)
            .min(config.idempotency_records_max);
        self.idempotency.reserve_total(records);
    }

    pub fn config(&self) -> EngineConfig {
        self.config
    }

    fn next_lsn(&self) -> u64 {
        self.journal.last_lsn() + 1
    }

    /// Refuses an operation that would need more journal operations than there is room for.
    fn ensure_journal_room(&self, operations: usize) -> EngineResult<()> {
        if self.journal.room() < operations {
            return Err(EngineError::CapacityExceeded { what: "journal" });
        }
        Ok(())
    }

    pub fn journal_pending(&self) -> usize {
        self.journal.pending()
    }

    pub fn take_journal(&mut self, operations_max: usize) -> EngineResult<Option<JournalBatch>> {
        validate::count(
            "max_operations",
            operations_max,
            JOURNAL_TAKE_OPERATIONS_MAX,
        )?;
        Ok(self.journal.take(operations_max, &self.items))
    }

    /// The LSN of the last journaled change: everything the engine has decided so far.
    pub fn lsn_last(&self) -> u64 {
        self.journal.last_lsn()
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            items: self.items.len(),
            reservations_active: self.reservations.active_count,
            reservations_terminal: self.reservations.terminal_count,
            idempotency_records: self.idempotency.len(),
            journal_pending: self.journal.pending(),
            lsn_last: self.lsn_last(),
            expiry_queue_entries: self.expiry.len(),
            reservations_capacity: self.reservations.capacity(),
            idempotency_capacity: self.idempotency.capacity(),
        }
    }

    /// Looks up a remembered request: its replayed outcome, a conflict, or nothing.
    fn replay(
        &self,
        request_id: Option<&str>,
        operation: Operation,
        fingerprint: i64,
    ) -> EngineResult<Option<Outcome>> {
        let Some(request_id) = request_id else {
            return Ok(None);
        };
        let Some(record) = self.idempotency.get(request_id) else {
            return Ok(None);
        };
        if record.fingerprint != fingerprint || record.operation != operation {
            return Err(EngineError::IdempotencyConflict {
                request_id: request_id.to_string(),
            });
        }
        Ok(Some(record.outcome.replayed(record.lsn)))
    }

    /// Remembers an accepted outcome; returns the record for the journal.
    fn remember(
        &mut self,
        request_id: Option<&str>,
        operation: Operation,
        fingerprint: i64,
        outcome: Outcome,
        now_ms: i64,
    ) -> Option<Arc<IdempotencyRecord>> {
        let request_id = request_id?;
        let lsn = self.next_lsn();
        let record = Arc::new(IdempotencyRecord {
            request_id: Arc::from(request_id),
            fingerprint,
            operation,
            outcome,
            lsn,
            created_at_ms: now_ms,
        });
        self.idempotency.insert(record.clone());
        Some(record)
    }

    /// The receipt of the reservation at `slot` as a reader at `now_ms` sees it, `lsn`
    /// the change answered. Builds nothing: see `view`.
    fn receipt(&self, slot: u32, now_ms: i64, lsn: u64) -> Receipt {
        let (reservation, generation) = self.reservations.get_with_generation(slot);
        Receipt {
            slot,
            generation,
            status: reservation.status_at(now_ms),
            expires_at_ms: reservation.expires_at_ms,
            lsn,
        }
    }

    /// The view of an operation's answer (ids and lines copied, the lines' names from the
    /// item table). A receipt's reservation is read where the receipt says; None once that is no longer the same reservation (evicted, its slot perhaps
    /// reused, or its expiry moved since). Call it before the engine changes again, as the
    /// binding does under the same lock. Ids and lines never change, and committed lines
    /// are shown only when the receipt says committed, so the view is the one the
    /// operation answered.
    pub fn view(&self, answer: &Answer) -> Option<ReservationView> {
        let receipt = match answer {
            Answer::Receipt(receipt) => receipt,
            Answer::Replayed(view) => return Some(ReservationView::clone(view)),
        };
        let reservation = self
            .reservations
            .get_versioned(receipt.slot, receipt.generation)?;
        let committed = match (receipt.status, &reservation.committed) {
            (Status::Committed, Some(committed)) => Some(Box::new(committed.lines.clone())),
            _ => None,
        };
        let record = &reservation.record;
        let lines = self.line_refs(&record.holds);
        Some(ReservationView {
            texts: RecordTexts::of_record(record, lines),
            committed,
            status: receipt.status,
            expires_at_ms: receipt.expires_at_ms,
            lsn: receipt.lsn,
            replayed: false,
        })
    }

    /// The view of the reservation at `slot` answered now (`receipt`), for the
    /// idempotency store, which keeps it.
    fn outcome_view(&self, receipt: Receipt) -> ReservationView {
        let view = self.view(&Answer::Receipt(receipt));
        view.expect("a receipt just made names its reservation")
    }

    /// The lines of `holds` as views show them, names borrowed from the item table.
    fn line_refs<'a>(
        &'a self,
        holds: &'a [HoldLine],
    ) -> impl Iterator<Item = LineRef<'a>> + Clone + 'a {
        holds.iter().map(|hold| {
            let item = self.items.get(hold.item);
            LineRef {
                sku: &item.sku,
                location: &self.items.locations[item.location as usize],
                quantity: hold.quantity,
            }
        })
    }

    /// Lines as views show them, with `quantities` per line (lines with 0 left out).
    fn line_views(&self, lines: &[HoldLine], quantities: &[u64]) -> LineTexts {
        let mut texts = LineTexts::with_capacity(lines.len());
        for (line, &quantity) in lines.iter().zip(quantities) {
            if quantity > 0 {
                let item = self.items.get(line.item);
                let location = &self.items.locations[item.location as usize];
                texts.push(&item.sku, location, quantity);
            }
        }
        texts
    }
}

/// A reservation answer from the idempotency store, which only ever stores the kind the
/// operation produced.
fn reservation_outcome(outcome: Outcome) -> Answer {
    match outcome {
        Outcome::Reservation(view) => Answer::Replayed(ReplayedView::new(view)),
        Outcome::Levels(_) => unreachable!("reservation request id remembered a levels outcome"),
    }
}

fn levels_outcome(outcome: Outcome) -> crate::view::LevelsView {
    match outcome {
        Outcome::Levels(view) => view,
        Outcome::Reservation(_) => unreachable!("stock request id remembered a reservation"),
    }
}
