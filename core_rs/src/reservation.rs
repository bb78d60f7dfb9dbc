//! Reservations: a slab of records addressed by (slot, generation), an id index, and the
//! FIFO of terminal reservations retained for late commits, releases and reads.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::item::ItemIndex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Active,
    Committed,
    Released,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Committed => "committed",
            Status::Released => "released",
            Status::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "active" => Some(Status::Active),
            "committed" => Some(Status::Committed),
            "released" => Some(Status::Released),
            "expired" => Some(Status::Expired),
            _ => None,
        }
    }

    /// Only an active reservation may change, and only into a terminal status.
    pub fn can_become(self, next: Status) -> bool {
        self == Status::Active && next != Status::Active
    }
}

/// One item held by a reservation; a reservation has at most one line per item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldLine {
    pub item: ItemIndex,
    pub quantity: u64,
}

#[derive(Clone, Debug)]
pub struct Reservation {
    pub id: Arc<str>,
    pub order_id: Arc<str>,
    /// The request that created it, written to the reservation row.
    pub request_id: Option<Arc<str>>,
    pub status: Status,
    /// Shared with journal records, so journaling a reservation does not copy its lines.
    pub lines: Arc<[HoldLine]>,
    /// Committed quantity per line (same order as `lines`), once committed.
    pub committed: Option<Arc<[u64]>>,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// LSN of the last change (0: loaded at recovery).
    pub last_lsn: u64,
}

impl Reservation {
    /// Active and not yet due: the only state in which it counts as reserved.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.status == Status::Active && self.expires_at_ms > now_ms
    }

    /// The status a reader sees at `now_ms`: a due hold reads as expired before any sweep.
    pub fn status_at(&self, now_ms: i64) -> Status {
        if self.status == Status::Active && self.expires_at_ms <= now_ms {
            Status::Expired
        } else {
            self.status
        }
    }

    /// Moves to a terminal status, asserting the transition is legal.
    pub fn finish(&mut self, next: Status, now_ms: i64, lsn: u64) {
        assert!(
            self.status.can_become(next),
            "illegal reservation transition {:?} -> {:?}",
            self.status,
            next
        );
        self.status = next;
        self.updated_at_ms = now_ms;
        self.last_lsn = lsn;
    }
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    reservation: Option<Reservation>,
}

/// Slab of reservations with an id index and a bounded FIFO of terminal ones.
#[derive(Debug, Default)]
pub struct Reservations {
    slots: Vec<Slot>,
    free: Vec<u32>,
    by_id: FxHashMap<Arc<str>, u32>,
    terminal_order: VecDeque<(u32, u32)>,
    pub active_count: usize,
    pub terminal_count: usize,
}

impl Reservations {
    pub fn find(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    pub fn get(&self, slot: u32) -> &Reservation {
        self.slots[slot as usize]
            .reservation
            .as_ref()
            .expect("occupied slot")
    }

    pub fn get_mut(&mut self, slot: u32) -> &mut Reservation {
        self.slots[slot as usize]
            .reservation
            .as_mut()
            .expect("occupied slot")
    }

    pub fn generation(&self, slot: u32) -> u32 {
        self.slots[slot as usize].generation
    }

    /// The reservation at (slot, generation) if it is still that one.
    pub fn get_versioned(&self, slot: u32, generation: u32) -> Option<&Reservation> {
        let entry = self.slots.get(slot as usize)?;
        if entry.generation != generation {
            return None;
        }
        entry.reservation.as_ref()
    }

    /// Stores a new active reservation; the caller checked the id is absent and capacity.
    pub fn insert(&mut self, reservation: Reservation) -> u32 {
        assert_eq!(reservation.status, Status::Active);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let previous = self.by_id.insert(reservation.id.clone(), slot);
        assert!(previous.is_none(), "duplicate reservation id");
        let entry = &mut self.slots[slot as usize];
        assert!(entry.reservation.is_none());
        entry.reservation = Some(reservation);
        self.active_count += 1;
        slot
    }

    /// Records that the reservation at `slot` became terminal and evicts the oldest terminal
    /// reservations beyond `terminal_max`.
    pub fn retire(&mut self, slot: u32, terminal_max: usize) {
        assert!(self.get(slot).status != Status::Active);
        assert!(self.active_count > 0);
        self.active_count -= 1;
        self.terminal_count += 1;
        self.terminal_order.push_back((slot, self.generation(slot)));
        while self.terminal_count > terminal_max {
            let (oldest, generation) = self.terminal_order.pop_front().expect("terminal entry");
            self.evict(oldest, generation);
        }
    }

    fn evict(&mut self, slot: u32, generation: u32) {
        let entry = &mut self.slots[slot as usize];
        assert_eq!(
            entry.generation, generation,
            "terminal FIFO out of step with slab"
        );
        let reservation = entry.reservation.take().expect("terminal reservation");
        assert!(reservation.status != Status::Active);
        entry.generation = entry.generation.wrapping_add(1);
        self.by_id.remove(&*reservation.id);
        self.free.push(slot);
        self.terminal_count -= 1;
    }

    /// Every stored reservation with its slot (active and retained terminal).
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Reservation)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, entry)| entry.reservation.as_ref().map(|r| (slot as u32, r)))
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}
