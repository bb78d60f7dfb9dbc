//! The part of a reservation fixed when it is made: its ids, its lines and its creation
//! time. The slab keeps it in the reservation's slot (no allocation of its own, nothing
//! shared, nothing atomic to release at eviction), holding only what the engine reads:
//! the ids and the items held. A view, when one is asked for, copies the ids and the
//! lines' names (`RecordTexts`, names read from the item table then).

use std::ops::Deref;

use smallvec::SmallVec;

use crate::limits::ID_BYTES_MAX;
use crate::reservation::HoldLines;
use crate::view::{LineRef, LineRefs, LineView};

/// Ids up to this many bytes together (reservation, order and request id) are kept in the
/// record itself, so in the reservation's slot: a uuid reservation id with an order id of
/// up to 56 bytes needs no allocation. Sized so that a slot is three cache lines (asserted
/// at `reservation::Slot`): with the lengths and `has_request` the inline part is 96 bytes,
/// without padding.
const IDS_INLINE: usize = 92;

/// Texts of a view up to this many bytes in total (ids and line names) are stored inline.
const TEXTS_INLINE: usize = 64;

// Id lengths are stored in 8 bits.
const _: () = assert!(ID_BYTES_MAX <= u8::MAX as usize);

/// What readers see of a reservation's fixed part: its ids and its lines as views show
/// them (names and quantities), copied, so that a view needs nothing from the engine.
#[derive(Debug)]
pub struct RecordTexts {
    /// Reservation id, order id, then each line's sku and location, back to back.
    texts: Texts,
    order_start: u32,
    lines_start: u32,
    /// Per line: where its sku and its location end in `texts`, and its quantity.
    line_ends: LineEnds,
}

/// A copy made byte-wise (`SmallVec`'s own clone goes element by element).
impl Clone for RecordTexts {
    fn clone(&self) -> RecordTexts {
        RecordTexts {
            texts: SmallVec::from_slice(&self.texts),
            order_start: self.order_start,
            lines_start: self.lines_start,
            line_ends: SmallVec::from_slice(&self.line_ends),
        }
    }
}

/// What never changes about a reservation once made.
#[derive(Debug)]
pub struct ReservationRecord {
    /// Reservation id, order id, request id, back to back, when they fit; else in
    /// `ids_spilled`. (A plain array rather than a `SmallVec`: written in place with two
    /// or three copies, where `SmallVec::extend_from_slice` took 49 instructions each.)
    ids_inline: [u8; IDS_INLINE],
    /// Behind a thin pointer: spilling is rare, and a fat pointer here took 8 bytes more of
    /// every slot (208 bytes, four cache lines touched by every reserve and eviction).
    #[allow(clippy::redundant_allocation)]
    ids_spilled: Option<Box<Box<[u8]>>>,
    /// Lengths of the reservation, order and request id (each at most ID_BYTES_MAX).
    lengths: [u8; 3],
    has_request: bool,
    /// The items held, one line per item.
    pub holds: HoldLines,
    pub created_at_ms: i64,
}

/// Per line: where its sku and its location end in the texts, and its quantity.
type LineEnds = SmallVec<[(u32, u32, u64); 1]>;

