//! The journal: what persistence must write, one operation per LSN, drained in batches.
//!
//! Appending is cheap (fixed-size ledger entries plus shared `Arc` snapshots); the rows the
//! service writes are aggregated and rendered only in `take`, which the binding runs with
//! the interpreter released.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::idempotency::{outcome_to_json, IdempotencyRecord};
use crate::item::{ItemIndex, Items};
use crate::reservation::{HoldLine, Status};

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

/// A reservation's state right after an operation.
#[derive(Clone, Debug)]
pub struct ReservationSnapshot {
    pub id: Arc<str>,
    pub order_id: Arc<str>,
    pub request_id: Option<Arc<str>>,
    pub status: Status,
    pub lines: Arc<[HoldLine]>,
    pub committed: Option<Arc<[u64]>>,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// This operation created the reservation (its lines must be inserted).
    pub created: bool,
}

/// Everything one LSN changed; its ledger entries are the next `rows` entries of the journal.
#[derive(Debug, Default)]
pub struct JournalOperation {
    pub lsn: u64,
    pub at_ms: i64,
    pub rows: u32,
    pub reservation: Option<ReservationSnapshot>,
    pub order_id: Option<Arc<str>>,
    pub request_id: Option<Arc<str>>,
    pub reason: Option<Arc<str>>,
    pub actor: Option<Arc<str>>,
    pub idempotency: Option<Arc<IdempotencyRecord>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationRow {
    pub reservation_id: Arc<str>,
    pub order_id: Arc<str>,
    pub status: &'static str,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub request_id: Option<Arc<str>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationLineRow {
    pub reservation_id: Arc<str>,
    pub sku: Arc<str>,
    pub location: Arc<str>,
    pub quantity: u64,
    pub quantity_committed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerRow {
    pub lsn: u64,
    pub at_ms: i64,
    pub sku: Arc<str>,
    pub location: Arc<str>,
    pub kind: &'static str,
    pub delta_on_hand: i64,
    pub delta_reserved: i64,
    pub on_hand_after: u64,
    pub reserved_after: u64,
    pub reservation_id: Arc<str>,
    pub order_id: Arc<str>,
    pub request_id: Arc<str>,
    pub reason: Arc<str>,
    pub actor: Arc<str>,
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

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalBatch {
    pub lsn_first: u64,
    pub lsn_last: u64,
    pub items: Vec<(Arc<str>, Arc<str>, u64, u64)>,
    pub reservations: Vec<ReservationRow>,
    pub reservation_lines: Vec<ReservationLineRow>,
    pub ledger: Vec<LedgerRow>,
    pub idempotency: Vec<IdempotencyRow>,
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

    /// Drains up to `operations_max` whole operations into the rows persistence writes.
    pub fn take(&mut self, operations_max: usize, items: &Items) -> Option<JournalBatch> {
        assert_eq!(self.open_rows, 0, "take_journal inside an operation");
        let count = operations_max.min(self.operations.len());
        if count == 0 {
            return None;
        }
        let mut aggregate = Aggregate::new(count);
        for _ in 0..count {
            let operation = self.operations.pop_front().expect("counted");
            aggregate.begin(&operation);
            for _ in 0..operation.rows {
                let entry = self
                    .entries
                    .pop_front()
                    .expect("rows counted per operation");
                aggregate.add_entry(&operation, &entry, items);
            }
            aggregate.end(&operation);
        }
        Some(aggregate.finish(items))
    }
}

struct Aggregate {
    batch: JournalBatch,
    item_rows: FxHashMap<ItemIndex, usize>,
    reservation_rows: FxHashMap<Arc<str>, usize>,
    /// Final snapshot per reservation row, and whether the batch created it.
    snapshots: Vec<(ReservationSnapshot, bool)>,
    /// One shared empty string for every absent text field.
    empty: Arc<str>,
}

impl Aggregate {
    fn new(operations: usize) -> Aggregate {
        let mut batch = JournalBatch::default();
        batch.ledger.reserve(operations);
        Aggregate {
            batch,
            item_rows: FxHashMap::default(),
            reservation_rows: FxHashMap::default(),
            snapshots: Vec::new(),
            empty: Arc::from(""),
        }
    }

    fn text(&self, value: &Option<Arc<str>>) -> Arc<str> {
        value.as_ref().unwrap_or(&self.empty).clone()
    }

    fn begin(&mut self, operation: &JournalOperation) {
        if self.batch.lsn_first == 0 {
            self.batch.lsn_first = operation.lsn;
        }
        assert!(
            operation.lsn > self.batch.lsn_last,
            "journal LSN not monotonic"
        );
        self.batch.lsn_last = operation.lsn;
    }

    fn end(&mut self, operation: &JournalOperation) {
        if let Some(snapshot) = &operation.reservation {
            self.add_reservation(snapshot);
        }
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
    }

    fn add_entry(&mut self, operation: &JournalOperation, entry: &LedgerEntry, items: &Items) {
        let (sku, location) = items.key(entry.item);
        let values = (
            sku.clone(),
            location.clone(),
            entry.on_hand_after,
            entry.reserved_after,
        );
        match self.item_rows.get(&entry.item) {
            Some(&row) => self.batch.items[row] = values,
            None => {
                self.item_rows.insert(entry.item, self.batch.items.len());
                self.batch.items.push(values);
            }
        }
        let reservation = operation.reservation.as_ref();
        let order_id = reservation
            .map(|r| &r.order_id)
            .or(operation.order_id.as_ref());
        let order_id = order_id.unwrap_or(&self.empty).clone();
        let reservation_id = reservation.map(|r| &r.id).unwrap_or(&self.empty).clone();
        self.batch.ledger.push(LedgerRow {
            lsn: operation.lsn,
            at_ms: operation.at_ms,
            sku,
            location,
            kind: entry.kind.as_str(),
            delta_on_hand: entry.delta_on_hand,
            delta_reserved: entry.delta_reserved,
            on_hand_after: entry.on_hand_after,
            reserved_after: entry.reserved_after,
            reservation_id,
            order_id,
            request_id: self.text(&operation.request_id),
            reason: self.text(&operation.reason),
            actor: self.text(&operation.actor),
        });
    }

    fn add_reservation(&mut self, snapshot: &ReservationSnapshot) {
        let row = ReservationRow {
            reservation_id: snapshot.id.clone(),
            order_id: snapshot.order_id.clone(),
            status: snapshot.status.as_str(),
            expires_at_ms: snapshot.expires_at_ms,
            created_at_ms: snapshot.created_at_ms,
            updated_at_ms: snapshot.updated_at_ms,
            request_id: snapshot.request_id.clone(),
        };
        match self.reservation_rows.get(&snapshot.id) {
            Some(&index) => {
                self.batch.reservations[index] = row;
                let created = self.snapshots[index].1 || snapshot.created;
                self.snapshots[index] = (snapshot.clone(), created);
            }
            None => {
                self.reservation_rows
                    .insert(snapshot.id.clone(), self.batch.reservations.len());
                self.batch.reservations.push(row);
                self.snapshots.push((snapshot.clone(), snapshot.created));
            }
        }
    }

    /// Lines of reservations created in this batch, and committed quantities of committed
    /// ones (an upsert on (reservation_id, sku, location)).
    fn finish(mut self, items: &Items) -> JournalBatch {
        for (snapshot, created) in &self.snapshots {
            let committed = snapshot.status == Status::Committed;
            if !created && !committed {
                continue;
            }
            for (index, line) in snapshot.lines.iter().enumerate() {
                let (sku, location) = items.key(line.item);
                let quantity_committed = match (&snapshot.committed, committed) {
                    (Some(quantities), true) => quantities[index],
                    _ => 0,
                };
                self.batch.reservation_lines.push(ReservationLineRow {
                    reservation_id: snapshot.id.clone(),
                    sku,
                    location,
                    quantity: line.quantity,
                    quantity_committed,
                });
            }
        }
        self.batch
    }
}
