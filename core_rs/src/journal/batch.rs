//! A drained batch: the operations taken from the journal and the rows persistence
//! writes, rendered on demand from them. Building a batch only aggregates (one row per
//! item and per reservation), finding rows by position, never by hashing.

use std::sync::Arc;

use super::records::{CopiedRecord, Records};
use super::{
    JournalOperation, LedgerEntry, LedgerKind, OperationExtra, ReservationSnapshot, StockTexts,
    Taken,
};
use crate::idempotency::outcome_to_json;
use crate::item::{ItemIndex, Items};
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
    pub delta_safety: i64,
    pub on_hand_after: u64,
    pub reserved_after: u64,
    pub safety_after: u64,
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

/// Marks an operation without a reservation row or an extra in `OperationRows`.
const NO_ROW: u32 = u32::MAX;

/// Where an operation's reservation row and its extra are (NO_ROW: it has none).
#[derive(Clone, Copy, Debug)]
struct OperationRows {
    reservation: u32,
    extra: u32,
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
/// Reservations' ids are the journal's copies (`records`), taken with the operations.
#[derive(Debug)]
pub struct JournalBatch {
    pub lsn_first: u64,
    pub lsn_last: u64,
    /// Final levels, one row per item touched.
    pub items: BatchItems,
    pub idempotency: Vec<IdempotencyRow>,
    operations: Vec<JournalOperation>,
    /// Per operation: its reservation row and its extra.
    operation_rows: Vec<OperationRows>,
    extras: Vec<OperationExtra>,
    records: Records,
    entries: Vec<LedgerEntry>,
    /// Per entry: its item row. (Its operation is found by counting each operation's
    /// entries, see `EntryOperations`.)
    entry_item_rows: Vec<u32>,
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
    fn snapshot(&self, operation: u32) -> ReservationSnapshot {
        let lsn = self.lsn_first + u64::from(operation);
        self.operations[operation as usize]
            .reservation(lsn)
            .expect("reservation rows come from reservation operations")
    }

    /// The ids and creation time of reservation row `row`.
    fn row_record(&self, row: u32) -> CopiedRecord<'_> {
        let operation = self.reservation_rows[row as usize].operation;
        self.records.get(self.snapshot(operation).record)
    }

