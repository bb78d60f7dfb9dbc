//! Whole-state invariant checks, for tests and debug builds. O(state): never on a hot path.

use rustc_hash::FxHashMap;

use super::Engine;
use crate::item::ItemIndex;
use crate::reservation::Status;

impl Engine {
    /// After each operation (debug builds): each touched item's reserved equals the sum of
    /// its live holds. O(holds on the item), so release builds skip it.
    pub(super) fn debug_check_items(&self, items: impl Iterator<Item = ItemIndex>) {
        if !cfg!(debug_assertions) {
            return;
        }
        for index in items {
            self.check_item_holds(index);
        }
    }

    /// An item's level invariant, and its heap against its levels: the live entries (one per
    /// live hold: an extend's new generation makes the earlier entry stale) number
    /// `holds.live` and sum to `reserved`, and the heap is in order.
    fn check_item_holds(&self, index: ItemIndex) {
        let item = self.items.get(index);
        item.reserved_checked();
        let (mut live, mut held) = (0u32, 0u64);
        for entry in item.holds.iter() {
            if super::expire::hold_entry_live(&self.reservations, entry) {
                live += 1;
                held += entry.quantity;
            }
        }
        assert_eq!(
            item.reserved, held,
            "item {index}: reserved != sum of its holds"
        );
        assert_eq!(item.holds.live, live, "item {index}: live hold count");
        assert!(item.holds.is_ordered(), "item {index}: heap out of order");
    }

    /// Panics with a description if any invariant does not hold:
    /// 0 <= reserved <= on_hand <= ON_HAND_MAX, each item's reserved equals the sum of its
    /// active holds, hold counts and table counts agree, tables are within their bounds, and
    /// every expiry heap (each item's and the global queue) is in order with exactly one
    /// live entry per active hold. Returns how many item heaps were mid-sweep, so that tests
    /// can tell whether they reached the sweeps.
    pub fn check_invariants(&self) -> usize {
        let mut held: FxHashMap<ItemIndex, (u64, u32)> = FxHashMap::default();
        let (mut active, mut terminal) = (0usize, 0usize);
        for (_, reservation) in self.reservations.iter() {
            if reservation.status != Status::Active {
                terminal += 1;
                continue;
            }
            active += 1;
            for line in reservation.lines() {
                let entry = held.entry(line.item).or_default();
                entry.0 += line.quantity;
                entry.1 += 1;
            }
        }
        assert_eq!(active, self.reservations.active_count, "active count");
        assert_eq!(terminal, self.reservations.terminal_count, "terminal count");
        assert!(
            active <= self.config.reservations_active_max,
            "active bound"
        );
        assert!(
            terminal <= self.config.reservations_terminal_max,
            "terminal bound"
        );
        assert!(self.items.len() <= self.config.items_max, "items bound");
        assert!(
            self.idempotency.len() <= self.config.idempotency_records_max,
            "records bound"
        );
        let mut items_sweeping = 0;
        for index in 0..self.items.len() as ItemIndex {
            let item = self.items.get(index);
            let (quantity, holds) = held.get(&index).copied().unwrap_or((0, 0));
            assert_eq!(
                item.reserved, quantity,
                "item {index} reserved != sum of its holds"
            );
            assert_eq!(item.holds.live, holds, "item {index} live hold count");
            self.check_item_holds(index);
            items_sweeping += usize::from(item.holds.sweeping());
        }
        let queued_live = self
            .expiry
            .iter()
            .filter(|entry| super::expire::expiry_entry_live(&self.reservations, entry))
            .count();
        assert_eq!(queued_live, active, "expiry queue: one live entry per hold");
        assert!(self.expiry.is_ordered(), "expiry queue out of order");
        items_sweeping
    }
}
