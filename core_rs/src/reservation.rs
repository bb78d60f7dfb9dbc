//! Reservations: a slab of records addressed by (slot, generation), an id index, and the
//! FIFO of terminal reservations retained for late commits, releases and reads.

use std::collections::VecDeque;
use std::sync::Arc;

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use crate::item::ItemIndex;
use crate::prefetch::prefetch;
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
    /// LSN of the last journal operation carrying this reservation (0: none).
    pub journaled_lsn: u64,
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
            journaled_lsn: 0,
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

/// 32 bits of a reservation id's hash, stored next to the slot number in the index so
/// that growing the index and telling entries apart need not read the slab. A reserve
/// computes it once for both its existence check and its insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdHash(u32);

impl IdHash {
    pub fn of(id: &str) -> IdHash {
        IdHash((FxBuildHasher.hash_one(id.as_bytes()) >> 32) as u32)
    }
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
    /// Slots by reservation id; ids are compared through the slab. Evicting leaves the
    /// entry behind (stale: its generation no longer matches the slot's): removing it
    /// would cost a cache miss on a cold part of the index for every finished
    /// reservation, while dropping stale entries in bulk scans the index in order.
    by_id: HashTable<IndexEntry>,
    /// Entries of `by_id` left behind by evictions since the last purge.
    stale_entries: usize,
    terminal_order: VecDeque<(u32, u32)>,
    pub active_count: usize,
    pub terminal_count: usize,
}

/// An id index entry: the slot and the generation of the reservation it was made for.
#[derive(Clone, Copy, Debug)]
struct IndexEntry {
    slot: u32,
    generation: u32,
    hash: u32,
}

/// Stale index entries are purged once they outnumber the stored reservations by this
/// many (plus as many again), so the index stays at most about twice its live size.
const STALE_ENTRIES_SLACK: usize = 1_024;

/// The reservation `entry` was made for, if it is still stored in its slot.
fn indexed<'a>(slots: &'a Slab, entry: &IndexEntry) -> Option<&'a Reservation> {
    let slot = &slots[entry.slot];
    if slot.generation != entry.generation {
        return None;
    }
    slot.reservation.as_ref()
}

/// The index entry of `id` (hash `hash`), if it is current.
fn same_id<'a>(slots: &'a Slab, id: &'a [u8], hash: u32) -> impl Fn(&IndexEntry) -> bool + 'a {
    move |entry| {
        entry.hash == hash
            && indexed(slots, entry)
                .is_some_and(|reservation| reservation.record.reservation_id_bytes() == id)
    }
}

impl Reservations {
    pub fn find(&self, id: &str) -> Option<u32> {
        self.find_hashed(id, IdHash::of(id))
    }

    /// `find` with the id's hash already computed.
    pub fn find_hashed(&self, id: &str, IdHash(hash): IdHash) -> Option<u32> {
        let same_id = same_id(&self.slots, id.as_bytes(), hash);
        self.by_id
            .find(spread(hash), same_id)
            .map(|entry| entry.slot)
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

    /// Stores a new active reservation whose id hashes to `id_hash`; the caller checked
    /// capacity. Its id must be new.
    pub fn insert(&mut self, reservation: Reservation, id_hash: IdHash) -> u32 {
        assert_eq!(reservation.status, Status::Active);
        debug_assert_eq!(id_hash, IdHash::of(reservation.id()));
        let IdHash(hash) = id_hash;
        let id = reservation.record.reservation_id_bytes();
        let same_id = same_id(&self.slots, id, hash);
        let hasher = |entry: &IndexEntry| spread(entry.hash);
        let hashbrown::hash_table::Entry::Vacant(vacant) =
            self.by_id.entry(spread(hash), same_id, hasher)
        else {
            panic!("duplicate reservation id");
        };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => self.slots.push(),
        };
        let entry = &mut self.slots[slot];
        assert!(entry.reservation.is_none());
        vacant.insert(IndexEntry {
            slot,
            generation: entry.generation,
            hash,
        });
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
        self.prefetch_evictions();
    }

    /// Evicted reservations finished long ago, so their slots and records are no longer
    /// cached: start loading what the next evictions read, one eviction ahead (the slot of
    /// the one after next, and the record of the next, whose slot was loaded last time).
    fn prefetch_evictions(&self) {
        if let Some(&(slot, _)) = self.terminal_order.get(1) {
            prefetch(&self.slots[slot]);
        }
        let next = self.terminal_order.front();
        let record = next.and_then(|&(slot, _)| self.slots[slot].reservation.as_ref());
        if let Some(reservation) = record {
            prefetch(&*reservation.record);
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
        // The index entry goes stale with the generation; `purge_index` drops it later.
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(slot);
        self.terminal_count -= 1;
        self.stale_entries += 1;
        if self.stale_entries > self.len() + STALE_ENTRIES_SLACK {
            self.purge_index();
        }
    }

    /// Drops every stale index entry, in one pass over the index.
    fn purge_index(&mut self) {
        let slots = &self.slots;
        self.by_id.retain(|entry| indexed(slots, entry).is_some());
        self.stale_entries = 0;
        assert_eq!(self.by_id.len(), self.len(), "index out of step with slab");
    }

    /// Every stored reservation with its slot (active and retained terminal).
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Reservation)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, entry)| entry.reservation.as_ref().map(|r| (slot as u32, r)))
    }

    /// Reservations stored (active and retained terminal).
    pub fn len(&self) -> usize {
        self.active_count + self.terminal_count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
