//! Reservations: a slab of records addressed by (slot, generation), an id index, and the
//! FIFO of terminal reservations retained for late commits, releases and reads.

use std::collections::VecDeque;
use std::sync::Arc;

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use crate::item::ItemIndex;
use crate::record::{CommittedLines, ReservationRecord};

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

/// The lines of a reservation: most hold a single item, kept inline (no allocation);
/// several are shared, so journal snapshots do not copy them.
#[derive(Clone, Debug)]
pub enum HoldLines {
    One([HoldLine; 1]),
    Many(Arc<[HoldLine]>),
}

impl HoldLines {
    pub fn new(lines: &[HoldLine]) -> HoldLines {
        match lines {
            [line] => HoldLines::One([*line]),
            _ => HoldLines::Many(Arc::from(lines)),
        }
    }
}

impl std::ops::Deref for HoldLines {
    type Target = [HoldLine];

    fn deref(&self) -> &[HoldLine] {
        match self {
            HoldLines::One(line) => line,
            HoldLines::Many(lines) => lines,
        }
    }
}

/// A reservation in the slab: its shared fixed part and the state that changes.
#[derive(Clone, Debug)]
pub struct Reservation {
    /// Ids, lines and creation time; shared with views and journal operations.
    pub record: Arc<ReservationRecord>,
    pub status: Status,
    /// What the commit fixed, once committed.
    pub committed: Option<Arc<CommittedLines>>,
    pub expires_at_ms: i64,
    pub updated_at_ms: i64,
    /// LSN of the last change (0: loaded at recovery).
    pub last_lsn: u64,
}

impl Reservation {
    /// A new active reservation, as of its creation.
    pub fn new(record: ReservationRecord, expires_at_ms: i64, lsn: u64) -> Reservation {
        Reservation {
            updated_at_ms: record.created_at_ms,
            record: Arc::new(record),
            status: Status::Active,
            committed: None,
            expires_at_ms,
            last_lsn: lsn,
        }
    }

    pub fn id(&self) -> &str {
        self.record.reservation_id()
    }

    /// The items held, one line per item.
    pub fn lines(&self) -> &[HoldLine] {
        &self.record.holds
    }

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
    /// The id hash of the reservation held, so evicting it need not read its id.
    id_hash: u32,
    reservation: Option<Reservation>,
}

/// The slab grows in chunks of this many slots: growing never copies the slots already
/// there (a million reservations would otherwise be copied, and their pages touched
/// twice, at every doubling).
const SLOTS_PER_CHUNK: usize = 1 << 14;

/// Slots in fixed-size chunks, addressed by slot number.
#[derive(Debug, Default)]
struct Slab {
    chunks: Vec<Vec<Slot>>,
    len: usize,
}

impl std::ops::Index<u32> for Slab {
    type Output = Slot;

    fn index(&self, slot: u32) -> &Slot {
        let slot = slot as usize;
        &self.chunks[slot / SLOTS_PER_CHUNK][slot % SLOTS_PER_CHUNK]
    }
}

impl std::ops::IndexMut<u32> for Slab {
    fn index_mut(&mut self, slot: u32) -> &mut Slot {
        let slot = slot as usize;
        &mut self.chunks[slot / SLOTS_PER_CHUNK][slot % SLOTS_PER_CHUNK]
    }
}

impl Slab {
    fn get(&self, slot: u32) -> Option<&Slot> {
        let slot = slot as usize;
        self.chunks
            .get(slot / SLOTS_PER_CHUNK)?
            .get(slot % SLOTS_PER_CHUNK)
    }

    /// Appends an empty slot; returns its number.
    fn push(&mut self) -> u32 {
        if self.len.is_multiple_of(SLOTS_PER_CHUNK) {
            self.chunks.push(Vec::with_capacity(SLOTS_PER_CHUNK));
        }
        let chunk = self.chunks.last_mut().expect("chunk just ensured");
        debug_assert!(chunk.len() < SLOTS_PER_CHUNK);
        chunk.push(Slot::default());
        self.len += 1;
        (self.len - 1) as u32
    }

    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.chunks.iter().flatten()
    }
}

