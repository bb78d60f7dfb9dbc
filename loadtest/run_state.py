"""What a load test run did, as the client saw it, and the invariants checked against it.

All users run as greenlets of one process, and nothing here does I/O, so each method runs
without interruption: no lock is needed.

The client's view is conservative. A hold counts as "certainly active" only from its successful
Reserve until a Commit or Release for it is sent or its expiry passes; so the certainly-active
units are a lower bound of what the service holds, and a lower bound above the stock is a real
oversell, never a race of the observer.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

# The service's clock and ours are the same machine's; this covers rounding to milliseconds.
EXPIRY_MARGIN_MS = 20
VIOLATIONS_KEPT_MAX = 100  # enough to diagnose; a broken run must not grow without bound


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Hold:
    reservation_id: str
    lines: dict[str, int]  # sku -> quantity held
    expires_at_ms: int


@dataclass
class RunState:
    sku_prefix: str
    order_prefix: str
    hot_sku: str | None = None
    initial: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    committed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    certainly_active: dict[str, Hold] = field(default_factory=dict)
    # Operations whose outcome is unknown (timeout, unavailable): (kind, request) to replay with
    # the same request id at the end, when the idempotency record tells what happened.
    uncertain: list[tuple[str, object]] = field(default_factory=list)
    # Commits and adjusts sent and not yet answered, by request id: a user stopped at the end
    # of the run mid-call leaves its operation here, applied or not.
    in_flight: dict[str, tuple[str, object]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    violation_count: int = 0
    expires_at_ms_max: int = 0
    samples: int = 0

    def violation(self, message: str) -> None:
        self.violation_count += 1
        if len(self.violations) < VIOLATIONS_KEPT_MAX:
            self.violations.append(message)

    def hold_started(self, reservation) -> None:
        lines = {line.sku: line.quantity for line in reservation.lines}
        expires_at_ms = reservation.expires_at.ToMilliseconds()
        self.expires_at_ms_max = max(self.expires_at_ms_max, expires_at_ms)
        hold = Hold(reservation.reservation_id, lines, expires_at_ms)
        self.certainly_active[hold.reservation_id] = hold
        if self.hot_sku is not None and self.hot_sku in lines:
            self.check_hot_sku_holds()

    def hold_ending(self, reservation_id: str) -> Hold | None:
        """A Commit or Release is about to be sent: the hold may end at any moment now."""
        return self.certainly_active.pop(reservation_id, None)

    def committed_lines(self, reservation) -> None:
        for line in reservation.committed_lines:
            self.committed[line.sku] += line.quantity

    def check_hot_sku_holds(self) -> None:
        """Successful holds plus sales of the hot SKU never exceed what it ever had."""
        cutoff_ms = now_ms() + EXPIRY_MARGIN_MS
        for reservation_id in [r for r, h in self.certainly_active.items()
                               if h.expires_at_ms <= cutoff_ms]:
            del self.certainly_active[reservation_id]
        held = sum(h.lines.get(self.hot_sku, 0) for h in self.certainly_active.values())
        stock = self.initial[self.hot_sku] + self.received[self.hot_sku]
        if held + self.committed[self.hot_sku] > stock:
            self.violation(f"hot SKU oversold: {held} certainly held + "
                           f"{self.committed[self.hot_sku]} committed > stock {stock}")

    def check_levels(self, levels, where: str) -> None:
        self.samples += 1
        for level in levels:
            sellable = max(0, level.on_hand - level.reserved - level.safety_stock)
            if (level.reserved < 0 or level.reserved > level.on_hand or level.safety_stock < 0
                    or level.available != sellable):  # sellable is never negative
                self.violation(f"{where}: {level.sku} on_hand {level.on_hand} "
                               f"reserved {level.reserved} safety_stock {level.safety_stock} "
                               f"available {level.available}")

    def check_final_levels(self, levels) -> None:
        """After every hold is due: nothing reserved, and on_hand = initial + received - sold."""
        self.check_levels(levels, "final GetStock")
        seen = {level.sku: level for level in levels}
        for sku, initial in self.initial.items():
            level = seen.get(sku)
            if level is None:
                self.violation(f"final GetStock: {sku} missing")
                continue
            expected = initial + self.received[sku] - self.committed[sku]
            if level.on_hand != expected:
                self.violation(f"{sku}: on_hand {level.on_hand} != initial {initial} + received "
                               f"{self.received[sku]} - committed {self.committed[sku]}")
            if level.reserved != 0:
                self.violation(f"{sku}: {level.reserved} still reserved after every expiry")

    def check_database(self, found: dict) -> None:
        """The PostgreSQL copy agrees with itself (ledger sums) and with what the run did."""
        if found["bad_ledger_rows"]:
            self.violation(f"database: {found['bad_ledger_rows']} ledger rows with bad levels")
        if found["overdue_active_holds"]:
            self.violation(f"database: {found['overdue_active_holds']} holds active past expiry")
        for sku, initial in self.initial.items():
            row = found["items"].get(sku)
            if row is None:
                self.violation(f"database: item {sku} missing")
                continue
            self.check_database_item(sku, initial, row)

    def check_database_item(self, sku: str, initial: int, row: dict) -> None:
        """One item's row of the audit statement (service/audit.py ITEM_AUDIT_STATEMENT),
        against itself and against what the run did."""
        if row["on_hand"] is None:
            self.violation(f"database {sku}: ledger rows or holds but no item row")
            return
        if row["counters_differ"]:
            self.violation(
                f"database {sku}: counters on_hand/reserved/safety_stock {row['on_hand']}/"
                f"{row['reserved']}/{row['safety_stock']} != ledger sums {row['ledger_on_hand']}/"
                f"{row['ledger_reserved']}/{row['ledger_safety_stock']}")
        if row["holds_differ"]:
            self.violation(f"database {sku}: reserved {row['reserved']} != units of active holds"
                           f" {row['held']}")
        comparisons = {
            "ledger set rows = initial stock": (row["ledger_set"], initial),
            "ledger adjust rows = units received": (row["ledger_received"], self.received[sku]),
            "ledger commit rows = units committed": (row["ledger_committed"],
                                                     self.committed[sku]),
            "on_hand + committed = initial + received": (
                row["on_hand"] + self.committed[sku], initial + self.received[sku]),
        }
        for name, (left, right) in comparisons.items():
            if left != right:
                self.violation(f"database {sku}: {name} fails ({left} != {right})")
        if row["on_hand"] < 0 or row["reserved"] < 0 or row["reserved"] > row["on_hand"]:
            self.violation(f"database {sku}: on_hand {row['on_hand']} reserved {row['reserved']}")
