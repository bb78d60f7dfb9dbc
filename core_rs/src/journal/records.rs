//! Copies of the fixed part of the reservations journal operations carry (ids and creation
//! time), back to back in one byte buffer that batches take whole.
//!
//! Operations used to share their reservation's record (`Arc`): a reference count taken
//! when journaled and another dropped with the batch, which read every long-cold record
//! again, and a batch's drop had to visit every operation. A copy of a reservation's ids is
//! a few dozen bytes, written once per reservation per batch (later operations on it reuse
//! the copy while it is pending), and a batch drops them as one allocation: operations are
//! plain values, with no reference count and nothing to drop. Nothing is shared with the
//! engine, so a batch stays sound wherever its (Python) owner drops it.

use crate::limits::ID_BYTES_MAX;
use crate::prefetch::prefetch_after;
use crate::record::ReservationRecord;

// Each id's length is stored in one byte.
const _: () = assert!(ID_BYTES_MAX <= u8::MAX as usize);

/// Where a copy is: its offset in the journal's byte stream (counted since the journal
/// began, so that offsets stay valid when batches take the front of the queue).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordCopy(u64);

/// A copy's header: creation time, the three ids' lengths, whether there is a request id.
const HEADER_BYTES: usize = 12;

/// The length of the ids following `header`.
fn texts_length(header: &[u8]) -> usize {
    header[8..11].iter().map(|&length| length as usize).sum()
}

/// The copied fixed part of one reservation, as a batch reads it.
#[derive(Clone, Copy, Debug)]
pub struct CopiedRecord<'a> {
    pub reservation_id: &'a str,
    pub order_id: &'a str,
    pub request_id: Option<&'a str>,
    pub created_at_ms: i64,
}

/// The pending copies, owned by the journal.
#[derive(Debug, Default)]
pub(super) struct RecordQueue {
    bytes: Vec<u8>,
    /// Stream offset of `bytes[0]`.
    start: u64,
}

/// Copies taken by a batch: the stream from offset `start` on.
#[derive(Debug, Default)]
pub(super) struct Records {
    bytes: Vec<u8>,
    start: u64,
}

impl RecordQueue {
    /// Appends a copy of `record`'s ids and creation time.
    pub(super) fn push(&mut self, record: &ReservationRecord) -> RecordCopy {
        let lengths = record.id_lengths().map(|length| {
            assert!(length <= ID_BYTES_MAX, "ids are bounded at the edge");
            length as u8
        });
        let mut header = [0u8; HEADER_BYTES];
        header[..8].copy_from_slice(&record.created_at_ms.to_le_bytes());
        header[8..11].copy_from_slice(&lengths);
        header[11] = u8::from(record.request_id().is_some());
        self.append(&header, record.id_texts())
    }

    fn append(&mut self, header: &[u8; HEADER_BYTES], texts: &[u8]) -> RecordCopy {
        let at = RecordCopy(self.start + self.bytes.len() as u64);
        self.bytes.reserve(header.len() + texts.len());
        self.bytes.extend_from_slice(header);
        self.bytes.extend_from_slice(texts);
        let last = self.bytes.last().expect("just appended");
        prefetch_after(last, super::WRITE_AHEAD_BYTES);
        at
    }

    /// Appends a copy of `copy`, read from copies already taken.
    pub(super) fn push_again(&mut self, taken: &Records, copy: RecordCopy) -> RecordCopy {
        let (header, texts) = taken.parts(copy);
        let header = *header.first_chunk().expect("a copy has its header");
        self.append(&header, texts)
    }

    /// Every pending copy.
    pub(super) fn take_all(&mut self) -> Records {
        let start = self.start;
        self.start += self.bytes.len() as u64;
        // Started as large as the last batch's, so that refilling it does not grow it by
        // copying.
        let capacity = self.bytes.len();
        let bytes = std::mem::replace(&mut self.bytes, Vec::with_capacity(capacity));
        Records { bytes, start }
    }

    /// The pending copies before stream offset `end`. The rest moves to the front (a take
    /// of part of the journal is rare: a backlog beyond one batch).
    pub(super) fn take_before(&mut self, end: u64) -> Records {
        let count = (end - self.start) as usize;
        let bytes = self.bytes.drain(..count).collect();
        let start = self.start;
        self.start = end;
        Records { bytes, start }
    }

    /// The stream offset right after `copy`, which is pending.
    pub(super) fn end_of(&self, RecordCopy(at): RecordCopy) -> u64 {
        assert!(at >= self.start, "pending operations use pending copies");
        let header = &self.bytes[(at - self.start) as usize..][..HEADER_BYTES];
        at + (HEADER_BYTES + texts_length(header)) as u64
    }

    /// Whether `copy` is still in the queue (not taken by a batch).
    pub(super) fn holds(&self, copy: RecordCopy) -> bool {
        copy.0 >= self.start
    }
}

impl Records {
    fn parts(&self, RecordCopy(at): RecordCopy) -> (&[u8], &[u8]) {
        assert!(at >= self.start, "a batch's copies are its own");
        let bytes = &self.bytes[(at - self.start) as usize..];
        let (header, rest) = bytes.split_at(HEADER_BYTES);
        (header, &rest[..texts_length(header)])
    }

    pub(super) fn get(&self, copy: RecordCopy) -> CopiedRecord<'_> {
        let (header, texts) = self.parts(copy);
        let created_at_ms = i64::from_le_bytes(*header.first_chunk().expect("8 bytes"));
        let [reservation_id, order_id, _] = [header[8], header[9], header[10]].map(usize::from);
        let text = |range: std::ops::Range<usize>| {
            std::str::from_utf8(&texts[range]).expect("copied from str")
        };
        let order_end = reservation_id + order_id;
        CopiedRecord {
            reservation_id: text(0..reservation_id),
            order_id: text(reservation_id..order_end),
            request_id: (header[11] != 0).then(|| text(order_end..texts.len())),
            created_at_ms,
        }
    }
}