/// 32 bits of the id's hash, stored next to the slot number in the index so that growing
/// the index and telling entries apart need not read the slab.
fn id_hash(id: &str) -> u32 {
    (FxBuildHasher.hash_one(id) >> 32) as u32
}

/// The 64-bit hash the index places an entry by, derived from the stored 32 bits alone
/// (multiplying spreads them over the high bits, which the index uses for its tags).
fn spread(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Slab of reservations with an id index and a bounded FIFO of terminal ones.
#[derive(Debug, Default)]
pub struct Reservations {
    slots: Slab,
    free: Vec<u32>,
    /// (slot, id hash) by reservation id; ids are compared through the slab.
    by_id: HashTable<(u32, u32)>,
    terminal_order: VecDeque<(u32, u32)>,
    pub active_count: usize,
    pub terminal_count: usize,
}

impl Reservations {
    pub fn find(&self, id: &str) -> Option<u32> {
        let hash = id_hash(id);
        let slots = &self.slots;
        let same_id = |(slot, slot_hash): &(u32, u32)| {
            *slot_hash == hash
                && slots[*slot]
                    .reservation
                    .as_ref()
                    .is_some_and(|reservation| {
                        reservation.record.reservation_id_bytes() == id.as_bytes()
                    })
        };
        self.by_id
            .find(spread(hash), same_id)
            .map(|(slot, _)| *slot)
    }

    pub fn get(&self, slot: u32) -> &Reservation {
        self.slots[slot]
            .reservation
            .as_ref()
            .expect("occupied slot")
    }

    pub fn get_mut(&mut self, slot: u32) -> &mut Reservation {
        self.slots[slot]
            .reservation
            .as_mut()
            .expect("occupied slot")
    }

    pub fn generation(&self, slot: u32) -> u32 {
        self.slots[slot].generation
    }

    /// The reservation at (slot, generation) if it is still that one.
    pub fn get_versioned(&self, slot: u32, generation: u32) -> Option<&Reservation> {
        let entry = self.slots.get(slot)?;
        if entry.generation != generation {
            return None;
        }
        entry.reservation.as_ref()
    }

    /// Stores a new active reservation; the caller checked capacity. Its id must be new.
    pub fn insert(&mut self, reservation: Reservation) -> u32 {
        assert_eq!(reservation.status, Status::Active);
        let hash = id_hash(reservation.id());
        let slots = &self.slots;
        let id = reservation.record.reservation_id_bytes();
        let same_id = |(slot, slot_hash): &(u32, u32)| {
            *slot_hash == hash
                && slots[*slot]
                    .reservation
                    .as_ref()
                    .is_some_and(|other| other.record.reservation_id_bytes() == id)
        };
        let hasher = |(_, hash): &(u32, u32)| spread(*hash);
        let hashbrown::hash_table::Entry::Vacant(vacant) =
            self.by_id.entry(spread(hash), same_id, hasher)
        else {
            panic!("duplicate reservation id");
        };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => self.slots.push(),
        };
        vacant.insert((slot, hash));
        let entry = &mut self.slots[slot];
        assert!(entry.reservation.is_none());
        entry.reservation = Some(reservation);
        entry.id_hash = hash;
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
        let entry = &mut self.slots[slot];
        assert_eq!(
            entry.generation, generation,
            "terminal FIFO out of step with slab"
        );
        let reservation = entry.reservation.take().expect("terminal reservation");
        assert!(reservation.status != Status::Active);
        entry.generation = entry.generation.wrapping_add(1);
        let indexed = self
            .by_id
            .find_entry(spread(entry.id_hash), |(other, _)| *other == slot);
        indexed.expect("evicted reservation indexed").remove();
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
