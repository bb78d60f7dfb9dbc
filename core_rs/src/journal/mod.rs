//! The journal: what persistence must write, one operation per LSN, drained in batches.
//!
//! Appending is cheap: fixed-size ledger entries, and operations that are plain values
//! (a reservation's ids are copied once per batch, see `records`; the rare texts and
//! idempotency records are kept apart). `take`, which
//! the binding runs with the interpreter released, moves whole operations into a batch and
//! only aggregates (one row per item and per reservation, by position); the rows are read
//! through borrowing iterators, so no row copies a string or touches a reference count,
//! and the binding converts each distinct item and reservation to Python once.

mod batch;
mod records;

use std::collections::VecDeque;
use std::sync::Arc;

pub use batch::{
    BatchItems, IdempotencyRow, ItemLevels, JournalBatch, LedgerRow, ReservationLineRow,
    ReservationRow,
};
pub use records::{CopiedRecord, RecordCopy};

use records::{RecordQueue, Records};

use crate::idempotency::IdempotencyRecord;
use crate::item::{Item, ItemIndex, Items};
use crate::limits::{LINES_PER_REQUEST_MAX, TABLE_SIZE_MAX};
use crate::prefetch::prefetch_after;
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
    /// The safety stock was set; on hand and reserved do not change.
    Safety,
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
            LedgerKind::Safety => "safety",
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
    pub delta_safety: i64,
    pub on_hand_after: u64,
    pub reserved_after: u64,
    pub safety_after: u64,
}

/// The changes of one ledger entry: (on hand, reserved, safety stock).
pub type Deltas = (i64, i64, i64);

impl LedgerEntry {
    /// The entry for a change of `deltas` that left item `index` at `item`'s levels.
    pub fn after(index: ItemIndex, item: &Item, kind: LedgerKind, deltas: Deltas) -> LedgerEntry {
        let (delta_on_hand, delta_reserved, delta_safety) = deltas;
        LedgerEntry {
            item: index,
            kind,
            delta_on_hand,
            delta_reserved,
            delta_safety,
            on_hand_after: item.on_hand,
            reserved_after: item.reserved,
            safety_after: item.safety_stock,
        }
    }
}

/// A reservation's state right after an operation: a copy of its fixed part (see
/// `records`) and the few fields that change.
#[derive(Clone, Copy, Debug)]
pub struct ReservationSnapshot {
    pub record: RecordCopy,
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

/// What few operations carry: texts of a stock operation, the idempotency record of a
/// mutation given a request id. Kept apart, in operation order, so that operations are
/// plain values that need no drop.
#[derive(Debug, Default)]
pub struct OperationExtra {
    pub texts: Option<Box<StockTexts>>,
    pub idempotency: Option<Arc<IdempotencyRecord>>,
}

impl OperationExtra {
    pub(crate) fn is_empty(&self) -> bool {
        self.texts.is_none() && self.idempotency.is_none()
    }

    /// The operation's request id is its idempotency record's: a mutation remembers its
    /// outcome exactly when it was given a request id.
    pub(crate) fn request_id(&self) -> Option<&str> {
        self.idempotency.as_ref().map(|record| &*record.request_id)
    }
}

/// Everything one LSN changed; its ledger entries are the next `rows` entries of the
/// journal. Its LSN is its position. Packed into 32 bytes (half a cache line; every pair of
/// a reserve and a release writes two, and a take reads them again): the reservation's
/// state, when it has one, is unpacked by `reservation`.
#[derive(Clone, Copy, Debug)]
pub struct JournalOperation {
    pub at_ms: i64,
    /// With a reservation (`HAS_RESERVATION`): its copy, its expiry, and how many LSNs back
    /// its previous operation is (0: none, or not pending any more, which a journal of at
    /// most TABLE_SIZE_MAX operations tells apart from any pending one).
    record: RecordCopy,
    expires_at_ms: i64,
    previous_distance: u32,
    rows: u16,
    /// HAS_EXTRA, HAS_RESERVATION, CREATED, and the reservation's status from STATUS_SHIFT.
    flags: u8,
}

/// Whether the operation has the next `OperationExtra` of the journal.
const HAS_EXTRA: u8 = 1;
const HAS_RESERVATION: u8 = 2;
/// The operation created its reservation.
const CREATED: u8 = 4;
const STATUS_SHIFT: u32 = 3;
const STATUSES: [Status; 4] = [
    Status::Active,
    Status::Committed,
    Status::Released,
    Status::Expired,
];

// Every operation's entries are counted in 16 bits: a request has at most
// LINES_PER_REQUEST_MAX lines (one entry each), and a stock operation one.
const _: () = assert!(LINES_PER_REQUEST_MAX <= u16::MAX as usize);
// Pending operations lie less than 2^32 LSNs apart.
const _: () = assert!(TABLE_SIZE_MAX < u32::MAX as usize);
const _: () = assert!(std::mem::size_of::<JournalOperation>() == 32);

impl JournalOperation {
    /// Operation `lsn`, over `rows` ledger entries.
    fn new(
        lsn: u64,
        at_ms: i64,
        rows: u32,
        has_extra: bool,
        reservation: Option<ReservationSnapshot>,
    ) -> JournalOperation {
        let rows = u16::try_from(rows).expect("entries per operation bounded by the lines");
        let mut operation = JournalOperation {
            at_ms,
            record: RecordCopy::default(),
            expires_at_ms: 0,
            previous_distance: 0,
            rows,
            flags: if has_extra { HAS_EXTRA } else { 0 },
        };
        if let Some(snapshot) = reservation {
            assert!(
                snapshot.previous_lsn < lsn,
                "previous operation comes first"
            );
            let distance = match snapshot.previous_lsn {
                0 => 0,
                previous => u32::try_from(lsn - previous).unwrap_or(0),
            };
            let status = STATUSES
                .iter()
                .position(|&status| status == snapshot.status);
            let status = status.expect("every status listed") as u8;
            operation.record = snapshot.record;
            operation.expires_at_ms = snapshot.expires_at_ms;
            operation.previous_distance = distance;
            operation.flags |= HAS_RESERVATION | (status << STATUS_SHIFT);
            if snapshot.created {
                operation.flags |= CREATED;
            }
        }
        operation
    }

