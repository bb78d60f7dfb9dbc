//! Reservations: a slab of records addressed by (slot, generation), an id index, and the
//! FIFO of terminal reservations retained for late commits, releases and reads.

mod id_index;

use rustc_hash::FxBuildHasher;
use std::collections::VecDeque;
use std::hash::BuildHasher;

use id_index::IdIndex;

use crate::item::ItemIndex;
use crate::prefetch::prefetch_lines;
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

/// The lines of a reservation: most hold a single item, kept inline (no allocation).
#[derive(Clone, Debug)]
pub enum HoldLines {
    One([HoldLine; 1]),
    Many(Box<[HoldLine]>),
}

impl HoldLines {
    // Always inlined: left to the compiler, it was called out of line (callgrind).
    #[inline(always)]
    pub fn new(lines: &[HoldLine]) -> HoldLines {
        match lines {
            [line] => HoldLines::One([*line]),
            _ => HoldLines::Many(Box::from(lines)),
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

/// A reservation in the slab: its fixed part and the state that changes.
#[derive(Debug)]
pub struct Reservation {
    /// Ids, lines and creation time, kept in the slot itself.
    pub record: ReservationRecord,
    pub status: Status,
    /// What the commit fixed, once committed.
    pub committed: Option<Box<CommittedLines>>,
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
            record,
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
    // Always inlined: left to the compiler, it was called out of line (callgrind).
    #[inline(always)]
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

/// A new active reservation, as `Reservations::insert` stores it.
#[derive(Clone, Copy, Debug)]
pub struct NewReservation<'a> {
    pub reservation_id: &'a str,
    pub order_id: &'a str,
    pub request_id: Option<&'a str>,
    pub holds: &'a [HoldLine],
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// The LSN of its creation (0: loaded at recovery).
    pub lsn: u64,
}

/// Aligned to a cache line and three lines long (asserted below), so that a reserve, which
/// writes a whole slot, and an eviction, which reads it, touch three lines: at 208 bytes
/// (before the record's spilled ids took a thin pointer) every slot spanned four.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot {
    generation: u32,
    /// The id hash of the reservation stored (meaningless when empty), so that evicting it
    /// finds its index entry without reading its id.
    id_hash: u32,
    reservation: Option<Reservation>,
}

/// The cache lines of a slot.
const SLOT_LINES: usize = 3;
const _: () = assert!(std::mem::size_of::<Slot>() == SLOT_LINES * 64);

/// The slab grows in chunks of this many slots: growing never copies the slots already
/// there (a million reservations would otherwise be copied, and their pages touched
/// twice, at every doubling).
const SLOTS_PER_CHUNK: usize = 1 << 14;

/// Slots in fixed-size chunks, addressed by slot number. A chunk is a whole array, so a
/// slot's place in it needs no bounds check (a chunk grown slot by slot, a `Vec`, cost a
/// check of its length on every access: about 14 accesses per reserve + release pair);
/// its slots beyond `len` are empty.
#[derive(Debug, Default)]
struct Slab {
    chunks: Vec<Box<[Slot; SLOTS_PER_CHUNK]>>,
    len: usize,
}

impl std::ops::Index<u32> for Slab {
    type Output = Slot;

    // Always inlined: left to the compiler, it was called out of line (callgrind).
    #[inline(always)]
    fn index(&self, slot: u32) -> &Slot {
        let slot = slot as usize;
        &self.chunks[slot / SLOTS_PER_CHUNK][slot % SLOTS_PER_CHUNK]
    }
}

impl std::ops::IndexMut<u32> for Slab {
    // Always inlined: left to the compiler, it was called out of line (callgrind).
    #[inline(always)]
    fn index_mut(&mut self, slot: u32) -> &mut Slot {
        let slot = slot as usize;
        &mut self.chunks[slot / SLOTS_PER_CHUNK][slot % SLOTS_PER_CHUNK]
    }
}

impl Slab {
    fn get(&self, slot: u32) -> Option<&Slot> {
        let slot = slot as usize;
        if slot >= self.len {
            return None;
        }
        Some(&self.chunks[slot / SLOTS_PER_CHUNK][slot % SLOTS_PER_CHUNK])
    }

    /// Appends an empty slot; returns its number.
    fn push(&mut self) -> u32 {
        if self.len.is_multiple_of(SLOTS_PER_CHUNK) {
            // Built on the heap (an array of 3 MiB would not fit on the stack).
            let chunk: Box<[Slot]> = (0..SLOTS_PER_CHUNK).map(|_| Slot::default()).collect();
            let chunk = chunk.try_into().expect("a chunk of SLOTS_PER_CHUNK slots");
            self.chunks.push(chunk);
        }
        self.len += 1;
        let slot = (self.len - 1) as u32;
        debug_assert!(
            self[slot].reservation.is_none(),
            "slots beyond len are empty"
        );
        slot
    }

    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.chunks
            .iter()
            .flat_map(|chunk| chunk.iter())
            .take(self.len)
    }
}

/// 32 bits of a reservation id's hash, stored next to the slot number in the index so
/// that growing the index and telling entries apart need not read the slab. A reserve
/// computes it once for its prefetch, its existence check and its insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdHash(u32);

impl IdHash {
    pub fn of(id: &str) -> IdHash {
        IdHash((FxBuildHasher.hash_one(id.as_bytes()) >> 32) as u32)
    }
}

/// Slab of reservations with an id index and a bounded FIFO of terminal ones.
#[derive(Debug, Default)]
pub struct Reservations {
    slots: Slab,
    free: Vec<u32>,
    /// Slots by reservation id; ids are compared through the slab. Evicting removes the
    /// entry; its bucket was prefetched one eviction ahead, as were the slot and record.
    by_id: IdIndex,
    terminal_order: VecDeque<(u32, u32)>,
    pub active_count: usize,
    pub terminal_count: usize,
}

/// Whether the reservation stored at `slot` has id `id`; the index holds only occupied
/// slots.
fn same_id<'a>(slots: &'a Slab, id: &'a [u8]) -> impl Fn(u32) -> bool + 'a {
    move |slot| {
        let reservation = slots[slot].reservation.as_ref();
        let reservation = reservation.expect("index entry of an empty slot");
        reservation.record.reservation_id_bytes() == id
    }
}

impl Reservations {
    pub fn find(&self, id: &str) -> Option<u32> {
        self.find_hashed(id, IdHash::of(id))
    }

