//! The part of a reservation fixed when it is made: its ids, its lines and its creation
//! time, in one shared allocation. The slab, every view of the reservation and every
//! journal operation on it hold the same record, so sharing a reservation costs one
//! reference count instead of one per string, and evicting it frees one allocation.

use smallvec::SmallVec;

use crate::reservation::HoldLines;
use crate::view::LineViews;

/// Ids up to this many bytes in total (reservation, order and request id) are stored in
/// the record itself: a uuid reservation id with a short order id needs no second
/// allocation.
const TEXTS_INLINE: usize = 64;

/// What never changes about a reservation once made.
#[derive(Debug)]
pub struct ReservationRecord {
    /// Reservation id, order id and request id, back to back.
    texts: SmallVec<[u8; TEXTS_INLINE]>,
    order_start: u32,
    request_start: u32,
    has_request: bool,
    /// The items held, one line per item.
    pub holds: HoldLines,
    /// The same lines as views show them (names and quantities), built once.
    pub lines: LineViews,
    pub created_at_ms: i64,
}

impl ReservationRecord {
    pub fn new(
        reservation_id: &str,
        order_id: &str,
        request_id: Option<&str>,
        holds: HoldLines,
        lines: LineViews,
        created_at_ms: i64,
    ) -> ReservationRecord {
        let request = request_id.unwrap_or("");
        let length = reservation_id.len() + order_id.len() + request.len();
        // Ids are bounded at the edge; outcomes read back at recovery are only parsed.
        assert!(length <= u32::MAX as usize, "ids beyond 4 GiB");
        let parts = [reservation_id, order_id, request];
        let texts = if length <= TEXTS_INLINE {
            let mut inline = [0u8; TEXTS_INLINE];
            let mut end = 0;
            for part in parts {
                inline[end..end + part.len()].copy_from_slice(part.as_bytes());
                end += part.len();
            }
            SmallVec::from_buf_and_len(inline, length)
        } else {
            SmallVec::from_vec(parts.concat().into_bytes())
        };
        ReservationRecord {
            texts,
            order_start: reservation_id.len() as u32,
            request_start: (reservation_id.len() + order_id.len()) as u32,
            has_request: request_id.is_some(),
            holds,
            lines,
            created_at_ms,
        }
    }

    /// Each text was a whole `&str` when stored, so every range is valid UTF-8.
    fn text(&self, start: u32, end: usize) -> &str {
        std::str::from_utf8(&self.texts[start as usize..end]).expect("stored from str")
    }

    pub fn reservation_id(&self) -> &str {
        self.text(0, self.order_start as usize)
    }

    /// The reservation id as bytes, for comparing without decoding.
    pub fn reservation_id_bytes(&self) -> &[u8] {
        &self.texts[..self.order_start as usize]
    }

    pub fn order_id(&self) -> &str {
        self.text(self.order_start, self.request_start as usize)
    }

    /// The request that created the reservation, written to its row.
    pub fn request_id(&self) -> Option<&str> {
        self.has_request
            .then(|| self.text(self.request_start, self.texts.len()))
    }
}

/// What a commit fixed: the committed quantity per held line, and the committed lines as
/// views show them (only quantities above zero).
#[derive(Debug)]
pub struct CommittedLines {
    /// Same order as the record's `holds`.
    pub quantities: Box<[u64]>,
    pub lines: LineViews,
}