    /// The number of ledger entries of the operation.
    pub fn rows(&self) -> usize {
        usize::from(self.rows)
    }

    pub fn has_extra(&self) -> bool {
        self.flags & HAS_EXTRA != 0
    }

    /// The reservation's state after the operation, which is operation `lsn`.
    pub fn reservation(&self, lsn: u64) -> Option<ReservationSnapshot> {
        if self.flags & HAS_RESERVATION == 0 {
            return None;
        }
        let previous_lsn = match self.previous_distance {
            0 => 0,
            distance => lsn - u64::from(distance),
        };
        Some(ReservationSnapshot {
            record: self.record,
            status: STATUSES[usize::from(self.flags >> STATUS_SHIFT) & 3],
            created: self.flags & CREATED != 0,
            expires_at_ms: self.expires_at_ms,
            previous_lsn,
        })
    }

    /// The reservation's record copy, if it has a reservation.
    fn record(&self) -> Option<RecordCopy> {
        self.has_reservation().then_some(self.record)
    }

    /// Whether the operation carries a reservation (`reservation` is then Some). A batch
    /// aggregates with this and the accessors below, field by field, instead of unpacking
    /// a whole snapshot per operation.
    fn has_reservation(&self) -> bool {
        self.flags & HAS_RESERVATION != 0
    }

    /// The reservation's status after the operation (meaningless without a reservation).
    fn status(&self) -> Status {
        STATUSES[usize::from(self.flags >> STATUS_SHIFT) & 3]
    }

    /// Whether the operation created its reservation.
    fn created(&self) -> bool {
        self.flags & CREATED != 0
    }

    /// The position of the previous operation on the reservation, this one being at
    /// `position` of operations taken from position 0 on: None when there is none or it
    /// lies before position 0. (`reservation`'s `previous_lsn` is at least the first
    /// LSN exactly when the distance back is at most `position`.)
    fn previous_position(&self, position: u32) -> Option<u32> {
        let distance = self.previous_distance;
        (distance != 0 && distance <= position).then(|| position - distance)
    }
}

/// How far ahead of its appends the journal starts loading its buffers: a few operations,
/// so that their lines (last written two batches earlier, long evicted) are cached when
/// written, and the stores do not hold up later atomic operations (a view's reference
/// count) that must wait for every earlier store.
const WRITE_AHEAD_BYTES: usize = 512;

#[derive(Debug)]
pub struct Journal {
    operations: VecDeque<JournalOperation>,
    entries: VecDeque<LedgerEntry>,
    /// One per operation with `has_extra`, in operation order.
    extras: VecDeque<OperationExtra>,
    records: RecordQueue,
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
            extras: VecDeque::new(),
            records: RecordQueue::default(),
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

    /// The copy of `record` for an operation on its reservation whose previous operation
    /// was `previous_lsn` (0: none): that operation's copy while it is pending, else a new
    /// one.
    pub fn record_copy(&mut self, previous_lsn: u64, record: &ReservationRecord) -> RecordCopy {
        let first = self.first_pending_lsn();
        if previous_lsn >= first {
            let previous = &self.operations[(previous_lsn - first) as usize];
            return previous
                .record()
                .expect("previous operation carried the reservation");
        }
        self.records.push(record)
    }

