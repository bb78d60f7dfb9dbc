//! Whole-state invariant checks, for tests and debug builds. O(state): never on a hot path.

use rustc_hash::FxHashMap;

use super::Engine;
use crate::item::ItemIndex;
use crate::limits::ON_HAND_MAX;
use crate::reservation::Status;

impl Engine {
    /// After each operation (debug builds): each touched item's reserved equals the sum of
    /// its live holds. O(holds on the item), so release builds skip it.
    pub(super) fn debug_check_items(&self, items: impl Iterator<Item = ItemIndex>) {
        if !cfg!(debug_assertions) {
            return;
        }
        for index in items {
            let item = self.items.get(index);
            item.reserved_checked();
            let live: Vec<_> = item
                .holds
                .iter()
                .filter(|entry| super::expire::hold_entry_live(&self.reservations, entry))
                .collect();
            let held: u64 = live.iter().map(|entry| entry.quantity).sum();
            assert_eq!(
                item.reserved, held,
                "item {index}: reserved != sum of its holds"
            );
            assert_eq!(
                item.holds.live as usize,
                live.len(),
                "item {index}: live hold count"
            );
        }
    }

    /// Panics with a description if any invariant does not hold:
    /// 0 <= reserved <= on_hand <= ON_HAND_MAX, each item's reserved equals the sum of its
    /// active holds, hold counts and table counts agree, and tables are within their bounds.
    pub fn check_invariants(&self) {
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
        for index in 0..self.items.len() as ItemIndex {
            let item = self.items.get(index);
            assert!(item.reserved <= item.on_hand && item.on_hand <= ON_HAND_MAX);
            let (quantity, holds) = held.get(&index).copied().unwrap_or((0, 0));
            assert_eq!(
                item.reserved, quantity,
                "item {index} reserved != sum of its holds"
            );
            assert_eq!(item.holds.live, holds, "item {index} live hold count");
            assert!(
                item.holds.len() >= holds as usize,
                "item {index} heap lost a hold"
            );
        }
    }
}
