//! A drained batch: the operations taken from the journal and the rows persistence
//! writes, rendered on demand from them. Building a batch only aggregates (one row per
//! item and per reservation), finding rows by position, never by hashing.

use std::sync::Arc;

use super::{JournalOperation, LedgerEntry, LedgerKind, ReservationSnapshot, StockTexts};
use crate::idempotency::outcome_to_json;
use crate::item::{ItemIndex, Items};
use crate::record::ReservationRecord;
use crate::reservation::Status;

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
#[derive(Debug)]
pub struct JournalBatch {
    pub lsn_first: u64,
    pub lsn_last: u64,
    /// `(sku, location, on_hand, reserved)`: final values, one row per item touched.
    pub items: Vec<(Arc<str>, Arc<str>, u64, u64)>,
    pub idempotency: Vec<IdempotencyRow>,
    operations: Vec<JournalOperation>,
    /// Per operation: the row of its reservation (NO_ROW when it has none).
    operation_reservation_rows: Vec<u32>,
    entries: Vec<LedgerEntry>,
    /// Per entry: its operation and its item row.
    entry_positions: Vec<(u32, u32)>,
    reservation_rows: Vec<RowState>,
    lines: Vec<BatchLine>,
}

/// A reservation row being aggregated: where its final state and its lines are.
#[derive(Clone, Copy, Debug)]
struct RowState {
    /// The last operation of the batch on the reservation (its final state).
    operation: u32,
    /// Its first line in `JournalBatch::lines` (NO_ROW: none, it was neither created nor
    /// committed in the batch).
    first_line: u32,
}

impl JournalBatch {
    fn snapshot(&self, operation: u32) -> &ReservationSnapshot {
        self.operations[operation as usize]
            .reservation
            .as_ref()
            .expect("reservation rows come from reservation operations")
    }

    /// The record of reservation row `row`, held by its last operation in the batch (the
    /// journal hands records over to later operations, and gives the last one taken of a
    /// reservation a reference of its own).
    fn row_record(&self, row: u32) -> &ReservationRecord {
        let operation = self.reservation_rows[row as usize].operation;
        let record = self.snapshot(operation).record.held();
        record.expect("a reservation's last operation in a batch holds its record")
    }

    /// One row per reservation touched (final state), in first-touch order.
    pub fn reservations(&self) -> impl ExactSizeIterator<Item = ReservationRow<'_>> {
        (0..self.reservation_rows.len() as u32).map(|row| {
            let operation = self.reservation_rows[row as usize].operation;
            let snapshot = self.snapshot(operation);
            let record = self.row_record(row);
            ReservationRow {
                reservation_id: record.reservation_id(),
                order_id: record.order_id(),
                status: snapshot.status.as_str(),
                expires_at_ms: snapshot.expires_at_ms,
                created_at_ms: record.created_at_ms,
                // The operation's time: every operation on a reservation updates it.
                updated_at_ms: self.operations[operation as usize].at_ms,
                request_id: record.request_id(),
            }
        })
    }

    /// Lines of reservations created in this batch, and committed quantities of committed
    /// ones (an upsert on (reservation_id, sku, location)).
    pub fn reservation_lines(&self) -> impl ExactSizeIterator<Item = ReservationLineRow<'_>> {
        self.lines.iter().map(|line| {
            let (sku, location, _, _) = &self.items[line.item_row as usize];
            ReservationLineRow {
                reservation_row: line.reservation_row as usize,
                reservation_id: self.row_record(line.reservation_row).reservation_id(),
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
        let positions = self.entries.iter().zip(&self.entry_positions);
        positions.map(|(entry, &(operation_index, item_row))| {
            let operation = &self.operations[operation_index as usize];
            let (sku, location, _, _) = &self.items[item_row as usize];
            let reservation_row = self.operation_reservation_rows[operation_index as usize];
            let record = (reservation_row != NO_ROW).then(|| self.row_record(reservation_row));
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
                item_row: item_row as usize,
                sku,
                location,
                kind: entry.kind.as_str(),
                delta_on_hand: entry.delta_on_hand,
                delta_reserved: entry.delta_reserved,
                on_hand_after: entry.on_hand_after,
                reserved_after: entry.reserved_after,
                operation: operation_index as usize,
                reservation_row: (reservation_row != NO_ROW).then_some(reservation_row as usize),
                reservation_id: record.map_or("", |r| r.reservation_id()),
                order_id,
                request_id: operation.request_id().unwrap_or(""),
                reason: text(|t| &t.reason),
                actor: text(|t| &t.actor),
            }
        })
    }
}