    /// One row per reservation touched (final state), in first-touch order.
    pub fn reservations(&self) -> impl ExactSizeIterator<Item = ReservationRow<'_>> {
        (0..self.reservation_rows.len() as u32).map(|row| {
            let operation = self.reservation_rows[row as usize].operation;
            let snapshot = self.snapshot(operation);
            let record = self.row_record(row);
            ReservationRow {
                reservation_id: record.reservation_id,
                order_id: record.order_id,
                status: snapshot.status.as_str(),
                expires_at_ms: snapshot.expires_at_ms,
                created_at_ms: record.created_at_ms,
                // The operation's time: every operation on a reservation updates it.
                updated_at_ms: self.operations[operation as usize].at_ms,
                request_id: record.request_id,
            }
        })
    }

    /// Lines of reservations created in this batch, and committed quantities of committed
    /// ones (an upsert on (reservation_id, sku, location)).
    pub fn reservation_lines(&self) -> impl ExactSizeIterator<Item = ReservationLineRow<'_>> {
        self.lines.iter().map(|line| {
            let ItemLevels { sku, location, .. } = self.items.get(line.item_row as usize);
            ReservationLineRow {
                reservation_row: line.reservation_row as usize,
                reservation_id: self.row_record(line.reservation_row).reservation_id,
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
        let operations = EntryOperations::new(&self.operations, self.entries.len());
        let positions = self
            .entries
            .iter()
            .zip(&self.entry_item_rows)
            .zip(operations);
        positions.map(|((entry, &item_row), operation_index)| {
            let operation = &self.operations[operation_index as usize];
            let ItemLevels { sku, location, .. } = self.items.get(item_row as usize);
            let rows = self.operation_rows[operation_index as usize];
            let reservation_row = rows.reservation;
            let record = (reservation_row != NO_ROW).then(|| self.row_record(reservation_row));
            let extra = (rows.extra != NO_ROW).then(|| &self.extras[rows.extra as usize]);
            let texts = extra.and_then(|extra| extra.texts.as_deref());
            let text = |field: fn(&StockTexts) -> &Option<Arc<str>>| {
                texts
                    .and_then(|texts| field(texts).as_deref())
                    .unwrap_or("")
            };
            let order_id = record.map_or_else(|| text(|t| &t.order_id), |r| r.order_id);
            LedgerRow {
                lsn: self.lsn_first + u64::from(operation_index),
                at_ms: operation.at_ms,
                item_row: item_row as usize,
                sku,
                location,
                kind: entry.kind.as_str(),
                delta_on_hand: entry.delta_on_hand,
                delta_reserved: entry.delta_reserved,
                delta_safety: entry.delta_safety,
                on_hand_after: entry.on_hand_after,
                reserved_after: entry.reserved_after,
                safety_after: entry.safety_after,
                operation: operation_index as usize,
                reservation_row: (reservation_row != NO_ROW).then_some(reservation_row as usize),
                reservation_id: record.map_or("", |r| r.reservation_id),
                order_id,
                request_id: extra.and_then(OperationExtra::request_id).unwrap_or(""),
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

/// One item of a batch: its names and its final levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemLevels<'a> {
    pub sku: &'a str,
    pub location: &'a str,
    pub on_hand: u64,
    pub reserved: u64,
    pub safety_stock: u64,
}

/// Final levels of an item row: (on hand, reserved, safety stock).
type Levels = (u64, u64, u64);

/// The items a batch touched, one row each, names copied into one buffer: a batch shares
/// nothing with the engine, so building it and dropping it (which the binding may do on
/// any thread) take no reference count (the item table's shared names cost two atomic
/// operations per item and batch, and two more at its drop).
#[derive(Debug, Default)]
pub struct BatchItems {
    /// Each row's sku, then its location, back to back.
    names: String,
    /// Per row: where its sku and its location end in `names`, its final levels.
    rows: Vec<(u32, u32, Levels)>,
}

impl BatchItems {
    fn with_capacity(rows: usize) -> BatchItems {
        BatchItems {
            names: String::new(),
            rows: Vec::with_capacity(rows),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row `row`; panics beyond `len`.
    pub fn get(&self, row: usize) -> ItemLevels<'_> {
        let (sku_end, location_end, (on_hand, reserved, safety_stock)) = self.rows[row];
        let sku_start = match row {
            0 => 0,
            _ => self.rows[row - 1].1,
        };
        ItemLevels {
            sku: &self.names[sku_start as usize..sku_end as usize],
            location: &self.names[sku_end as usize..location_end as usize],
            on_hand,
            reserved,
            safety_stock,
        }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = ItemLevels<'_>> {
        (0..self.rows.len()).map(|row| self.get(row))
    }

    /// Adds a row for an item named `sku`, `location`; returns its position.
    fn push(&mut self, sku: &str, location: &str) -> u32 {
        // Names are bounded at the edge and a batch holds at most one row per entry.
        assert!(
            self.names.len() + sku.len() + location.len() <= u32::MAX as usize,
            "item names beyond 4 GiB"
        );
        self.names.push_str(sku);
        let sku_end = self.names.len() as u32;
        self.names.push_str(location);
        self.rows
            .push((sku_end, self.names.len() as u32, (0, 0, 0)));
        (self.rows.len() - 1) as u32
    }

    /// Sets the levels of row `row` (the latest entry's wins).
    fn set_levels(&mut self, row: u32, levels: Levels) {
        self.rows[row as usize].2 = levels;
    }
}

impl ItemRows {
    fn start_take(&mut self) {
        if self.take == u32::MAX {
            self.stamps.fill((0, 0));
            self.take = 0;
        }
        self.take += 1;
    }

    /// Makes room for a stamp per item of a table of `items` items, once per take, so
    /// that finding a row needs no check for it per entry. Grows (amortized) to the items
    /// loaded, which journal entries never exceed.
    fn cover(&mut self, items: usize) {
        if items > self.stamps.len() {
            self.stamps.resize(items, (0, 0));
        }
    }

    /// The row of `item` in this take, added (with its names) on first touch. `cover`
    /// was called for a table that holds it.
    fn row(&mut self, item: ItemIndex, items: &Items, rows: &mut BatchItems) -> u32 {
        let index = item as usize;
        let (take, row) = self.stamps[index];
        if take == self.take {
            return row;
        }
        self.add_row(item, items, rows)
    }

    /// The first touch of `item` in this take: a row with its names. Out of line, so that
    /// the usual case, a row already there, keeps its loop's state in registers.
    #[cold]
    #[inline(never)]
    fn add_row(&mut self, item: ItemIndex, items: &Items, rows: &mut BatchItems) -> u32 {
        let location = items.location_of(item);
        let row = rows.push(&items.get(item).sku, location);
        self.stamps[item as usize] = (self.take, row);
        row
    }
}

impl JournalBatch {
    /// Aggregates whole operations (consecutive LSNs from `lsn_first`), their ledger
    /// entries, extras and record copies.
    pub(super) fn new(
        lsn_first: u64,
        taken: Taken,
        items: &Items,
        item_rows: &mut ItemRows,
    ) -> JournalBatch {
        let Taken {
            operations,
            entries,
            extras,
            records,
        } = taken;
        assert!(!operations.is_empty(), "a batch is never empty");
        item_rows.start_take();
        let mut batch_items = BatchItems::with_capacity(entries.len().min(items.len()));
        let entry_item_rows = entry_item_rows(&entries, items, item_rows, &mut batch_items);
        let aggregate = OperationAggregate::of(&operations, &entries, &entry_item_rows);
        assert_eq!(aggregate.extras as usize, extras.len(), "extras unclaimed");
        // Extras are in operation order, so their idempotency rows are too.
        let idempotency = extras
            .iter()
            .filter_map(|extra| extra.idempotency.as_ref())
            .map(|record| IdempotencyRow {
                request_id: record.request_id.clone(),
                fingerprint: record.fingerprint,
                operation: record.operation.as_str(),
                outcome_json: outcome_to_json(&record.outcome),
                lsn: record.lsn,
                created_at_ms: record.created_at_ms,
            })
            .collect();
        let batch = JournalBatch {
            lsn_first,
            lsn_last: lsn_first + operations.len() as u64 - 1,
            items: batch_items,
            idempotency,
            operations,
            operation_rows: aggregate.operation_rows,
            extras,
            records,
            entries,
            entry_item_rows,
            reservation_rows: aggregate.reservation_rows,
            lines: aggregate.lines,
        };
        batch.debug_check_lines();
        batch
    }

    /// Debug builds: every row's record copy reads back, and each row's lines follow each
    /// other, in row order. (That they are the reservation's lines is checked when they
    /// are journaled, see `Engine::journal_reservation`.)
    fn debug_check_lines(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let mut first = 0;
        for (row, state) in self.reservation_rows.iter().enumerate() {
            self.row_record(row as u32);
            if state.first_line == NO_ROW {
                continue;
            }
            let lines = self.lines[first..].iter();
            let count = lines
                .take_while(|line| line.reservation_row == row as u32)
                .count();
            assert!(count > 0, "a row's lines are together, in row order");
            first += count;
        }
        assert_eq!(first, self.lines.len(), "lines of rows without lines");
    }
}

/// What a batch aggregates per operation: each operation's reservation row and extra, the
/// reservation rows, and their lines.
struct OperationAggregate {
    operation_rows: Vec<OperationRows>,
    reservation_rows: Vec<RowState>,
    lines: Vec<BatchLine>,
    /// The extras the operations claimed.
    extras: u32,
}

impl OperationAggregate {
    /// Aggregates `operations` (a batch's, from position 0), over `entries` and their item
    /// rows. Not inlined, and apart from the passes over entries and extras, so that its
    /// loop keeps its state in registers (see `entry_item_rows`).
    #[inline(never)]
    fn of(
        operations: &[JournalOperation],
        entries: &[LedgerEntry],
        entry_item_rows: &[u32],
    ) -> OperationAggregate {
        let mut aggregate = OperationAggregate {
            operation_rows: Vec::with_capacity(operations.len()),
            reservation_rows: Vec::with_capacity(operations.len()),
            // At most one line per ledger entry (of a reserve or a commit).
            lines: Vec::with_capacity(entries.len()),
            extras: 0,
        };
        aggregate.add_rows(operations);
        aggregate.add_lines(operations, entries, entry_item_rows);
        aggregate
    }

    /// Each operation's reservation row and extra. A loop of its own, apart from the lines
    /// (`add_lines`): with both in one loop, its state did not fit in registers.
    #[inline(never)]
    fn add_rows(&mut self, operations: &[JournalOperation]) {
        for (index, operation) in operations.iter().enumerate() {
            let index = index as u32;
            let reservation = match operation.has_reservation() {
                true => self.reservation_row(operation, index),
                false => NO_ROW,
            };
            let extra = match operation.has_extra() {
                true => {
                    self.extras += 1;
                    self.extras - 1
                }
                false => NO_ROW,
            };
            self.operation_rows
                .push(OperationRows { reservation, extra });
        }
    }

    /// The lines of the reservation rows (`add_rows` found them), from the entries of the
    /// operations that create or commit them.
    #[inline(never)]
    fn add_lines(
        &mut self,
        operations: &[JournalOperation],
        entries: &[LedgerEntry],
        entry_item_rows: &[u32],
    ) {
        // Lines are pushed per reservation when it is created or committed; they are kept
        // in row order (a row's lines together, in line order), which a reservation first
        // touched by another operation and committed later can break.
        let mut lines_in_row_order = true;
        let mut entries_claimed = 0;
        for (operation, rows) in operations.iter().zip(&self.operation_rows) {
            let entries_start = entries_claimed;
            entries_claimed += operation.rows();
            let row = rows.reservation;
            // Only a reservation's creation and its commit have lines; a batch is mostly
            // other operations (a release, an expiry), so they are passed over first.
            let committed = operation.status() == Status::Committed;
            if row == NO_ROW || !(operation.created() || committed) {
                continue;
            }
            let operation_lines = OperationLines {
                entries: &entries[entries_start..entries_claimed],
                item_rows: &entry_item_rows[entries_start..entries_claimed],
            };
            lines_in_row_order &= add_lines(
                &mut self.reservation_rows[row as usize],
                &mut self.lines,
                row,
                operation.created(),
                operation_lines,
            );
        }
        assert_eq!(entries_claimed, entries.len(), "entries unclaimed");
        if !lines_in_row_order {
            // Stable: each row's lines stay in line order.
            self.lines.sort_by_key(|line| line.reservation_row);
        }
    }

    /// The row of the reservation of `operation`, at position `index`, now pointing at it
    /// (its latest state): the row of its previous operation when that is in this batch,
    /// else a new one.
    fn reservation_row(&mut self, operation: &JournalOperation, index: u32) -> u32 {
        let rows = &mut self.reservation_rows;
        if let Some(previous) = operation.previous_position(index) {
            let row = self.operation_rows[previous as usize].reservation;
            assert_ne!(row, NO_ROW, "previous operation carried the reservation");
            assert!(
                !operation.created(),
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
}

/// Each entry's item row (`JournalBatch::entry_item_rows`), giving the items of `rows` the
/// final levels of the batch. A pass of its own over the entries alone, apart from the
/// per-operation aggregation: inside that loop (with the item rows, the reservation rows
/// and the lines live at once) most of the state was kept on the stack, loaded and stored
/// again for every entry. Not inlined for the same reason.
#[inline(never)]
fn entry_item_rows(
    entries: &[LedgerEntry],
    items: &Items,
    item_rows: &mut ItemRows,
    rows: &mut BatchItems,
) -> Vec<u32> {
    item_rows.cover(items.len());
    let rows_of_entries = entries.iter().map(|entry| {
        let item_row = item_rows.row(entry.item, items, rows);
        let levels = (
            entry.on_hand_after,
            entry.reserved_after,
            entry.safety_after,
        );
        rows.set_levels(item_row, levels);
        item_row
    });
    rows_of_entries.collect()
}

/// The operation (its position in the batch) of each ledger entry in turn: operation `i`
/// has the next `rows()` entries.
struct EntryOperations<'a> {
    operations: std::slice::Iter<'a, JournalOperation>,
    /// The position after the current operation.
    next: u32,
    /// Entries of the current operation not yet given.
    left: usize,
    /// Entries not yet given.
    remaining: usize,
}

impl<'a> EntryOperations<'a> {
    /// Over `entries` entries, the operations' own (checked when the batch was built).
    fn new(operations: &'a [JournalOperation], entries: usize) -> EntryOperations<'a> {
        EntryOperations {
            operations: operations.iter(),
            next: 0,
            left: 0,
            remaining: entries,
        }
    }
}

impl Iterator for EntryOperations<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.remaining == 0 {
            return None;
        }
        while self.left == 0 {
            let operation = self.operations.next().expect("entries of every operation");
            self.left = operation.rows();
            self.next += 1;
        }
        self.left -= 1;
        self.remaining -= 1;
        Some(self.next - 1)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for EntryOperations<'_> {}

/// Lines of reservations created in this batch, and committed quantities of committed
/// ones, from the ledger entries of the operation that creates (`created`) or else commits
/// them: a
/// reserve journals one entry per line, in the order of the reservation's lines,
/// holding its quantity; a commit one per line too, in the same order, giving back the
/// quantity held and taking the quantity committed from on-hand stock. The records,
/// written long before and seldom still cached, are not read. Whether the lines are
/// still in row order.
fn add_lines(
    state: &mut RowState,
    lines: &mut Vec<BatchLine>,
    row: u32,
    created: bool,
    operation: OperationLines<'_>,
) -> bool {
    if state.first_line != NO_ROW {
        // Created in this batch and now committed: its lines are there.
        assert!(!created, "lines added once per reservation");
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
    let kind = if created {
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
    item_rows: &'a [u32],
}

impl<'a> OperationLines<'a> {
    fn iter(self) -> impl Iterator<Item = (&'a LedgerEntry, u32)> {
        self.entries.iter().zip(self.item_rows.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_items_read_back_their_names_and_levels() {
        let mut items = BatchItems::with_capacity(2);
        let first = items.push("a-1", "");
        let second = items.push("bé", "w1");
        items.set_levels(second, (7, 3, 0));
        items.set_levels(first, (5, 0, 4));
        items.set_levels(second, (8, 2, 1));
        let read: Vec<_> = items.iter().collect();
        let level = |sku, location, on_hand, reserved, safety_stock| ItemLevels {
            sku,
            location,
            on_hand,
            reserved,
            safety_stock,
        };
        assert_eq!(
            read,
            [level("a-1", "", 5, 0, 4), level("bé", "w1", 8, 2, 1)]
        );
        assert_eq!(items.get(1), read[1]);
    }
}
