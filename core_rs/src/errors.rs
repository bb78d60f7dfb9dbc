//! Operating errors: values the caller handles. Bugs are assertions, not errors.

use std::fmt;
use std::sync::Arc;

use crate::reservation::Status;

/// One short item of a refused reserve or decrement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortfall {
    pub sku: Arc<str>,
    pub location: Arc<str>,
    pub requested: u64,
    pub available: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineError {
    /// An input is outside a named limit; `bound` is the limit it crossed.
    LimitExceeded {
        field: &'static str,
        bound: u64,
    },
    /// An input is well-formed but not acceptable, e.g. commit of an item not held.
    InvalidRequest {
        field: &'static str,
        message: String,
    },
    ShortStock {
        shortfalls: Vec<Shortfall>,
    },
    UnknownItem {
        items: Vec<(String, String)>,
    },
    UnknownReservation {
        reservation_id: String,
    },
    WrongState {
        reservation_id: String,
        status: Status,
        operation: &'static str,
    },
    OnHandBelowReserved {
        sku: String,
        location: String,
        on_hand: i64,
        reserved: u64,
    },
    ExpectedMismatch {
        sku: String,
        location: String,
        expected: u64,
        actual: u64,
    },
    IdempotencyConflict {
        request_id: String,
    },
    ReservationExists {
        reservation_id: String,
    },
    CapacityExceeded {
        what: &'static str,
    },
    RecoveryMismatch {
        message: String,
    },
}

impl EngineError {
    /// The short stable string carried as `.code` in Python.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::LimitExceeded { .. } => "limit_exceeded",
            EngineError::InvalidRequest { .. } => "invalid_request",
            EngineError::ShortStock { .. } => "short_stock",
            EngineError::UnknownItem { .. } => "unknown_item",
            EngineError::UnknownReservation { .. } => "unknown_reservation",
            EngineError::WrongState { .. } => "wrong_state",
            EngineError::OnHandBelowReserved { .. } => "on_hand_below_reserved",
            EngineError::ExpectedMismatch { .. } => "expected_mismatch",
            EngineError::IdempotencyConflict { .. } => "idempotency_conflict",
            EngineError::ReservationExists { .. } => "reservation_exists",
            EngineError::CapacityExceeded { .. } => "capacity_exceeded",
            EngineError::RecoveryMismatch { .. } => "recovery_mismatch",
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::LimitExceeded { field, bound } => {
                write!(f, "{field} is outside its limit (bound {bound})")
            }
            EngineError::InvalidRequest { field, message } => write!(f, "{field}: {message}"),
            EngineError::ShortStock { shortfalls } => {
                write!(f, "short stock:")?;
                for s in shortfalls {
                    let (sku, location) = (&s.sku, &s.location);
                    let (requested, available) = (s.requested, s.available);
                    write!(
                        f,
                        " ({sku:?}, {location:?}) requested {requested} available {available};"
                    )?;
                }
                Ok(())
            }
            EngineError::UnknownItem { items } => write!(f, "unknown items: {items:?}"),
            EngineError::UnknownReservation { reservation_id } => {
                write!(f, "unknown reservation {reservation_id:?}")
            }
            EngineError::WrongState {
                reservation_id,
                status,
                operation,
            } => write!(
                f,
                "cannot {operation} reservation {reservation_id:?}: it is {}",
                status.as_str()
            ),
            EngineError::OnHandBelowReserved {
                sku,
                location,
                on_hand,
                reserved,
            } => write!(
                f,
                "on_hand {on_hand} of ({sku:?}, {location:?}) would fall below reserved {reserved}"
            ),
            EngineError::ExpectedMismatch {
                sku,
                location,
                expected,
                actual,
            } => write!(
                f,
                "on_hand of ({sku:?}, {location:?}) is {actual}, expected {expected}"
            ),
            EngineError::IdempotencyConflict { request_id } => write!(
                f,
                "request id {request_id:?} was already used with different parameters"
            ),
            EngineError::ReservationExists { reservation_id } => {
                write!(f, "reservation {reservation_id:?} already exists")
            }
            EngineError::CapacityExceeded { what } => write!(f, "capacity exceeded: {what}"),
            EngineError::RecoveryMismatch { message } => write!(f, "recovery mismatch: {message}"),
        }
    }
}

impl std::error::Error for EngineError {}

pub type EngineResult<T> = Result<T, EngineError>;
