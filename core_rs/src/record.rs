//! The part of a reservation fixed when it is made: its ids, its lines and its creation
//! time. The slab keeps it in the reservation's slot (no allocation of its own, nothing
//! shared, nothing atomic to release at eviction); a view copies what readers see of it
//! (`RecordTexts`), when one is asked for.

use std::ops::Deref;

use smallvec::SmallVec;

use crate::reservation::HoldLines;
use crate::view::{LineRef, LineRefs, LineView};

/// Texts up to this many bytes in total (reservation, order and request id, and the names
/// of the lines) are stored in the record itself: a uuid reservation id with a short order
/// id and one line needs no second allocation.
const TEXTS_INLINE: usize = 64;

/// What readers see of a reservation's fixed part: its ids and its lines as views show
/// them (names and quantities). Lines keep copies of their names: copying a few bytes
/// costs less than sharing the item table's names (two reference counts to take and,
/// later, to drop), and a view's copy needs nothing from the engine.
#[derive(Debug)]
pub struct RecordTexts {
    /// Reservation id, order id, request id, then each line's sku and location, back to
    /// back.
    texts: SmallVec<[u8; TEXTS_INLINE]>,
    order_start: u32,
    request_start: u32,
    lines_start: u32,
    has_request: bool,
    /// Per line: where its sku and its location end in `texts`, and its quantity.
    line_ends: LineEnds,
}

/// A copy made byte-wise (`SmallVec`'s own clone goes element by element).
impl Clone for RecordTexts {
    fn clone(&self) -> RecordTexts {
        RecordTexts {
            texts: SmallVec::from_slice(&self.texts),
            order_start: self.order_start,
            request_start: self.request_start,
            lines_start: self.lines_start,
            has_request: self.has_request,
            line_ends: SmallVec::from_slice(&self.line_ends),
        }
    }
}

/// What never changes about a reservation once made.
#[derive(Debug)]
pub struct ReservationRecord {
    pub texts: RecordTexts,
    /// The items held, one line per item.
    pub holds: HoldLines,
    pub created_at_ms: i64,
}

/// Writes the ids, then each line's sku and location, back to back into `buffer`, which
/// is exactly as long as they are together; each line's ends (as in
/// `RecordTexts::line_ends`) go to `ends`.
fn fill<'a>(
    buffer: &mut [u8],
    ids: [&str; 3],
    lines: impl Iterator<Item = LineRef<'a>>,
    ends: &mut LineEnds,
) {
    let mut end = 0;
    // Request ids and locations are often empty: skip the call to copy nothing.
    let mut put = |text: &str| {
        if !text.is_empty() {
            buffer[end..end + text.len()].copy_from_slice(text.as_bytes());
            end += text.len();
        }
        end as u32
    };
    for id in ids {
        put(id);
    }
    for line in lines {
        let sku_end = put(line.sku);
        let location_end = put(line.location);
        ends.push((sku_end, location_end, line.quantity));
    }
    assert_eq!(end, buffer.len(), "texts measured wrong");
}

/// Per line: where its sku and its location end in the texts, and its quantity.
type LineEnds = SmallVec<[(u32, u32, u64); 1]>;

/// `texts[start..end]`: each stored text was a whole `&str`, so every range is valid UTF-8.
fn text_at(texts: &[u8], start: u32, end: u32) -> &str {
    std::str::from_utf8(&texts[start as usize..end as usize]).expect("stored from str")
}

/// Lines whose names lie back to back in `texts` from `start`, each sku and location
/// ending where `ends` say (as `LineEnds` and `LineTexts` store them).
fn lines_at<'a>(texts: &'a [u8], mut start: u32, ends: &[(u32, u32, u64)]) -> LineRefs<'a> {
    ends.iter()
        .map(|&(sku_end, location_end, quantity)| {
            let line = LineRef {
                sku: text_at(texts, start, sku_end),
                location: text_at(texts, sku_end, location_end),
                quantity,
            };
            start = location_end;
            line
        })
        .collect()
}

