//! The journal: what persistence must write, one operation per LSN, drained in batches.
//!
//! Appending is cheap (fixed-size ledger entries plus shared `Arc` snapshots). `take`, which
//! the binding runs with the interpreter released, moves whole operations into a batch and
//! only aggregates (one row per item and per reservation, by position); the rows are read
//! through borrowing iterators, so no row copies a string or touches a reference count,
//! and the binding converts each distinct item and reservation to Python once.

mod batch;

use std::collections::VecDeque;
use std::sync::Arc;

pub use batch::{IdempotencyRow, JournalBatch, LedgerRow, ReservationLineRow, ReservationRow};

use crate::idempotency::IdempotencyRecord;
use crate::item::{ItemIndex, Items};
use crate::record::ReservationRecord;
use crate::reservation::Status;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerKind {
    Reserve,
    Commit,
    Release,
    Expire,
    Decrement,
    Adjust,
    Set,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Reserve => "reserve",
            LedgerKind::Commit => "commit",
            LedgerKind::Release => "release",
            LedgerKind::Expire => "expire",
            LedgerKind::Decrement => "decrement",
            LedgerKind::Adjust => "adjust",
            LedgerKind::Set => "set",
        }
    }
}

/// One change of one item's levels.
#[derive(Clone, Copy, Debug)]
pub struct LedgerEntry {
    pub item: ItemIndex,
    pub kind: LedgerKind,
    pub delta_on_hand: i64,
    pub delta_reserved: i64,
    pub on_hand_after: u64,
    pub reserved_after: u64,
}

/// Where a journal operation finds its reservation's record. Only the latest pending
/// operation on a reservation holds it: an operation journaled while the previous one on
/// the same reservation is still pending takes the record over (`Journal::hand_over_record`)
/// instead of taking another reference count, and the previous one names it instead.
#[derive(Clone, Debug)]
pub enum SnapshotRecord {
    Held(Arc<ReservationRecord>),
    /// Held by the operation with this LSN (a later one on the same reservation).
    MovedTo(u64),
}

impl SnapshotRecord {
    pub fn held(&self) -> Option<&Arc<ReservationRecord>> {
        match self {
            SnapshotRecord::Held(record) => Some(record),
            SnapshotRecord::MovedTo(_) => None,
        }
    }
}

/// A reservation's state right after an operation: its shared fixed record (see
/// `SnapshotRecord`) and the few fields that change.
#[derive(Clone, Debug)]
pub struct ReservationSnapshot {
    pub record: SnapshotRecord,
    pub status: Status,
    /// This operation created the reservation (its lines must be inserted).
    pub created: bool,
    pub expires_at_ms: i64,
    /// LSN of the previous operation on this reservation (0: none), so a batch finds the
    /// reservation's row by position instead of by key.
    pub previous_lsn: u64,
}

/// Texts of a stock operation's ledger rows; most operations have none, so they are kept
/// apart from the operation.
#[derive(Debug, Default)]
pub struct StockTexts {
    pub order_id: Option<Arc<str>>,
    pub reason: Option<Arc<str>>,
    pub actor: Option<Arc<str>>,
}

/// Everything one LSN changed; its ledger entries are the next `rows` entries of the journal.
/// The operation's request id is its idempotency record's: a mutation remembers its
/// outcome exactly when it was given a request id.
#[derive(Debug, Default)]
pub struct JournalOperation {
    pub lsn: u64,
    pub at_ms: i64,
    pub rows: u32,
    pub reservation: Option<ReservationSnapshot>,
    pub texts: Option<Box<StockTexts>>,
    pub idempotency: Option<Arc<IdempotencyRecord>>,
}

impl JournalOperation {
    pub(crate) fn request_id(&self) -> Option<&str> {
        self.idempotency.as_ref().map(|record| &*record.request_id)
    }
}

#[derive(Debug)]
pub struct Journal {
    operations: VecDeque<JournalOperation>,
    entries: VecDeque<LedgerEntry>,
    /// Entries appended since the last operation was closed.
    open_rows: u32,
    last_lsn: u64,
    pub operations_max: usize,
    /// Batch rows of items, kept between takes (see `batch::ItemRows`).
    item_rows: batch::ItemRows,
}

impl Journal {
    pub fn new(operations_max: usize) -> Journal {
        Journal {
            operations: VecDeque::new(),
            entries: VecDeque::new(),
            open_rows: 0,
            last_lsn: 0,
            operations_max,
            item_rows: batch::ItemRows::default(),
        }
    }

    pub fn pending(&self) -> usize {
        self.operations.len()
    }

    pub fn room(&self) -> usize {
        self.operations_max.saturating_sub(self.operations.len())
    }

    pub fn last_lsn(&self) -> u64 {
        self.last_lsn
    }

