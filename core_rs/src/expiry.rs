//! The global time-ordered queue of holds, for `expire_due` and `next_expiry_ms`.
//!
//! A binary min-heap with lazy deletion: ending or extending a hold leaves its entry behind;
//! entries are validated against the reservation when they reach the top, and the heap is
//! compacted when stale entries outnumber live holds, so memory stays proportional to them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpiryEntry {
    pub expires_at_ms: i64,
    pub slot: u32,
    pub generation: u32,
}

const STALE_FACTOR: usize = 2;
const STALE_SLACK: usize = 1_024;

#[derive(Debug, Default)]
pub struct ExpiryQueue {
    heap: BinaryHeap<Reverse<ExpiryEntry>>,
}

impl ExpiryQueue {
    pub fn push(&mut self, entry: ExpiryEntry) {
        self.heap.push(Reverse(entry));
    }

    pub fn peek(&self) -> Option<ExpiryEntry> {
        self.heap.peek().map(|entry| entry.0)
    }

    pub fn pop(&mut self) -> Option<ExpiryEntry> {
        self.heap.pop().map(|entry| entry.0)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Makes room for `entries` in all, so that pushing up to that many never copies the
    /// heap into a larger array under a call.
    pub fn reserve_total(&mut self, entries: usize) {
        self.heap.reserve(entries.saturating_sub(self.heap.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn needs_compaction(&self, live: usize) -> bool {
        self.heap.len() > STALE_FACTOR * live + STALE_SLACK
    }

    pub fn compact(&mut self, is_live: impl Fn(&ExpiryEntry) -> bool) {
        self.heap.retain(|entry| is_live(&entry.0));
    }

    /// Drops every entry at once, without reading the reservations they name. Only when
    /// no hold is active, so that every entry is stale (`is_live` asserts it in debug
    /// builds).
    pub fn clear_stale(&mut self, is_live: impl Fn(&ExpiryEntry) -> bool) {
        debug_assert!(self.heap.iter().all(|entry| !is_live(&entry.0)));
        self.heap.clear();
    }
}
