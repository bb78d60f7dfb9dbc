//! Reserve: an all-or-nothing hold across every line of a request.

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::{reservation_outcome, Engine};
use crate::errors::{EngineError, EngineResult, Shortfall};
use crate::fingerprint::Fingerprint;
use crate::idempotency::Operation;
use crate::journal::{LedgerEntry, LedgerKind};
use crate::reservation::{HoldLine, IdHash, NewReservation};
use crate::validate::{self, LineInput};
use crate::view::{Answer, Outcome};

/// Up to this many distinct items, merging duplicate lines by linear search is cheaper than
/// building a hash map.
const LINEAR_MERGE_LINES_MAX: usize = 16;
/// Resolved lines of one request: the usual few stay on the stack.
const RESOLVED_LINES_INLINE: usize = 4;
pub(super) type ResolvedLines = SmallVec<[HoldLine; RESOLVED_LINES_INLINE]>;

impl Engine {
    /// Resolves request lines to items, summing quantities of the same item; every unknown
    /// item is reported at once.
    pub(super) fn resolve_lines(&self, lines: &[LineInput<'_>]) -> EngineResult<ResolvedLines> {
        let mut holds = ResolvedLines::with_capacity(lines.len());
        let mut positions: FxHashMap<u32, usize> = FxHashMap::default();
        let mut unknown: Vec<(String, String)> = Vec::new();
        for line in lines {
            let Some(item) = self.items.find(line.sku, line.location) else {
                let key = (line.sku.to_string(), line.location.to_string());
                if !unknown.contains(&key) {
                    unknown.push(key);
                }
                continue;
            };
            let quantity = line.quantity as u64;
            let position = if lines.len() <= LINEAR_MERGE_LINES_MAX {
                holds.iter().position(|hold| hold.item == item)
            } else {
                positions.get(&item).copied()
            };
            match position {
                Some(position) => holds[position].quantity += quantity,
                None => {
                    if lines.len() > LINEAR_MERGE_LINES_MAX {
                        positions.insert(item, holds.len());
                    }
                    holds.push(HoldLine { item, quantity });
                }
            }
        }
        if !unknown.is_empty() {
            return Err(EngineError::UnknownItem { items: unknown });
        }
        Ok(holds)
    }

    /// Refuses when any item lacks the quantity, naming every short item.
    pub(super) fn check_available(&self, holds: &[HoldLine]) -> EngineResult<()> {
        let mut shortfalls = Vec::new();
        for hold in holds {
            let available = self.items.get(hold.item).available();
            if available < hold.quantity {
                let (sku, location) = self.items.key(hold.item);
                shortfalls.push(Shortfall {
                    sku,
                    location,
                    requested: hold.quantity,
                    available,
                });
            }
        }
        if shortfalls.is_empty() {
            Ok(())
        } else {
            Err(EngineError::ShortStock { shortfalls })
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn reserve(
        &mut self,
        reservation_id: &str,
        order_id: &str,
        lines: &[LineInput<'_>],
        ttl_ms: i64,
        now_ms: i64,
        request_id: Option<&str>,
    ) -> EngineResult<Answer> {
        validate::id("reservation_id", reservation_id)?;
        // The id is new unless this is a mistake, so its index bucket is not cached: start
        // loading it now (a hint only; nothing is decided by it), and check the rest of
        // the request and resolve the lines (reads only) while it loads. An existing id
        // is still refused before any unknown item.
        let id_hash = IdHash::of(reservation_id);
        self.reservations.prefetch_id(id_hash);
        validate::optional_id("order_id", order_id)?;
        validate::lines(lines, false)?;
        validate::ttl_ms(ttl_ms)?;
        validate::request_id(request_id)?;
        // The reservation id is not part of the fingerprint: a retry may carry a new one.
        let fingerprint = match request_id {
            Some(_) => Fingerprint::new("reserve")
                .text(order_id)
                .lines(Some(lines))
                .integer(ttl_ms)
                .finish(),
            None => 0,
        };
        if let Some(outcome) = self.replay(request_id, Operation::Reserve, fingerprint)? {
            return Ok(reservation_outcome(outcome));
        }
        let holds = self.resolve_lines(lines);
        // With no hold due on the items (the usual case) nothing changes before the hold,
        // so the checks after the id's are all reads: they are made first, while its
        // bucket still loads (perf: the probe of a new id's bucket was the costliest load
        // of a reserve), and reported in the same order as before, an existing id first.
        let checked = match &holds {
            Ok(holds) if self.nothing_due(holds, now_ms) => Some(self.check_hold(holds)),
            _ => None,
        };
        if self
            .reservations
            .find_hashed(reservation_id, id_hash)
            .is_some()
        {
            let reservation_id = reservation_id.to_string();
            return Err(EngineError::ReservationExists { reservation_id });
        }
        let holds = holds?;
        match checked {
            Some(checked) => checked?,
            None => {
                self.expire_items(holds.iter().map(|hold| hold.item), now_ms, 1)?;
                self.check_hold(&holds)?;
            }
        }
        let lsn = self.next_lsn();
        self.hold_items(&holds, lsn);
        let new = NewReservation {
            reservation_id,
            order_id,
            request_id,
            holds: &holds,
            created_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
            lsn,
        };
        let slot = self.reservations.insert(new, id_hash);
        self.schedule_holds(slot);
        let receipt = self.receipt(slot, now_ms, lsn);
        let outcome = request_id.map(|_| Outcome::Reservation(self.outcome_view(receipt)));
        let idempotency = outcome.and_then(|outcome| {
            self.remember(request_id, Operation::Reserve, fingerprint, outcome, now_ms)
        });
        self.journal_reservation(slot, true, now_ms, lsn, idempotency);
        Ok(Answer::Receipt(receipt))
    }

    /// Whether no hold on the items of `holds` is due at `now_ms`, read from the top of
    /// each item's heap (an entry left there by a finished hold counts as due: the caller
    /// then takes the general way, `expire_items`, which drops it).
    fn nothing_due(&self, holds: &[HoldLine], now_ms: i64) -> bool {
        holds.iter().all(|hold| {
            let top = self.items.get(hold.item).holds.peek();
            top.is_none_or(|top| top.expires_at_ms > now_ms)
        })
    }

    /// What a reserve checks once due holds on its items have expired: room for its
    /// journal operation, room for one more active reservation, and the stock. Reads only.
    fn check_hold(&self, holds: &[HoldLine]) -> EngineResult<()> {
        self.ensure_journal_room(1)?;
        if self.reservations.active_count >= self.config.reservations_active_max {
            return Err(EngineError::CapacityExceeded {
                what: "reservations_active",
            });
        }
        self.check_available(holds)
    }

    /// Adds the holds to their items' reserved quantities, one ledger entry each.
    fn hold_items(&mut self, holds: &[HoldLine], lsn: u64) {
        for hold in holds {
            let item = self.items.get_mut(hold.item);
            item.reserved += hold.quantity;
            item.last_lsn = lsn;
            item.reserved_checked();
            let deltas = (0, hold.quantity as i64, 0);
            let entry = LedgerEntry::after(hold.item, item, LedgerKind::Reserve, deltas);
            self.journal.push_entry(entry);
        }
    }
}