/// Each item's row in the batch being built, kept by the journal between takes: an entry
/// is current only when stamped with the current take, so finding an item's row needs
/// neither hashing nor clearing anything per take.
#[derive(Debug, Default)]
pub(super) struct ItemRows {
    /// Per item index: (take that gave it a row, that row).
    stamps: Vec<(u32, u32)>,
    take: u32,
}

type ItemRow = (Arc<str>, Arc<str>, u64, u64);

impl ItemRows {
    fn start_take(&mut self) {
        if self.take == u32::MAX {
            self.stamps.fill((0, 0));
            self.take = 0;
        }
        self.take += 1;
    }

    /// The row of `item` in this take, added (with its names) on first touch.
    fn row(&mut self, item: ItemIndex, items: &Items, rows: &mut Vec<ItemRow>) -> u32 {
        let index = item as usize;
        if index >= self.stamps.len() {
            // Grows (amortized) to the highest item journaled, not to every item loaded.
            self.stamps.resize(index + 1, (0, 0));
        }
        let (take, row) = self.stamps[index];
        if take == self.take {
            return row;
        }
        let row = rows.len() as u32;
        let (sku, location) = items.key(item);
        rows.push((sku, location, 0, 0));
        self.stamps[index] = (self.take, row);
        row
    }
}

impl JournalBatch {
    /// Aggregates whole operations (consecutive LSNs) and their ledger entries.
    pub(super) fn new(
        operations: Vec<JournalOperation>,
        entries: Vec<LedgerEntry>,
        items: &Items,
        item_rows: &mut ItemRows,
    ) -> JournalBatch {
        item_rows.start_take();
        let lsn_first = operations.first().expect("a batch is never empty").lsn;
        let mut batch = JournalBatch {
            lsn_first,
            lsn_last: operations.last().expect("a batch is never empty").lsn,
            // Sized up front (growing would copy): at most one row per entry or item.
            items: Vec::with_capacity(entries.len().min(items.len())),
            idempotency: Vec::new(),
            operations: Vec::new(),
            operation_reservation_rows: Vec::with_capacity(operations.len()),
            entries: Vec::new(),
            entry_positions: Vec::with_capacity(entries.len()),
            reservation_rows: Vec::with_capacity(operations.len()),
            // At most one line per ledger entry (of a reserve or a commit).
            lines: Vec::with_capacity(entries.len()),
        };
        let mut operation_entries = entries.iter();
        // Lines are pushed per reservation when it is created or committed; they are kept
        // in row order (a row's lines together, in line order), which a reservation first
        // touched by another operation and committed later can break.
        let mut lines_in_row_order = true;
        for (index, operation) in operations.iter().enumerate() {
            assert_eq!(
                operation.lsn,
                lsn_first + index as u64,
                "journal LSNs not consecutive"
            );
            let entries_start = batch.entry_positions.len();
            for entry in operation_entries.by_ref().take(operation.rows as usize) {
                let item_row = item_rows.row(entry.item, items, &mut batch.items);
                let row = &mut batch.items[item_row as usize];
                (row.2, row.3) = (entry.on_hand_after, entry.reserved_after);
                batch.entry_positions.push((index as u32, item_row));
            }
            let reservation_row = match &operation.reservation {
                Some(snapshot) => {
                    let row = batch.reservation_row(snapshot, index as u32);
                    let operation_lines = OperationLines {
                        entries: &entries[entries_start..][..operation.rows as usize],
                        positions: &batch.entry_positions[entries_start..],
                    };
                    lines_in_row_order &= add_lines(
                        &mut batch.reservation_rows[row as usize],
                        &mut batch.lines,
                        row,
                        snapshot,
                        operation_lines,
                    );
                    row
                }
                None => NO_ROW,
            };
            batch.operation_reservation_rows.push(reservation_row);
            if let Some(record) = &operation.idempotency {
                batch.idempotency.push(IdempotencyRow {
                    request_id: record.request_id.clone(),
                    fingerprint: record.fingerprint,
                    operation: record.operation.as_str(),
                    outcome_json: outcome_to_json(&record.outcome),
                    lsn: record.lsn,
                    created_at_ms: record.created_at_ms,
                });
            }
        }
        assert_eq!(
            batch.entry_positions.len(),
            entries.len(),
            "entries unclaimed"
        );
        if !lines_in_row_order {
            // Stable: each row's lines stay in line order.
            batch.lines.sort_by_key(|line| line.reservation_row);
        }
        batch.operations = operations;
        batch.entries = entries;
        batch.debug_check_lines();
        batch
    }