impl RecordTexts {
    /// The texts of `lines` as views show them (names and quantities), the lines given by
    /// an iterator (read twice: to measure, then to copy).
    pub fn of_lines<'a>(
        reservation_id: &str,
        order_id: &str,
        request_id: Option<&str>,
        lines: impl Iterator<Item = LineRef<'a>> + Clone,
    ) -> RecordTexts {
        let request = request_id.unwrap_or("");
        let ids = [reservation_id, order_id, request];
        let lines_start = reservation_id.len() + order_id.len() + request.len();
        let mut length = lines_start;
        let mut line_count = 0;
        for line in lines.clone() {
            length += line.sku.len() + line.location.len();
            line_count += 1;
        }
        // Ids and names are bounded at the edge; outcomes read back at recovery are only
        // parsed.
        assert!(length <= u32::MAX as usize, "texts beyond 4 GiB");
        let mut line_ends = LineEnds::with_capacity(line_count);
        let texts = if length <= TEXTS_INLINE {
            let mut inline = [0u8; TEXTS_INLINE];
            fill(&mut inline[..length], ids, lines, &mut line_ends);
            SmallVec::from_buf_and_len(inline, length)
        } else {
            let mut heap = vec![0u8; length];
            fill(&mut heap, ids, lines, &mut line_ends);
            SmallVec::from_vec(heap)
        };
        RecordTexts {
            texts,
            order_start: reservation_id.len() as u32,
            request_start: (reservation_id.len() + order_id.len()) as u32,
            lines_start: lines_start as u32,
            has_request: request_id.is_some(),
            line_ends,
        }
    }

    fn text(&self, start: u32, end: usize) -> &str {
        text_at(&self.texts, start, end as u32)
    }

    /// The lines as views show them, names borrowed.
    pub fn lines(&self) -> LineRefs<'_> {
        lines_at(&self.texts, self.lines_start, &self.line_ends)
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
            .then(|| self.text(self.request_start, self.lines_start as usize))
    }

    /// The reservation, order and request ids back to back (as `id_lengths` split them),
    /// for copying all three at once.
    pub fn id_texts(&self) -> &[u8] {
        &self.texts[..self.lines_start as usize]
    }

    /// The lengths of the reservation, order and request id (0: none) in `id_texts`.
    pub fn id_lengths(&self) -> [usize; 3] {
        let [order, request, lines] =
            [self.order_start, self.request_start, self.lines_start].map(|at| at as usize);
        [order, request - order, lines - request]
    }
}

impl ReservationRecord {
    /// A record of `holds`, whose lines as views show them are `lines`.
    pub fn of_lines<'a>(
        reservation_id: &str,
        order_id: &str,
        request_id: Option<&str>,
        holds: HoldLines,
        lines: impl Iterator<Item = LineRef<'a>> + Clone,
        created_at_ms: i64,
    ) -> ReservationRecord {
        ReservationRecord {
            texts: RecordTexts::of_lines(reservation_id, order_id, request_id, lines),
            holds,
            created_at_ms,
        }
    }

    pub fn reservation_id(&self) -> &str {
        self.texts.reservation_id()
    }

    /// The reservation id as bytes, for comparing without decoding.
    pub fn reservation_id_bytes(&self) -> &[u8] {
        self.texts.reservation_id_bytes()
    }

    pub fn order_id(&self) -> &str {
        self.texts.order_id()
    }
}

/// What a commit fixed: the committed quantity per held line, and the committed lines as
/// views show them (only quantities above zero).
#[derive(Debug)]
pub struct CommittedLines {
    /// Same order as the record's `holds`.
    pub quantities: Box<[u64]>,
    pub lines: LineTexts,
}

/// Names of a single line's sku and location up to this many bytes in total are stored
/// inline.
const LINE_TEXTS_INLINE: usize = 32;

/// Lines as views show them, names copied (see `RecordTexts`).
#[derive(Clone, Debug, Default)]
pub struct LineTexts {
    /// Each line's sku, then its location, back to back.
    texts: SmallVec<[u8; LINE_TEXTS_INLINE]>,
    /// Per line: where its sku ends, where its location ends, its quantity.
    lines: SmallVec<[(u32, u32, u64); 1]>,
}

impl LineTexts {
    pub fn with_capacity(lines: usize) -> LineTexts {
        LineTexts {
            texts: SmallVec::new(),
            lines: SmallVec::with_capacity(lines),
        }
    }

    pub fn push(&mut self, sku: &str, location: &str, quantity: u64) {
        // Names are bounded at the edge; outcomes read back at recovery are only parsed.
        assert!(
            self.texts.len() + sku.len() + location.len() <= u32::MAX as usize,
            "line names beyond 4 GiB"
        );
        self.texts.extend_from_slice(sku.as_bytes());
        let sku_end = self.texts.len() as u32;
        self.texts.extend_from_slice(location.as_bytes());
        let location_end = self.texts.len() as u32;
        self.lines.push((sku_end, location_end, quantity));
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The lines, names borrowed.
    pub fn lines(&self) -> LineRefs<'_> {
        lines_at(&self.texts, 0, &self.lines)
    }
}

impl<S: Deref<Target = str>> FromIterator<LineView<S>> for LineTexts {
    fn from_iter<I: IntoIterator<Item = LineView<S>>>(lines: I) -> LineTexts {
        let mut texts = LineTexts::default();
        for line in lines {
            texts.push(&line.sku, &line.location, line.quantity);
        }
        texts
    }
}
