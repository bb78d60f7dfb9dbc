"""Type stub of the native engine module ``service._core`` (built from core_rs/).

Import it only through ``service.engine``. The contract is docs/ENGINE_API.md;
tests/engine/test_stub.py checks that this stub and the built module name the same things.
"""

from collections.abc import Sequence

Line = tuple[str, str, int]  # (sku, location, quantity)
# (sku, location, on_hand, reserved, available, safety_stock); available = max(0, on_hand
# - reserved - safety_stock)
Level = tuple[str, str, int, int, int, int]

LIMITS: dict[str, int]
# (table, columns) in the order of JournalBatch.columns.
PG_TABLES: list[tuple[str, list[str]]]

class ReservationView:
    @property
    def reservation_id(self) -> str: ...
    @property
    def order_id(self) -> str: ...
    @property
    def status(self) -> str:
        """'active' | 'committed' | 'released' | 'expired' (a due hold reads as expired)."""
    @property
    def lines(self) -> list[Line]: ...
    @property
    def committed_lines(self) -> list[Line]:
        """Committed quantities above zero; empty unless committed."""
    @property
    def expires_at_ms(self) -> int: ...
    @property
    def lsn(self) -> int: ...
    @property
    def replayed(self) -> bool: ...

class LevelsView:
    @property
    def levels(self) -> list[Level]: ...
    @property
    def lsn(self) -> int: ...
    @property
    def replayed(self) -> bool: ...

class JournalBatch:
    @property
    def lsn_first(self) -> int: ...
    @property
    def lsn_last(self) -> int: ...
    @property
    def item_keys(self) -> list[tuple[str, str]]:
        """(sku, location) per item touched: the cache keys to invalidate."""
    @property
    def items(self) -> list[tuple[str, str, int, int, int]]:
        """(sku, location, on_hand, reserved, safety_stock) per item touched (built on first
        access, like the other row lists)."""
    @property
    def columns(self) -> list[str]: ...
    def shares_rows_with(self, other: JournalBatch) -> bool:
        """Whether both batches write a common item, reservation or idempotency record."""
    @property
    def reservations(self) -> list[tuple[str, str, str, int, int, int, str | None]]: ...
    @property
    def reservation_lines(self) -> list[tuple[str, str, str, int, int]]: ...
    @property
    def ledger(
        self,
    ) -> list[
        tuple[int, int, str, str, str, int, int, int, int, int, int, str, str, str, str, str]
    ]: ...
    @property
    def idempotency(self) -> list[tuple[str, int, str, str, int, int]]: ...

class EngineState:
    @property
    def items(self) -> list[tuple[str, str, int, int, int]]: ...
    @property
    def holds(self) -> list[tuple[str, str, int, int, list[Line]]]: ...
    @property
    def idempotency_count(self) -> int: ...

