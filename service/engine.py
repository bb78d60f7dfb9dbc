"""The one door to the native engine (``service._core``).

Everything else imports the engine, its views, its exceptions and its limits from here, so
the native module's name and shape live in one place. The contract is docs/ENGINE_API.md;
the type stub is service/_core.pyi.
"""

from service._core import (
    LIMITS,
    PG_TABLES,
    CapacityExceeded,
    Engine,
    EngineError,
    EngineState,
    ExpectedMismatch,
    IdempotencyConflict,
    InvalidRequest,
    JournalBatch,
    LevelsView,
    LimitExceeded,
    OnHandBelowReserved,
    RecoveryMismatch,
    ReservationExists,
    ReservationView,
    ShortStock,
    UnknownItem,
    UnknownReservation,
    WrongState,
    new_reservation_id,
    prefault_memory,
)

__all__ = [
    "LIMITS",
    "PG_TABLES",
    "CapacityExceeded",
    "Engine",
    "EngineError",
    "EngineState",
    "ExpectedMismatch",
    "IdempotencyConflict",
    "InvalidRequest",
    "JournalBatch",
    "LevelsView",
    "LimitExceeded",
    "OnHandBelowReserved",
    "RecoveryMismatch",
    "ReservationExists",
    "ReservationView",
    "ShortStock",
    "UnknownItem",
    "UnknownReservation",
    "WrongState",
    "new_reservation_id",
    "prefault_memory",
]