    /// LSN of the oldest pending operation (`last_lsn + 1` when none is pending).
    fn first_pending_lsn(&self) -> u64 {
        self.last_lsn + 1 - self.operations.len() as u64
    }

    /// The record held by the pending operation `previous_lsn` (the previous operation on a
    /// reservation about to be journaled again as `lsn`), moved out of it; that operation
    /// then refers to `lsn`. None when `previous_lsn` is not pending (0: there was none, or
    /// it was taken): the caller then shares the reservation's record anew.
    pub fn hand_over_record(
        &mut self,
        previous_lsn: u64,
        lsn: u64,
    ) -> Option<Arc<ReservationRecord>> {
        assert_eq!(lsn, self.last_lsn + 1, "handed over to the next operation");
        let first = self.first_pending_lsn();
        if previous_lsn < first {
            return None;
        }
        let previous = &mut self.operations[(previous_lsn - first) as usize];
        assert_eq!(previous.lsn, previous_lsn, "pending operations by LSN");
        let snapshot = previous.reservation.as_mut();
        let snapshot = snapshot.expect("previous operation carried the reservation");
        match std::mem::replace(&mut snapshot.record, SnapshotRecord::MovedTo(lsn)) {
            SnapshotRecord::Held(record) => Some(record),
            SnapshotRecord::MovedTo(_) => {
                panic!("the latest pending operation on a reservation holds its record")
            }
        }
    }

    /// The record of the pending operation `lsn` on a reservation, following hand-overs
    /// to the operation holding it (a later pending one).
    fn pending_record(&self, mut lsn: u64) -> &Arc<ReservationRecord> {
        let first = self.first_pending_lsn();
        loop {
            assert!(lsn >= first, "records are handed over to later operations");
            let operation = &self.operations[(lsn - first) as usize];
            let snapshot = operation.reservation.as_ref();
            match &snapshot
                .expect("hand-over to a reservation operation")
                .record
            {
                SnapshotRecord::Held(record) => return record,
                SnapshotRecord::MovedTo(next) => {
                    assert!(*next > lsn, "records are handed over to later operations");
                    lsn = *next;
                }
            }
        }
    }

    pub fn push_entry(&mut self, entry: LedgerEntry) {
        assert!(entry.reserved_after <= entry.on_hand_after);
        self.entries.push_back(entry);
        self.open_rows += 1;
    }

    /// Closes an operation over the entries pushed since the previous one.
    #[inline]
    pub fn push_operation(&mut self, mut operation: JournalOperation) {
        assert_eq!(
            operation.lsn,
            self.last_lsn + 1,
            "journal LSNs must be consecutive"
        );
        assert!(
            self.operations.len() < self.operations_max,
            "journal bound checked by caller"
        );
        operation.rows = self.open_rows;
        self.open_rows = 0;
        self.last_lsn = operation.lsn;
        self.operations.push_back(operation);
    }

    /// Drains up to `operations_max` whole operations into a batch.
    pub fn take(&mut self, operations_max: usize, items: &Items) -> Option<JournalBatch> {
        assert_eq!(self.open_rows, 0, "take_journal inside an operation");
        let count = operations_max.min(self.operations.len());
        if count == 0 {
            return None;
        }
        let (operations, entries) = if count == self.operations.len() {
            // Everything pending (the usual case): hand the queues over whole instead of
            // moving each operation, and start new ones as large (so refilling them does
            // not grow them by copying). Queues filled from empty are contiguous from
            // their start, so turning them into vectors copies nothing.
            let (operations_len, entries_len) = (self.operations.len(), self.entries.len());
            let operations = std::mem::replace(
                &mut self.operations,
                VecDeque::with_capacity(operations_len),
            );
            let entries =
                std::mem::replace(&mut self.entries, VecDeque::with_capacity(entries_len));
            (Vec::from(operations), Vec::from(entries))
        } else {
            let mut operations: Vec<JournalOperation> = self.operations.drain(..count).collect();
            // An operation taken whose record was handed over to one still pending gets a
            // reference of its own, so that every reservation's last operation in the
            // batch holds the record (the batch reads it there).
            let lsn_last = operations.last().expect("count > 0").lsn;
            for operation in &mut operations {
                let Some(snapshot) = &mut operation.reservation else {
                    continue;
                };
                if let SnapshotRecord::MovedTo(holder) = snapshot.record {
                    if holder > lsn_last {
                        snapshot.record = SnapshotRecord::Held(self.pending_record(holder).clone());
                    }
                }
            }
            let rows: usize = operations.iter().map(|o| o.rows as usize).sum();
            let entries: Vec<LedgerEntry> = self.entries.drain(..rows).collect();
            (operations, entries)
        };
        Some(JournalBatch::new(
            operations,
            entries,
            items,
            &mut self.item_rows,
        ))
    }
}
