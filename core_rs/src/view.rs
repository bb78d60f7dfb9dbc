//! What operations return: plain Rust values the binding converts, and the idempotency
//! store keeps as outcome snapshots.

use std::sync::Arc;

use smallvec::SmallVec;

use crate::record::{LineTexts, RecordTexts};
use crate::reservation::Status;

/// A line as a reader sees it. Owned (`Arc<str>` names) where it outlives the engine's
/// tables, as in an export; borrowed (`LineRef`) when read from a view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineView<S = Arc<str>> {
    pub sku: S,
    pub location: S,
    pub quantity: u64,
}

/// A line read from a view: names borrowed from the view's record.
pub type LineRef<'a> = LineView<&'a str>;

/// Lines read from a view: most reservations hold one item, kept inline.
pub type LineRefs<'a> = SmallVec<[LineRef<'a>; 1]>;

/// A reservation as a reader saw it, owned: it outlives the engine's lock (the binding
/// hands it to Python, the idempotency store keeps it). Operations answer with an
/// `Answer` instead; `Engine::view` builds the view of one on demand.
#[derive(Clone)]
pub struct ReservationView {
    /// A copy of the ids and lines (what readers see of the reservation's record).
    pub texts: RecordTexts,
    /// The committed lines (only quantities above zero), once committed. Boxed: most
    /// views have none, and a smaller view is cheaper to move into its Python object.
    pub committed: Option<Box<LineTexts>>,
    pub status: Status,
    pub expires_at_ms: i64,
    pub lsn: u64,
    pub replayed: bool,
}

impl ReservationView {
    /// A view not backed by a reservation in an engine (an outcome read back at
    /// recovery).
    pub fn detached(
        reservation_id: &str,
        order_id: &str,
        status: Status,
        lines: LineTexts,
        committed_lines: LineTexts,
        expires_at_ms: i64,
    ) -> ReservationView {
        let texts = RecordTexts::of_lines(reservation_id, order_id, lines.lines().into_iter());
        ReservationView {
            texts,
            committed: (!committed_lines.is_empty()).then(|| Box::new(committed_lines)),
            status,
            expires_at_ms,
            lsn: 0,
            replayed: false,
        }
    }

    pub fn reservation_id(&self) -> &str {
        self.texts.reservation_id()
    }

    pub fn order_id(&self) -> &str {
        self.texts.order_id()
    }

    /// Every line held (as reserved).
    pub fn lines(&self) -> LineRefs<'_> {
        self.texts.lines()
    }

    /// Committed quantities, only lines with a quantity above zero; empty unless committed.
    pub fn committed_lines(&self) -> LineRefs<'_> {
        self.committed
            .as_ref()
            .map_or_else(LineRefs::new, |committed| committed.lines())
    }
}

/// Views are equal when they show the same thing (what a reader sees), whichever records
/// they share.
impl PartialEq for ReservationView {
    fn eq(&self, other: &ReservationView) -> bool {
        self.reservation_id() == other.reservation_id()
            && self.order_id() == other.order_id()
            && self.status == other.status
            && self.lines() == other.lines()
            && self.committed_lines() == other.committed_lines()
            && self.expires_at_ms == other.expires_at_ms
            && self.lsn == other.lsn
            && self.replayed == other.replayed
    }
}

impl Eq for ReservationView {}

impl std::fmt::Debug for ReservationView {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ReservationView")
            .field("reservation_id", &self.reservation_id())
            .field("order_id", &self.order_id())
            .field("status", &self.status)
            .field("lines", &self.lines())
            .field("committed_lines", &self.committed_lines())
            .field("expires_at_ms", &self.expires_at_ms)
            .field("lsn", &self.lsn)
            .field("replayed", &self.replayed)
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Level {
    pub sku: Arc<str>,
    pub location: Arc<str>,
    pub on_hand: u64,
    pub reserved: u64,
    /// On hand less reserved less the safety stock, at least 0.
    pub available: u64,
    pub safety_stock: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LevelsView {
    pub levels: Vec<Level>,
    pub lsn: u64,
    pub replayed: bool,
}

/// Where a reservation operation left the reservation: enough to build its view
/// (`Engine::view`) while the engine has not changed it since, and nothing to drop. An
/// operation answers with this rather than a view so that a caller who needs only the
/// LSN or the status (the engine's own hot path, a benchmark) pays for no view; the
/// binding builds the view under the same lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Where the reservation is, and which one it is: a slot is reused after eviction,
    /// and a moved expiry gives the same reservation a new generation.
    pub(crate) slot: u32,
    pub(crate) generation: u32,
    pub(crate) status: Status,
    pub(crate) expires_at_ms: i64,
    pub(crate) lsn: u64,
}

/// What a reservation operation answers: a receipt of the reservation in the engine, or
/// the view remembered for a replayed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Receipt(Receipt),
    Replayed(ReplayedView),
}

/// A remembered view answering a replay: boxed, since replays are rare and the answer of
/// every other call stays small; dropped out of line, so that dropping an answer, almost
/// always a receipt, stays a test of its variant where it is dropped (inlined, the view's
/// drop made every answer's drop a call: 20 instructions per reserve + release pair).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayedView(Option<Box<ReservationView>>);

impl ReplayedView {
    pub fn new(view: ReservationView) -> ReplayedView {
        ReplayedView(Some(Box::new(view)))
    }
}

impl std::ops::Deref for ReplayedView {
    type Target = ReservationView;

    fn deref(&self) -> &ReservationView {
        self.0
            .as_deref()
            .expect("a replayed view is there until dropped")
    }
}

impl Drop for ReplayedView {
    #[inline(never)]
    fn drop(&mut self) {
        self.0.take();
    }
}

impl Answer {
    /// The status the caller saw (a due hold reads as expired).
    pub fn status(&self) -> Status {
        match self {
            Answer::Receipt(receipt) => receipt.status,
            Answer::Replayed(view) => view.status,
        }
    }

    pub fn expires_at_ms(&self) -> i64 {
        match self {
            Answer::Receipt(receipt) => receipt.expires_at_ms,
            Answer::Replayed(view) => view.expires_at_ms,
        }
    }

    /// The LSN of the change answered (of the first outcome, for a replay).
    pub fn lsn(&self) -> u64 {
        match self {
            Answer::Receipt(receipt) => receipt.lsn,
            Answer::Replayed(view) => view.lsn,
        }
    }

    pub fn replayed(&self) -> bool {
        match self {
            Answer::Receipt(_) => false,
            Answer::Replayed(view) => view.replayed,
        }
    }
}

/// The first outcome of an accepted request, kept for replays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Reservation(ReservationView),
    Levels(LevelsView),
}

impl Outcome {
    /// The outcome as a replay answers it: marked replayed, at the record's LSN.
    pub fn replayed(&self, lsn: u64) -> Outcome {
        match self {
            Outcome::Reservation(view) => Outcome::Reservation(ReservationView {
                lsn,
                replayed: true,
                ..view.clone()
            }),
            Outcome::Levels(view) => Outcome::Levels(LevelsView {
                lsn,
                replayed: true,
                ..view.clone()
            }),
        }
    }
}