    /// The row of the snapshot's reservation, now pointing at operation `index` (its
    /// latest state): the row of its previous operation when that is in this batch, else
    /// a new one.
    fn reservation_row(&mut self, snapshot: &ReservationSnapshot, index: u32) -> u32 {
        let rows = &mut self.reservation_rows;
        if snapshot.previous_lsn >= self.lsn_first {
            let previous = (snapshot.previous_lsn - self.lsn_first) as usize;
            let row = self.operation_reservation_rows[previous];
            assert_ne!(row, NO_ROW, "previous operation carried the reservation");
            assert!(
                !snapshot.created,
                "a reservation is created by its first operation"
            );
            rows[row as usize].operation = index;
            return row;
        }
        rows.push(RowState {
            operation: index,
            first_line: NO_ROW,
        });
        (rows.len() - 1) as u32
    }

    /// Debug builds: every reservation row's last operation holds its record, and the
    /// lines read from the ledger are the record's.
    fn debug_check_lines(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        // Rows' lines follow each other in row order (`first_line` is where they were
        // pushed, before any sort).
        let mut first = 0;
        for (row, state) in self.reservation_rows.iter().enumerate() {
            let record = self.row_record(row as u32);
            if state.first_line == NO_ROW {
                continue;
            }
            let lines = &self.lines[first..][..record.holds.len()];
            first += lines.len();
            for ((line, hold), named) in lines.iter().zip(record.holds.iter()).zip(record.lines()) {
                let (sku, location, _, _) = &self.items[line.item_row as usize];
                assert_eq!(line.reservation_row, row as u32);
                assert_eq!(line.quantity, hold.quantity);
                assert_eq!((&**sku, &**location), (named.sku, named.location));
            }
        }
        assert_eq!(first, self.lines.len(), "lines of rows without lines");
    }
}

/// Lines of reservations created in this batch, and committed quantities of committed
/// ones, from the ledger entries of the operation that creates or commits them: a
/// reserve journals one entry per line, in the order of the reservation's lines,
/// holding its quantity; a commit one per line too, in the same order, giving back the
/// quantity held and taking the quantity committed from on-hand stock. The records,
/// written long before and seldom still cached, are not read. Whether the lines are
/// still in row order.
fn add_lines(
    state: &mut RowState,
    lines: &mut Vec<BatchLine>,
    row: u32,
    snapshot: &ReservationSnapshot,
    operation: OperationLines<'_>,
) -> bool {
    let committed = snapshot.status == Status::Committed;
    if !snapshot.created && !committed {
        return true;
    }
    if state.first_line != NO_ROW {
        // Created in this batch and now committed: its lines are there.
        assert!(
            committed && !snapshot.created,
            "lines added once per reservation"
        );
        let first = state.first_line as usize;
        let count = operation.entries.len();
        assert!(
            lines[first..].len() >= count
                && lines
                    .get(first + count)
                    .is_none_or(|next| next.reservation_row != row),
            "a commit settles every line"
        );
        for (line, (entry, item_row)) in lines[first..][..count].iter_mut().zip(operation.iter()) {
            assert_eq!(entry.kind, LedgerKind::Commit, "committed by a commit");
            assert_eq!(
                (line.reservation_row, line.item_row, line.quantity),
                (row, item_row, entry.delta_reserved.unsigned_abs()),
                "a commit settles the lines in their order"
            );
            line.quantity_committed = entry.delta_on_hand.unsigned_abs();
        }
        return true;
    }
    let in_order = lines.last().is_none_or(|last| last.reservation_row < row);
    state.first_line = lines.len() as u32;
    let kind = if snapshot.created {
        LedgerKind::Reserve
    } else {
        LedgerKind::Commit
    };
    for (entry, item_row) in operation.iter() {
        assert_eq!(entry.kind, kind, "lines of a reserve or a commit");
        lines.push(BatchLine {
            reservation_row: row,
            item_row,
            quantity: entry.delta_reserved.unsigned_abs(),
            quantity_committed: match kind {
                LedgerKind::Commit => entry.delta_on_hand.unsigned_abs(),
                _ => 0,
            },
        });
    }
    in_order
}

/// The ledger entries of one operation, with their item rows.
#[derive(Clone, Copy)]
struct OperationLines<'a> {
    entries: &'a [LedgerEntry],
    positions: &'a [(u32, u32)],
}

impl<'a> OperationLines<'a> {
    fn iter(self) -> impl Iterator<Item = (&'a LedgerEntry, u32)> {
        self.entries
            .iter()
            .zip(self.positions)
            .map(|(entry, &(_, item_row))| (entry, item_row))
    }
}
