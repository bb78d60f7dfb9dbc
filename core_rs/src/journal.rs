//! The journal: what persistence must write, one operation per LSN, drained in batches.
//!
//! Appending is cheap (fixed-size ledger entries plus shared `Arc` snapshots). `take`, which
//! the binding runs with the interpreter released, moves whole operations into a batch and
//! only aggregates (one row per item and per reservation, by position); the rows are read
//! through borrowing iterators, so no row copies a string or touches a reference count,
//! and the binding converts each distinct item and reservation to Python once.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::idempotency::{outcome_to_json, IdempotencyRecord};
use crate::item::{ItemIndex, Items};
use crate::record::{CommittedLines, ReservationRecord};
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

/// A reservation's state right after an operation: its shared fixed record and the few
/// fields that change.
#[derive(Clone, Debug)]
pub struct ReservationSnapshot {
    pub record: Arc<ReservationRecord>,
    pub committed: Option<Arc<CommittedLines>>,
    pub status: Status,
    /// This operation created the reservation (its lines must be inserted).
    pub created: bool,
    pub expires_at_ms: i64,
    pub updated_at_ms: i64,
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
    fn request_id(&self) -> Option<&str> {
        self.idempotency.as_ref().map(|record| &*record.request_id)
    }
}

/// A reservation row: final state of one reservation touched by the batch (an upsert).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationRow<'a> {
    pub reservation_id: &'a str,
    pub order_id: &'a str,
    pub status: &'static str,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub request_id: Option<&'a str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationLineRow<'a> {
    /// Position of the reservation in `JournalBatch::reservations()`.
    pub reservation_row: usize,
    pub reservation_id: &'a str,
    /// Position of the item in `JournalBatch::items`, for callers that cache per item.
    pub item_row: usize,
    pub sku: &'a str,
    pub location: &'a str,
    pub quantity: u64,
    pub quantity_committed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerRow<'a> {
    pub lsn: u64,
    pub at_ms: i64,
    /// Position of the item in `JournalBatch::items`, for callers that cache per item.
    pub item_row: usize,
    pub sku: &'a str,
    pub location: &'a str,
    pub kind: &'static str,
    pub delta_on_hand: i64,
    pub delta_reserved: i64,
    pub on_hand_after: u64,
    pub reserved_after: u64,
    /// Position of the operation in the batch; consecutive rows of one operation share
    /// the text fields below, so callers may convert them once per operation.
    pub operation: usize,
    /// Position of the operation's reservation in `JournalBatch::reservations()`, if any.
    pub reservation_row: Option<usize>,
    pub reservation_id: &'a str,
    pub order_id: &'a str,
    pub request_id: &'a str,
    pub reason: &'a str,
    pub actor: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRow {
    pub request_id: Arc<str>,
    pub fingerprint: i64,
    pub operation: &'static str,
    pub outcome_json: String,
    pub lsn: u64,
    pub created_at_ms: i64,
}

/// Marks an operation without a reservation in `operation_reservation_rows`.
const NO_ROW: u32 = u32::MAX;

/// One ledger entry of a batch, with where its operation and item row are.
#[derive(Clone, Copy, Debug)]
struct BatchEntry {
    entry: LedgerEntry,
    operation: u32,
    item_row: u32,
}

/// Lines written for one reservation row (created or committed in the batch).
#[derive(Clone, Copy, Debug)]
struct BatchLine {
    reservation_row: u32,
    item_row: u32,
    quantity: u64,
    quantity_committed: u64,
}

/// The drained operations and the rows persistence writes. Rows are rendered on demand
/// from the operations themselves (moved out of the journal, never copied), so draining
/// costs no per-row string copies or reference counts; item names are taken once per item.
#[derive(Debug, Default)]
pub struct JournalBatch {
    pub lsn_first: u64,
    pub lsn_last: u64,
    /// `(sku, location, on_hand, reserved)`: final values, one row per item touched.
    pub items: Vec<(Arc<str>, Arc<str>, u64, u64)>,
    pub idempotency: Vec<IdempotencyRow>,
    operations: Vec<JournalOperation>,
    /// Per operation: the row of its reservation (NO_ROW when it has none).
    operation_reservation_rows: Vec<u32>,
    entries: Vec<BatchEntry>,
    /// Per reservation row: the last operation that touched it, and whether the batch
    /// created it.
    reservation_rows: Vec<(u32, bool)>,
    lines: Vec<BatchLine>,
}

