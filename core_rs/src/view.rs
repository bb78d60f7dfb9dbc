//! What operations return: plain Rust values the binding converts, and the idempotency
//! store keeps as outcome snapshots.

use std::sync::Arc;

use crate::reservation::Status;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineView {
    pub sku: Arc<str>,
    pub location: Arc<str>,
    pub quantity: u64,
}

/// Lines of a view: shared with the reservation (a view copies no lines), or none at all,
/// which needs no allocation and no reference count. Reads as a slice.
#[derive(Clone, Debug, Default)]
pub struct ViewLines(Option<Arc<[LineView]>>);

impl std::ops::Deref for ViewLines {
    type Target = [LineView];

    fn deref(&self) -> &[LineView] {
        self.0.as_deref().unwrap_or(&[])
    }
}

impl PartialEq for ViewLines {
    fn eq(&self, other: &ViewLines) -> bool {
        **self == **other
    }
}

impl Eq for ViewLines {}

impl From<Vec<LineView>> for ViewLines {
    fn from(lines: Vec<LineView>) -> ViewLines {
        if lines.is_empty() {
            return ViewLines(None);
        }
        ViewLines(Some(Arc::from(lines)))
    }
}

impl FromIterator<LineView> for ViewLines {
    /// One allocation of exactly the lines' size when the count is known up front.
    fn from_iter<I: IntoIterator<Item = LineView>>(lines: I) -> ViewLines {
        let lines: Arc<[LineView]> = lines.into_iter().collect();
        if lines.is_empty() {
            return ViewLines(None);
        }
        ViewLines(Some(lines))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationView {
    pub reservation_id: Arc<str>,
    pub order_id: Arc<str>,
    pub status: Status,
    /// Every line held (as reserved). Shared with the reservation, so a view does not copy
    /// its lines.
    pub lines: ViewLines,
    /// Committed quantities, only lines with a quantity above zero; empty unless committed.
    pub committed_lines: ViewLines,
    pub expires_at_ms: i64,
    pub lsn: u64,
    pub replayed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Level {
    pub sku: Arc<str>,
    pub location: Arc<str>,
    pub on_hand: u64,
    pub reserved: u64,
    pub available: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LevelsView {
    pub levels: Vec<Level>,
    pub lsn: u64,
    pub replayed: bool,
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