/// A view's texts: ids and line names.
type Texts = SmallVec<[u8; TEXTS_INLINE]>;

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
    /// The texts of a reservation with ids `reservation_id`, `order_id` and `lines` as
    /// views show them (names and quantities).
    pub fn of_lines<'a>(
        reservation_id: &str,
        order_id: &str,
        lines: impl Iterator<Item = LineRef<'a>>,
    ) -> RecordTexts {
        let mut texts = Texts::from_slice(reservation_id.as_bytes());
        texts.extend_from_slice(order_id.as_bytes());
        RecordTexts::with_lines(texts, reservation_id.len(), lines)
    }

    /// `of_lines` from the record's ids (bytes stored from `&str`s, copied as they are:
    /// a view is built for every call through the binding, and checking their UTF-8 again
    /// took 240 instructions of such a call, callgrind).
    pub fn of_record<'a>(
        record: &ReservationRecord,
        lines: impl Iterator<Item = LineRef<'a>>,
    ) -> RecordTexts {
        let [reservation, order, _] = record.id_lengths();
        let texts = Texts::from_slice(&record.id_texts()[..reservation + order]);
        RecordTexts::with_lines(texts, reservation, lines)
    }

    /// `texts` holding the reservation id (up to `order_start`) and the order id, followed
    /// by the names of `lines`.
    fn with_lines<'a>(
        mut texts: Texts,
        order_start: usize,
        lines: impl Iterator<Item = LineRef<'a>>,
    ) -> RecordTexts {
        let lines_start = texts.len();
        let mut line_ends = LineEnds::new();
        for line in lines {
            texts.extend_from_slice(line.sku.as_bytes());
            let sku_end = texts.len();
            // Locations are often empty: skip the call to copy nothing.
            if !line.location.is_empty() {
                texts.extend_from_slice(line.location.as_bytes());
            }
            // Ids and names are bounded at the edge; outcomes read back at recovery are
            // only parsed.
            assert!(texts.len() <= u32::MAX as usize, "texts beyond 4 GiB");
            line_ends.push((sku_end as u32, texts.len() as u32, line.quantity));
        }
        RecordTexts {
            texts,
            order_start: order_start as u32,
            lines_start: lines_start as u32,
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

    pub fn order_id(&self) -> &str {
        self.text(self.order_start, self.lines_start as usize)
    }
}

impl ReservationRecord {
    /// A record of `holds` with no ids yet: `write_ids` gives them, once it is where it is
    /// kept (writing the ids there, not into a value moved into the slot afterwards).
    pub fn without_ids(holds: HoldLines, created_at_ms: i64) -> ReservationRecord {
        ReservationRecord {
            ids_inline: [0; IDS_INLINE],
            ids_spilled: None,
            lengths: [0; 3],
            has_request: false,
            holds,
            created_at_ms,
        }
    }

    /// Writes the ids of a record made `without_ids`; each is at most ID_BYTES_MAX bytes
    /// (checked at the edge).
    pub fn write_ids(&mut self, reservation_id: &str, order_id: &str, request_id: Option<&str>) {
        assert_eq!(self.lengths, [0; 3], "ids written once");
        let request = request_id.unwrap_or("");
        let ids = [reservation_id, order_id, request].map(str::as_bytes);
        self.lengths = ids.map(|id| {
            assert!(id.len() <= ID_BYTES_MAX, "ids are bounded at the edge");
            id.len() as u8
        });
        self.has_request = request_id.is_some();
        let total: usize = ids.iter().map(|id| id.len()).sum();
        let mut spilled = (total > IDS_INLINE).then(|| Box::new(vec![0; total].into_boxed_slice()));
        let buffer = match &mut spilled {
            Some(heap) => &mut heap[..],
            None => &mut self.ids_inline[..total],
        };
        let mut start = 0;
        for id in ids {
            // Request ids are usually absent: skip the call to copy nothing.
            if !id.is_empty() {
                buffer[start..start + id.len()].copy_from_slice(id);
                start += id.len();
            }
        }
        self.ids_spilled = spilled;
    }

    /// A record of `holds` with its ids.
    pub fn new(
        reservation_id: &str,
        order_id: &str,
        request_id: Option<&str>,
        holds: HoldLines,
        created_at_ms: i64,
    ) -> ReservationRecord {
        let mut record = ReservationRecord::without_ids(holds, created_at_ms);
        record.write_ids(reservation_id, order_id, request_id);
        record
    }

    /// The ids back to back (as `id_lengths` split them), for copying all three at once.
    pub fn id_texts(&self) -> &[u8] {
        match &self.ids_spilled {
            Some(ids) => ids,
            None => {
                let total = self.lengths.iter().map(|&length| length as usize).sum();
                &self.ids_inline[..total]
            }
        }
    }

    /// The lengths of the reservation, order and request id (0: none) in `id_texts`.
    pub fn id_lengths(&self) -> [usize; 3] {
        self.lengths.map(usize::from)
    }

    /// Id `index` (0: reservation, 1: order, 2: request) as bytes.
    fn id_bytes(&self, index: usize) -> &[u8] {
        let lengths = self.id_lengths();
        let start: usize = lengths[..index].iter().sum();
        &self.id_texts()[start..start + lengths[index]]
    }

    /// Id `index`; each was stored from a whole `&str`.
    fn id(&self, index: usize) -> &str {
        std::str::from_utf8(self.id_bytes(index)).expect("stored from str")
    }

    pub fn reservation_id(&self) -> &str {
        self.id(0)
    }

    /// The reservation id as bytes, for comparing without decoding: the first id, read
    /// without summing the lengths before it or after it (`id_bytes`), as every release,
    /// commit and read compares it once to find its reservation.
    pub fn reservation_id_bytes(&self) -> &[u8] {
        let length = usize::from(self.lengths[0]);
        match &self.ids_spilled {
            Some(ids) => &ids[..length],
            None => &self.ids_inline[..length],
        }
    }

    pub fn order_id(&self) -> &str {
        self.id(1)
    }

    /// The request that created the reservation, written to its row.
    pub fn request_id(&self) -> Option<&str> {
        self.has_request.then(|| self.id(2))
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