    #[inline]
    pub fn push_entry(&mut self, entry: LedgerEntry) {
        assert!(entry.reserved_after <= entry.on_hand_after);
        // A safety stock entry moves no unit; no other entry changes the safety stock. Each
        // entry is built by the one operation of its kind (`LedgerEntry::after` with the
        // operation's own deltas), so this is checked in debug builds (the model and
        // simulation tests) rather than on every hold.
        let moves_units = entry.delta_on_hand != 0 || entry.delta_reserved != 0;
        let safety = entry.kind == LedgerKind::Safety;
        debug_assert!(!(safety && moves_units) && (safety || entry.delta_safety == 0));
        self.entries.push_back(entry);
        prefetch_after(self.entries.back().expect("just pushed"), WRITE_AHEAD_BYTES);
        self.open_rows += 1;
    }

    /// The ledger entries pushed since the last operation was closed.
    pub fn open_entries(&self) -> impl Iterator<Item = &LedgerEntry> {
        self.entries
            .range(self.entries.len() - self.open_rows as usize..)
    }

    /// Closes operation `lsn` (the next one) over the entries pushed since the previous one.
    /// Always inlined: called out of line (as `#[inline]` left it), the snapshot was built
    /// and then copied, 65 instructions more per reserve + release pair (callgrind).
    #[inline(always)]
    pub fn push_operation(
        &mut self,
        lsn: u64,
        at_ms: i64,
        reservation: Option<ReservationSnapshot>,
        extra: Option<OperationExtra>,
    ) {
        assert_eq!(lsn, self.last_lsn + 1, "journal LSNs must be consecutive");
        assert!(
            self.operations.len() < self.operations_max,
            "journal bound checked by caller"
        );
        let has_extra = extra.is_some();
        if let Some(extra) = extra {
            assert!(!extra.is_empty(), "operations without extra have none");
            self.extras.push_back(extra);
        }
        let operation = JournalOperation::new(lsn, at_ms, self.open_rows, has_extra, reservation);
        self.operations.push_back(operation);
        let last = self.operations.back().expect("just pushed");
        prefetch_after(last, WRITE_AHEAD_BYTES);
        self.open_rows = 0;
        self.last_lsn = lsn;
    }

    /// Drains up to `operations_max` whole operations into a batch.
    pub fn take(&mut self, operations_max: usize, items: &Items) -> Option<JournalBatch> {
        assert_eq!(self.open_rows, 0, "take_journal inside an operation");
        let count = operations_max.min(self.operations.len());
        if count == 0 {
            return None;
        }
        let lsn_first = self.first_pending_lsn();
        let taken = if count == self.operations.len() {
            // Everything pending (the usual case): hand the queues over whole instead of
            // moving each operation, and start new ones as large (so refilling them does
            // not grow them by copying). Queues filled from empty are contiguous from
            // their start, so turning them into vectors copies nothing.
            Taken {
                operations: Vec::from(take_queue(&mut self.operations)),
                entries: Vec::from(take_queue(&mut self.entries)),
                extras: Vec::from(take_queue(&mut self.extras)),
                records: self.records.take_all(),
            }
        } else {
            self.take_front(count)
        };
        Some(JournalBatch::new(
            lsn_first,
            taken,
            items,
            &mut self.item_rows,
        ))
    }

    /// The oldest `count` operations (not all of them), with their entries, extras and the
    /// record copies they use. Pending operations that use a copy taken with them get a
    /// copy of their own.
    fn take_front(&mut self, count: usize) -> Taken {
        let operations: Vec<JournalOperation> = self.operations.drain(..count).collect();
        let rows: usize = operations.iter().map(JournalOperation::rows).sum();
        let extras = operations.iter().filter(|o| o.has_extra()).count();
        let entries = self.entries.drain(..rows).collect();
        let extras = self.extras.drain(..extras).collect();
        // Copies are appended in operation order, except those made again (below), which
        // come after later operations' own: the batch takes the queue up to the end of
        // the last copy any of its operations uses.
        let copies = operations.iter().filter_map(JournalOperation::record);
        let end = copies.map(|copy| self.records.end_of(copy)).max();
        let records = match end {
            Some(end) => self.records.take_before(end),
            None => Records::default(),
        };
        // Rare (a backlog beyond one batch), so every pending operation is looked at.
        for operation in &mut self.operations {
            if let Some(copy) = operation.record() {
                if !self.records.holds(copy) {
                    operation.record = self.records.push_again(&records, copy);
                }
            }
        }
        Taken {
            operations,
            entries,
            extras,
            records,
        }
    }
}

/// What a take moves out of the journal.
pub(super) struct Taken {
    operations: Vec<JournalOperation>,
    entries: Vec<LedgerEntry>,
    extras: Vec<OperationExtra>,
    records: Records,
}

/// The queue's contents, leaving an empty one as large.
fn take_queue<T>(queue: &mut VecDeque<T>) -> VecDeque<T> {
    let capacity = queue.len();
    std::mem::replace(queue, VecDeque::with_capacity(capacity))
}