impl JournalBatch {
    fn snapshot(&self, operation: u32) -> &ReservationSnapshot {
        self.operations[operation as usize]
            .reservation
            .as_ref()
            .expect("reservation rows come from reservation operations")
    }

    /// One row per reservation touched (final state), in first-touch order.
    pub fn reservations(&self) -> impl ExactSizeIterator<Item = ReservationRow<'_>> {
        self.reservation_rows.iter().map(|&(operation, _)| {
            let snapshot = self.snapshot(operation);
            ReservationRow {
                reservation_id: snapshot.record.reservation_id(),
                order_id: snapshot.record.order_id(),
                status: snapshot.status.as_str(),
                expires_at_ms: snapshot.expires_at_ms,
                created_at_ms: snapshot.record.created_at_ms,
                updated_at_ms: snapshot.updated_at_ms,
                request_id: snapshot.record.request_id(),
            }
        })
    }

    /// Lines of reservations created in this batch, and committed quantities of committed
    /// ones (an upsert on (reservation_id, sku, location)).
    pub fn reservation_lines(&self) -> impl ExactSizeIterator<Item = ReservationLineRow<'_>> {
        self.lines.iter().map(|line| {
            let (operation, _) = self.reservation_rows[line.reservation_row as usize];
            let (sku, location, _, _) = &self.items[line.item_row as usize];
            ReservationLineRow {
                reservation_row: line.reservation_row as usize,
                reservation_id: self.snapshot(operation).record.reservation_id(),
                item_row: line.item_row as usize,
                sku,
                location,
                quantity: line.quantity,
                quantity_committed: line.quantity_committed,
            }
        })
    }

    /// One row per item change, in LSN order.
    pub fn ledger(&self) -> impl ExactSizeIterator<Item = LedgerRow<'_>> {
        self.entries.iter().map(|batch_entry| {
            let operation = &self.operations[batch_entry.operation as usize];
            let entry = &batch_entry.entry;
            let (sku, location, _, _) = &self.items[batch_entry.item_row as usize];
            let record = operation.reservation.as_ref().map(|r| &*r.record);
            let texts = operation.texts.as_deref();
            let text = |field: fn(&StockTexts) -> &Option<Arc<str>>| {
                texts
                    .and_then(|texts| field(texts).as_deref())
                    .unwrap_or("")
            };
            let order_id = record.map_or_else(|| text(|t| &t.order_id), |r| r.order_id());
            LedgerRow {
                lsn: operation.lsn,
                at_ms: operation.at_ms,
                item_row: batch_entry.item_row as usize,
                sku,
                location,
                kind: entry.kind.as_str(),
                delta_on_hand: entry.delta_on_hand,
                delta_reserved: entry.delta_reserved,
                on_hand_after: entry.on_hand_after,
                reserved_after: entry.reserved_after,
                operation: batch_entry.operation as usize,
                reservation_row: match self.operation_reservation_rows
                    [batch_entry.operation as usize]
                {
                    NO_ROW => None,
                    row => Some(row as usize),
                },
                reservation_id: record.map_or("", |r| r.reservation_id()),
                order_id,
                request_id: operation.request_id().unwrap_or(""),
                reason: text(|t| &t.reason),
                actor: text(|t| &t.actor),
            }
        })
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
}

impl Journal {
    pub fn new(operations_max: usize) -> Journal {
        Journal {
            operations: VecDeque::new(),
            entries: VecDeque::new(),
            open_rows: 0,
            last_lsn: 0,
            operations_max,
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

    pub fn push_entry(&mut self, entry: LedgerEntry) {
        assert!(entry.reserved_after <= entry.on_hand_after);
        self.entries.push_back(entry);
        self.open_rows += 1;
    }

    /// Closes an operation over the entries pushed since the previous one.
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
        let mut aggregate = Aggregate::new(count);
        for _ in 0..count {
            let operation = self.operations.pop_front().expect("counted");
            let rows = operation.rows;
            let entries = self.entries.drain(..rows as usize);
            aggregate.add_operation(operation, entries, items);
        }
        Some(aggregate.finish())
    }
}

/// Builds a batch: item and reservation rows are keyed so that each appears once.
struct Aggregate {
    batch: JournalBatch,
    item_rows: FxHashMap<ItemIndex, u32>,
    /// Keyed by the address of the reservation record, which every snapshot of one
    /// reservation shares (and which stays allocated while the batch holds the operation).
    reservation_rows: FxHashMap<usize, u32>,
}

impl Aggregate {
    fn new(operations: usize) -> Aggregate {
        // Sized up front for the usual one reservation or item per operation: growing
        // would copy, and touch fresh pages twice.
        let mut batch = JournalBatch::default();
        batch.operations.reserve(operations);
        batch.operation_reservation_rows.reserve(operations);
        batch.entries.reserve(operations);
        batch.reservation_rows.reserve(operations);
        batch.lines.reserve(operations);
        Aggregate {
            batch,
            item_rows: FxHashMap::default(),
            reservation_rows: FxHashMap::with_capacity_and_hasher(operations, Default::default()),
        }
    }

