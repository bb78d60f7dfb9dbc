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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationView {
    pub reservation_id: Arc<str>,
    pub order_id: Arc<str>,
    pub status: Status,
    /// Every line held (as reserved).
    pub lines: Vec<LineView>,
    /// Committed quantities, only lines with a quantity above zero; empty unless committed.
    pub committed_lines: Vec<LineView>,
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