    /// `find` with the id's hash already computed.
    /// Always inlined, with the id comparison it passes the index: left to the compiler,
    /// one or the other was called out of line on every lookup (callgrind).
    #[inline(always)]
    pub fn find_hashed(&self, id: &str, IdHash(hash): IdHash) -> Option<u32> {
        self.by_id.find(hash, same_id(&self.slots, id.as_bytes()))
    }

    /// Starts loading the index bucket a lookup of an id with this hash probes first.
    pub fn prefetch_id(&self, IdHash(hash): IdHash) {
        self.by_id.prefetch(hash);
    }

    /// Starts loading the slot `slot` (if there is one), which `get_versioned` will read.
    pub fn prefetch_slot(&self, slot: u32) {
        if let Some(entry) = self.slots.get(slot) {
            prefetch_lines::<Slot, SLOT_LINES>(entry);
        }
    }

    // Always inlined: left to the compiler, it was called out of line (callgrind).
    #[inline(always)]
    pub fn get(&self, slot: u32) -> &Reservation {
        self.slots[slot]
            .reservation
            .as_ref()
            .expect("occupied slot")
    }

    // Always inlined: left to the compiler, it was called out of line (callgrind).
    #[inline(always)]
    pub fn get_mut(&mut self, slot: u32) -> &mut Reservation {
        self.slots[slot]
            .reservation
            .as_mut()
            .expect("occupied slot")
    }

    /// The reservation at `slot` and its generation.
    pub fn get_with_generation(&self, slot: u32) -> (&Reservation, u32) {
        let entry = &self.slots[slot];
        let reservation = entry.reservation.as_ref().expect("occupied slot");
        (reservation, entry.generation)
    }

