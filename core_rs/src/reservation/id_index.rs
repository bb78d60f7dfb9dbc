//! The reservation id index: slot numbers by id hash, in one flat array.
//!
//! Open addressing with linear probing over a power-of-two array of 8-byte entries, kept at
//! most half full. An entry holds the id's 32-bit hash and the slot number; ids themselves
//! are compared through the slab by the caller. Unlike a general hash table, the bucket an
//! id will be probed at is known from its hash alone, so a caller can start loading it
//! (`prefetch`) well before it probes; entries are removed with backward shifting (no
//! tombstones), so the index holds exactly the stored reservations and never needs a purge.

use crate::prefetch::prefetch;

/// Marks an empty bucket; a stored entry always has a slot part of at least 1.
const EMPTY: u64 = 0;
/// The smallest array allocated (a fresh engine).
const BUCKETS_MIN: usize = 16;
/// Buckets (8 bytes each) per 64-byte cache line.
const BUCKETS_PER_LINE: usize = 8;

#[derive(Debug)]
pub(super) struct IdIndex {
    buckets: Box<[u64]>,
    /// `buckets.len() - 1`.
    mask: usize,
    /// log2 of `buckets.len()`.
    bits: u32,
    len: usize,
}

impl Default for IdIndex {
    fn default() -> IdIndex {
        IdIndex::with_buckets(BUCKETS_MIN)
    }
}

fn entry(hash: u32, slot: u32) -> u64 {
    (u64::from(hash) << 32) | (u64::from(slot) + 1)
}

fn entry_hash(entry: u64) -> u32 {
    (entry >> 32) as u32
}

fn entry_slot(entry: u64) -> u32 {
    ((entry & 0xffff_ffff) - 1) as u32
}