class Engine:
    def __init__(
        self,
        *,
        idempotency_records_max: int = 1_000_000,
        reservations_active_max: int = 2_000_000,
        reservations_terminal_max: int = 100_000,
        items_max: int = 10_000_000,
        journal_operations_max: int = 200_000,
        holds_presized: int = 0,
    ) -> None: ...
    def reserve(
        self,
        reservation_id: str,
        order_id: str,
        lines: Sequence[Line],
        ttl_ms: int,
        now_ms: int,
        request_id: str | None = None,
    ) -> ReservationView: ...
    def commit(
        self,
        reservation_id: str,
        lines: Sequence[Line] | None,
        now_ms: int,
        request_id: str | None = None,
    ) -> ReservationView: ...
    def release(
        self, reservation_id: str, now_ms: int, request_id: str | None = None
    ) -> ReservationView: ...
    def extend(self, reservation_id: str, ttl_ms: int, now_ms: int) -> ReservationView: ...
    def get_reservation(self, reservation_id: str, now_ms: int) -> ReservationView: ...
    def decrement(
        self,
        lines: Sequence[Line],
        now_ms: int,
        order_id: str = "",
        request_id: str | None = None,
    ) -> LevelsView: ...
    def adjust(
        self,
        sku: str,
        location: str,
        delta: int,
        now_ms: int,
        reason: str = "",
        actor: str = "",
        request_id: str | None = None,
    ) -> LevelsView: ...
    def set_stock(
        self,
        sku: str,
        location: str,
        on_hand: int,
        expected_on_hand: int | None,
        now_ms: int,
        reason: str = "",
        actor: str = "",
        request_id: str | None = None,
    ) -> LevelsView: ...
    def set_safety_stock(
        self,
        sku: str,
        location: str,
        safety_stock: int,
        now_ms: int,
        reason: str = "",
        actor: str = "",
        request_id: str | None = None,
    ) -> LevelsView:
        """Units kept back from sale; an unknown item is created with nothing on hand."""
    def get_stock(self, skus: Sequence[str], location: str, now_ms: int) -> LevelsView: ...
    def expire_due(self, now_ms: int, max_count: int) -> list[str]: ...
    def next_expiry_ms(self) -> int | None: ...
    def reserve_batch(
        self,
        requests: Sequence[tuple[str, str, Sequence[Line], int, str | None]],
        now_ms: int,
    ) -> list[ReservationView | EngineError]: ...
    def commit_batch(
        self,
        requests: Sequence[tuple[str, Sequence[Line] | None, str | None]],
        now_ms: int,
    ) -> list[ReservationView | EngineError]: ...
    def release_batch(
        self, requests: Sequence[tuple[str, str | None]], now_ms: int
    ) -> list[ReservationView | EngineError]: ...
    # Batch calls on the wire (core_rs/src/wire.rs): operation "reserve", "commit" or
    # "release"; the request message's bytes in; (parts, lsn) out, each part the encoded
    # `results` of consecutive successful requests or one refused request's exception, in
    # request order. Whole-call errors raise.
    def batch_wire(
        self, operation: str, request: bytes, now_ms: int
    ) -> tuple[list[bytes | EngineError], int]: ...
    # A single Reserve, Commit or Release call on the wire (`operation` as for batch_wire):
    # its request message's bytes in; ([the Reservation message's bytes, or the refusal's
    # EngineError], lsn) out. Undecodable bytes raise.
    def call_wire(
        self, operation: str, request: bytes, now_ms: int
    ) -> tuple[list[bytes | EngineError], int]: ...
    def take_journal(self, max_operations: int) -> JournalBatch | None: ...
    def journal_pending(self) -> int: ...
    def lsn_last(self) -> int: ...
    def load(
        self,
        items: Sequence[tuple[str, str, int, int, int]],
        holds: Sequence[tuple[str, str, int, int, Sequence[Line]]],
        idempotency_records: Sequence[tuple[str, int, str, str, int]],
        now_ms: int,
    ) -> None: ...
    def export(self) -> EngineState: ...
    def stats(self) -> dict[str, int]: ...

def new_reservation_id(now_ms: int) -> str: ...
def prefault_memory(mib: int) -> None: ...

class EngineError(Exception):
    code: str

class LimitExceeded(EngineError):
    field: str
    bound: int

class InvalidRequest(EngineError):
    field: str

class ShortStock(EngineError):
    shortfalls: list[tuple[str, str, int, int]]  # (sku, location, requested, available)

class UnknownItem(EngineError):
    items: list[tuple[str, str]]

class UnknownReservation(EngineError):
    reservation_id: str

class WrongState(EngineError):
    reservation_id: str
    status: str
    operation: str

class OnHandBelowReserved(EngineError):
    sku: str
    location: str
    on_hand: int
    reserved: int

class ExpectedMismatch(EngineError):
    sku: str
    location: str
    expected: int
    actual: int

class IdempotencyConflict(EngineError):
    request_id: str

class ReservationExists(EngineError):
    reservation_id: str

class CapacityExceeded(EngineError):
    what: str

class RecoveryMismatch(EngineError): ...
