//! The global time-ordered queue of holds, for `expire_due` and `next_expiry_ms`.
//!
//! One entry per reservation with a hold, in a `LazyHeap`: ending or extending a hold
//! leaves its entry behind; entries are checked against the reservation when they reach the
//! top, and swept out a few per new hold once stale entries outnumber live holds, so memory
//! stays proportional to them and no call pays for dropping them all at once.

use crate::lazy_heap::LazyHeap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpiryEntry {
    pub expires_at_ms: i64,
    pub slot: u32,
    pub generation: u32,
}

/// Stale entries the global queue may hold beyond `STALE_FACTOR` times the live holds
/// before a sweep starts: a few live holds do not make every push sweep.
pub const EXPIRY_SWEEP_SLACK: usize = 1_024;

pub type ExpiryQueue = LazyHeap<ExpiryEntry, EXPIRY_SWEEP_SLACK>;