impl IdIndex {
    fn with_buckets(count: usize) -> IdIndex {
        assert!(count.is_power_of_two() && count >= BUCKETS_MIN);
        IdIndex {
            buckets: vec![EMPTY; count].into_boxed_slice(),
            mask: count - 1,
            bits: count.trailing_zeros(),
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The bucket where probing for `hash` starts: the top bits of a multiplicative hash,
    /// so that ids whose 32-bit hashes differ only in high bits still spread.
    fn home(&self, hash: u32) -> usize {
        let spread = u64::from(hash).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (spread >> (64 - self.bits)) as usize
    }

    /// Starts loading the bucket `hash` is probed at, and the one a cache line further:
    /// a probe run (and a removal's backward shift, which scans to the run's end) often
    /// crosses into the next line.
    pub(super) fn prefetch(&self, hash: u32) {
        let home = self.home(hash);
        prefetch(&self.buckets[home]);
        prefetch(&self.buckets[(home + BUCKETS_PER_LINE) & self.mask]);
    }

    /// The slot of the entry with `hash` that `is_id` accepts. Every probe loop ends: the
    /// array is never more than half full, so an empty bucket always follows.
    pub(super) fn find(&self, hash: u32, is_id: impl Fn(u32) -> bool) -> Option<u32> {
        let mut position = self.home(hash);
        loop {
            let entry = self.buckets[position];
            if entry == EMPTY {
                return None;
            }
            if entry_hash(entry) == hash && is_id(entry_slot(entry)) {
                return Some(entry_slot(entry));
            }
            position = (position + 1) & self.mask;
        }
    }

    /// Adds `slot` under `hash`. The caller checked the id is absent; placing the entry
    /// passes every entry that could hold it anyway, so that is asserted (`is_id`, as for
    /// `find`) at the cost of comparing the rare entries with the same hash.
    pub(super) fn insert(&mut self, hash: u32, slot: u32, is_id: impl Fn(u32) -> bool) {
        assert!(slot < u32::MAX, "slot number beyond the index");
        if 2 * (self.len + 1) > self.buckets.len() {
            self.reserve_total(self.len + 1);
        }
        self.place(entry(hash, slot), is_id);
        self.len += 1;
    }

    fn place(&mut self, new: u64, is_id: impl Fn(u32) -> bool) {
        let hash = entry_hash(new);
        let mut position = self.home(hash);
        loop {
            let entry = self.buckets[position];
            if entry == EMPTY {
                break;
            }
            assert!(
                entry_hash(entry) != hash || !is_id(entry_slot(entry)),
                "duplicate reservation id"
            );
            position = (position + 1) & self.mask;
        }
        self.buckets[position] = new;
    }

    /// Makes room for `entries` in all (the array at most half full), doubling the array as
    /// often as that takes and moving every entry into the new one.
    pub(super) fn reserve_total(&mut self, entries: usize) {
        let mut count = self.buckets.len();
        while 2 * entries > count {
            count *= 2;
        }
        if count == self.buckets.len() {
            return;
        }
        let mut grown = IdIndex::with_buckets(count);
        for &entry in self.buckets.iter().filter(|&&entry| entry != EMPTY) {
            // Entries already in the index are distinct.
            grown.place(entry, |_| false);
        }
        grown.len = self.len;
        *self = grown;
    }

    /// Buckets in the array (a power of two).
    #[cfg(test)]
    fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Entries the index holds before it grows.
    pub(super) fn capacity(&self) -> usize {
        self.buckets.len() / 2
    }

    /// Removes the entry of `slot` (stored under `hash`), shifting later entries of its
    /// probe run back so that no lookup stops early at the hole.
    pub(super) fn remove(&mut self, hash: u32, slot: u32) {
        let wanted = entry(hash, slot);
        let mut hole = self.home(hash);
        loop {
            let entry = self.buckets[hole];
            assert_ne!(entry, EMPTY, "removing a slot the index does not hold");
            if entry == wanted {
                break;
            }
            hole = (hole + 1) & self.mask;
        }
        let mut position = (hole + 1) & self.mask;
        loop {
            let entry = self.buckets[position];
            if entry == EMPTY {
                break;
            }
            // The entry may fill the hole when the hole lies on its probe path, i.e. is no
            // further from the entry's home than the entry itself.
            let home = self.home(entry_hash(entry));
            let distance = position.wrapping_sub(home) & self.mask;
            if position.wrapping_sub(hole) & self.mask <= distance {
                self.buckets[hole] = entry;
                hole = position;
            }
            position = (position + 1) & self.mask;
        }
        self.buckets[hole] = EMPTY;
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Room made in advance holds that many entries without growing, and what the index
    /// held before is still found.
    #[test]
    fn reserved_room_takes_its_entries_without_growing() {
        let mut index = IdIndex::default();
        for slot in 0..10u32 {
            index.insert(slot % 3, slot, |_| false);
        }
        index.reserve_total(1_000);
        let buckets = index.buckets();
        assert!(buckets >= 2 * 1_000 && buckets.is_power_of_two());
        for slot in 10..1_000u32 {
            index.insert(slot % 3, slot, |_| false);
        }
        assert_eq!(index.buckets(), buckets, "grew below the reserved room");
        for slot in 0..1_000u32 {
            assert_eq!(
                index.find(slot % 3, |candidate| candidate == slot),
                Some(slot)
            );
        }
        // The array rounded up to a power of two: it takes half its buckets, then grows.
        let half = (buckets / 2) as u32;
        for slot in 1_000..half {
            index.insert(slot % 3, slot, |_| false);
        }
        assert_eq!(index.buckets(), buckets);
        index.insert(0, half, |_| false);
        assert!(index.buckets() > buckets, "grows past the reserved room");
        index.reserve_total(10);
        assert!(index.buckets() > buckets, "never shrinks");
    }

    /// Every present (hash, slot) is found, every removed one is not, under heavy
    /// collisions (few distinct hashes) and across growth.
    #[test]
    fn finds_what_it_holds_after_removals() {
        let mut index = IdIndex::default();
        let mut present = std::collections::HashSet::new();
        let hash_of = |slot: u32| slot.wrapping_mul(2_654_435_761) % 7;
        for slot in 0..2_000u32 {
            index.insert(hash_of(slot), slot, |_| false);
            present.insert(slot);
            if slot % 3 == 0 {
                let gone = slot / 2;
                if present.remove(&gone) {
                    index.remove(hash_of(gone), gone);
                }
            }
        }
        assert_eq!(index.len(), present.len());
        for slot in 0..2_000u32 {
            let found = index.find(hash_of(slot), |candidate| candidate == slot);
            assert_eq!(found.is_some(), present.contains(&slot), "slot {slot}");
        }
        for &slot in present.clone().iter() {
            index.remove(hash_of(slot), slot);
        }
        assert_eq!(index.len(), 0);
        assert!(index.buckets.iter().all(|&entry| entry == EMPTY));
    }

    #[test]
    #[should_panic(expected = "duplicate reservation id")]
    fn inserting_an_id_twice_is_a_bug() {
        let mut index = IdIndex::default();
        index.insert(7, 1, |_| false);
        index.insert(7, 2, |slot| slot == 1);
    }
}