    fn add_operation(
        &mut self,
        operation: JournalOperation,
        entries: impl Iterator<Item = LedgerEntry>,
        items: &Items,
    ) {
        if self.batch.lsn_first == 0 {
            self.batch.lsn_first = operation.lsn;
        }
        assert!(
            operation.lsn > self.batch.lsn_last,
            "journal LSN not monotonic"
        );
        self.batch.lsn_last = operation.lsn;
        let index = self.batch.operations.len() as u32;
        for entry in entries {
            let item_row = self.item_row(entry.item, items);
            let row = &mut self.batch.items[item_row as usize];
            (row.2, row.3) = (entry.on_hand_after, entry.reserved_after);
            self.batch.entries.push(BatchEntry {
                entry,
                operation: index,
                item_row,
            });
        }
        let reservation_row = match &operation.reservation {
            Some(snapshot) => self.reservation_row(snapshot, index),
            None => NO_ROW,
        };
        self.batch.operation_reservation_rows.push(reservation_row);
        if let Some(record) = &operation.idempotency {
            self.batch.idempotency.push(IdempotencyRow {
                request_id: record.request_id.clone(),
                fingerprint: record.fingerprint,
                operation: record.operation.as_str(),
                outcome_json: outcome_to_json(&record.outcome),
                lsn: record.lsn,
                created_at_ms: record.created_at_ms,
            });
        }
        self.batch.operations.push(operation);
    }

    /// The row of the snapshot's reservation, now pointing at operation `index` (its
    /// latest state); added on first touch.
    fn reservation_row(&mut self, snapshot: &ReservationSnapshot, index: u32) -> u32 {
        let key = Arc::as_ptr(&snapshot.record) as usize;
        let rows = &mut self.batch.reservation_rows;
        match self.reservation_rows.get(&key) {
            Some(&row) => {
                let created = rows[row as usize].1 || snapshot.created;
                rows[row as usize] = (index, created);
                row
            }
            None => {
                let row = rows.len() as u32;
                self.reservation_rows.insert(key, row);
                rows.push((index, snapshot.created));
                row
            }
        }
    }

    /// The batch row of an item, added (with its names) on first touch.
    fn item_row(&mut self, item: ItemIndex, items: &Items) -> u32 {
        let rows = &mut self.batch.items;
        *self.item_rows.entry(item).or_insert_with(|| {
            let (sku, location) = items.key(item);
            rows.push((sku, location, 0, 0));
            (rows.len() - 1) as u32
        })
    }

    /// Lines of reservations created in this batch, and committed quantities of committed
    /// ones. Every line's item has a row: the operation that created or committed the
    /// reservation journaled a ledger entry for each of its lines.
    fn finish(mut self) -> JournalBatch {
        let batch = &mut self.batch;
        for (row, &(operation, created)) in batch.reservation_rows.iter().enumerate() {
            let snapshot = batch.operations[operation as usize]
                .reservation
                .as_ref()
                .expect("reservation operation");
            let committed = snapshot.status == Status::Committed;
            if !created && !committed {
                continue;
            }
            for (index, line) in snapshot.record.holds.iter().enumerate() {
                let quantity_committed = match (&snapshot.committed, committed) {
                    (Some(lines), true) => lines.quantities[index],
                    _ => 0,
                };
                let item_row = *self
                    .item_rows
                    .get(&line.item)
                    .expect("a reservation's lines were journaled with it");
                batch.lines.push(BatchLine {
                    reservation_row: row as u32,
                    item_row,
                    quantity: line.quantity,
                    quantity_committed,
                });
            }
        }
        self.batch
    }
}