    /// Gives the active reservation at `slot` a new generation, so that every expiry entry
    /// made for it so far is stale: when its expiry moves (an extend), entries of an
    /// earlier expiry must not count again should it move back to that expiry.
    pub fn new_generation(&mut self, slot: u32) {
        let entry = &mut self.slots[slot];
        let reservation = entry.reservation.as_ref().expect("occupied slot");
        assert_eq!(reservation.status, Status::Active, "only active holds move");
        entry.generation = entry.generation.wrapping_add(1);
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
    /// capacity. Its id must be new. The reservation is built in its slot: its record
    /// (ids inline) would otherwise be built on the stack and copied there. Always
    /// inlined: called out of line, a reservation built by the caller was read back in
    /// 16-byte loads from its 8-byte stores, which cannot be forwarded and wait for every
    /// earlier store, the journal's among them (perf: 70 % of this function's samples on
    /// that load).
    #[inline(always)]
    pub fn insert(&mut self, new: NewReservation<'_>, id_hash: IdHash) -> u32 {
        debug_assert_eq!(id_hash, IdHash::of(new.reservation_id));
        let IdHash(hash) = id_hash;
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => self.slots.push(),
        };
        let id = new.reservation_id.as_bytes();
        self.by_id.insert(hash, slot, same_id(&self.slots, id));
        let entry = &mut self.slots[slot];
        assert!(entry.reservation.is_none());
        entry.id_hash = hash;
        let record = ReservationRecord::without_ids(HoldLines::new(new.holds), new.created_at_ms);
        let reservation = Reservation::new(record, new.expires_at_ms, new.lsn);
        let reservation = entry.reservation.insert(reservation);
        let record = &mut reservation.record;
        record.write_ids(new.reservation_id, new.order_id, new.request_id);
        self.active_count += 1;
        slot
    }

    /// Records that the reservation at `slot` became terminal and evicts the oldest terminal
    /// reservations beyond `terminal_max`.
    pub fn retire(&mut self, slot: u32, terminal_max: usize) {
        let entry = &self.slots[slot];
        let reservation = entry.reservation.as_ref().expect("occupied slot");
        assert!(reservation.status != Status::Active);
        assert!(self.active_count > 0);
        self.active_count -= 1;
        self.terminal_count += 1;
        self.terminal_order.push_back((slot, entry.generation));
        while self.terminal_count > terminal_max {
            let (oldest, generation) = self.terminal_order.pop_front().expect("terminal entry");
            self.evict(oldest, generation);
        }
        self.prefetch_evictions();
    }

    /// Evicted reservations finished long ago, so their slots and index entries are no
    /// longer cached: start loading what the next evictions read, one eviction ahead (the
    /// slot of the one after next, all of it: dropping the reservation reads its fields,
    /// and the next reserve, which takes the freed slot, writes every line of it; and the
    /// index bucket of the next, whose slot was loaded last time).
    fn prefetch_evictions(&self) {
        if let Some(&(slot, _)) = self.terminal_order.get(1) {
            self.prefetch_slot(slot);
        }
        let Some(&(slot, _)) = self.terminal_order.front() else {
            return;
        };
        self.by_id.prefetch(self.slots[slot].id_hash);
    }

    fn evict(&mut self, slot: u32, generation: u32) {
        let entry = &mut self.slots[slot];
        assert_eq!(
            entry.generation, generation,
            "terminal FIFO out of step with slab"
        );
        let reservation = entry.reservation.as_ref().expect("terminal reservation");
        assert!(reservation.status != Status::Active);
        // Dropped where it is (moving it out first would copy the whole record).
        entry.reservation = None;
        entry.generation = entry.generation.wrapping_add(1);
        let id_hash = entry.id_hash;
        self.by_id.remove(id_hash, slot);
        self.free.push(slot);
        self.terminal_count -= 1;
        debug_assert_eq!(self.by_id.len(), self.len(), "index out of step with slab");
    }

    /// Every stored reservation with its slot (active and retained terminal).
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Reservation)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, entry)| entry.reservation.as_ref().map(|r| (slot as u32, r)))
    }

    /// Makes room for `reservations` stored in all (`terminal_max` of them at most
    /// terminal), so that storing up to that many grows no table: no index rebuild or
    /// list copy under a call. (The slab grows in chunks and never copies its slots.)
    pub fn reserve_total(&mut self, reservations: usize, terminal_max: usize) {
        self.by_id.reserve_total(reservations);
        self.free
            .reserve(reservations.saturating_sub(self.free.len()));
        let terminal = reservations.min(terminal_max) + 1;
        self.terminal_order
            .reserve(terminal.saturating_sub(self.terminal_order.len()));
    }

    /// Reservations the id index holds before it grows, for monitoring.
    pub fn capacity(&self) -> usize {
        self.by_id.capacity()
    }

    /// Reservations stored (active and retained terminal).
    pub fn len(&self) -> usize {
        self.active_count + self.terminal_count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
