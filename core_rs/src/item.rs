//! Stock items: interned (sku, location) keys, levels, and each item's time-ordered holds.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::lazy_heap::LazyHeap;
use crate::limits::ON_HAND_MAX;

/// Index of an item in the item table; items are never removed during an engine's life.
pub type ItemIndex = u32;

/// One hold of one reservation on one item, ordered by expiry. Entries go stale when the
/// reservation ends or is extended; they are checked against the reservation before use and
/// swept out a few at a time (see `ItemHolds::tidy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HoldEntry {
    pub expires_at_ms: i64,
    pub slot: u32,
    pub generation: u32,
    pub quantity: u64,
}

#[derive(Debug)]
pub struct Item {
    pub sku: Arc<str>,
    pub location: u32,
    pub on_hand: u64,
    pub reserved: u64,
    /// Units kept back from sale (set by an operator): reserves and decrements see only what
    /// lies above it. It may exceed what is left (a count or write-off can go below it); the
    /// item then has nothing available, and nothing else changes.
    pub safety_stock: u64,
    /// LSN of the last change of this item's levels (0: loaded at recovery).
    pub last_lsn: u64,
    pub holds: ItemHolds,
}

impl Item {
    /// What a reserve or a decrement may take: on hand, less what is held, less the
    /// safety stock (0 when the safety stock is more than what is not held).
    pub fn available(&self) -> u64 {
        self.reserved_checked();
        available(self.on_hand, self.reserved, self.safety_stock)
    }

    /// The level invariant; asserted after every write of an item.
    pub fn reserved_checked(&self) {
        assert!(
            self.reserved <= self.on_hand
                && self.on_hand <= ON_HAND_MAX
                && self.safety_stock <= ON_HAND_MAX,
            "item invariant broken: reserved {} on_hand {} safety_stock {}",
            self.reserved,
            self.on_hand,
            self.safety_stock
        );
    }
}

/// Available stock from levels where `reserved <= on_hand`: what is not held and not kept
/// back as safety stock.
pub fn available(on_hand: u64, reserved: u64, safety_stock: u64) -> u64 {
    debug_assert!(reserved <= on_hand);
    (on_hand - reserved).saturating_sub(safety_stock)
}

/// The holds of one item as a min-heap by expiry, so the due ones are found at the top.
#[derive(Debug, Default)]
pub struct ItemHolds {
    heap: LazyHeap<HoldEntry, SWEEP_SLACK>,
    /// Holds that are live (entries in `heap` beyond this count are stale).
    pub live: u32,
}

/// Stale entries an item's heap may hold beyond `STALE_FACTOR` times its live holds before
/// a sweep starts.
const SWEEP_SLACK: usize = 8;

impl ItemHolds {
    pub fn push(&mut self, entry: HoldEntry) {
        self.heap.push(entry);
        self.live += 1;
    }

    /// A hold ended (released, committed, expired, or replaced by an extend). When it was
    /// the item's last, every entry left is stale: they are dropped at once, without
    /// reading the reservations they name (long finished, their slots seldom cached), and
    /// the next hold on the item finds an empty heap.
    pub fn ended(&mut self) {
        assert!(self.live > 0, "item hold count underflow");
        self.live -= 1;
        if self.live == 0 {
            self.heap.clear();
        }
    }

    pub fn peek(&self) -> Option<HoldEntry> {
        self.heap.peek()
    }

    pub fn pop(&mut self) -> Option<HoldEntry> {
        self.heap.pop()
    }

    pub fn iter(&self) -> impl Iterator<Item = &HoldEntry> {
        self.heap.iter()
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// True while a sweep of stale entries is under way.
    pub fn sweeping(&self) -> bool {
        self.heap.sweeping()
    }

    /// The heap order (O(heap), for invariant checks).
    pub fn is_ordered(&self) -> bool {
        self.heap.is_ordered()
    }

    /// One bounded step of dropping stale entries (`LazyHeap::tidy`), after a hold ended.
    pub fn tidy(&mut self, is_live: impl Fn(&HoldEntry) -> bool, ahead: impl Fn(&HoldEntry)) {
        self.heap.tidy(self.live as usize, is_live, ahead);
    }
}

/// Skus up to this many bytes are kept in the index entry itself, so finding an item
/// compares against bytes next to the probed entry instead of following a pointer to a
/// string that is usually not cached.
const SKU_INLINE_BYTES: usize = 24;

/// Items of one location by sku (as bytes).
type SkuIndex = FxHashMap<SmallVec<[u8; SKU_INLINE_BYTES]>, ItemIndex>;

/// The item table: locations are interned once (most items share a few), skus per location.
#[derive(Debug, Default)]
pub struct Items {
    pub items: Vec<Item>,
    pub locations: Vec<Arc<str>>,
    /// Location index by name.
    by_location: FxHashMap<Arc<str>, u32>,
    /// Per location index, its items by sku.
    skus: Vec<SkuIndex>,
    /// The index of the default location (""), which most lines name: finding it needs no
    /// hashing.
    default_location: Option<u32>,
}

impl Items {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn find(&self, sku: &str, location: &str) -> Option<ItemIndex> {
        let location = match location {
            "" => self.default_location?,
            _ => *self.by_location.get(location)?,
        };
        self.skus[location as usize].get(sku.as_bytes()).copied()
    }

    /// Adds a new item with zero levels; the caller checked it is absent and within capacity.
    pub fn insert(&mut self, sku: &str, location: &str) -> ItemIndex {
        debug_assert!(self.find(sku, location).is_none());
        let index = self.items.len() as ItemIndex;
        let location_index = match self.by_location.get(location) {
            Some(&location_index) => location_index,
            None => {
                let name: Arc<str> = Arc::from(location);
                let location_index = self.locations.len() as u32;
                self.locations.push(name.clone());
                self.by_location.insert(name, location_index);
                self.skus.push(SkuIndex::default());
                if location.is_empty() {
                    self.default_location = Some(location_index);
                }
                location_index
            }
        };
        let skus = &mut self.skus[location_index as usize];
        skus.insert(SmallVec::from_slice(sku.as_bytes()), index);
        let sku: Arc<str> = Arc::from(sku);
        self.items.push(Item {
            sku,
            location: location_index,
            on_hand: 0,
            reserved: 0,
            safety_stock: 0,
            last_lsn: 0,
            holds: ItemHolds::default(),
        });
        index
    }

    pub fn get(&self, index: ItemIndex) -> &Item {
        &self.items[index as usize]
    }

    pub fn get_mut(&mut self, index: ItemIndex) -> &mut Item {
        &mut self.items[index as usize]
    }

    pub fn location_of(&self, index: ItemIndex) -> &Arc<str> {
        &self.locations[self.items[index as usize].location as usize]
    }

    /// (sku, location) of an item, as shared strings for views and journal rows.
    pub fn key(&self, index: ItemIndex) -> (Arc<str>, Arc<str>) {
        let item = self.get(index);
        (
            item.sku.clone(),
            self.locations[item.location as usize].clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(slot: u32) -> HoldEntry {
        HoldEntry {
            expires_at_ms: 10,
            slot,
            generation: 0,
            quantity: 1,
        }
    }

    /// Entries go stale lazily while other holds live; once the last hold ends, none is
    /// left to look at.
    #[test]
    fn the_last_hold_ending_drops_every_entry() {
        let mut holds = ItemHolds::default();
        holds.push(entry(1));
        holds.push(entry(2));
        holds.ended();
        assert_eq!((holds.len(), holds.live), (2, 1));
        holds.ended();
        assert!(holds.is_empty());
        assert_eq!(holds.live, 0);
    }
}
