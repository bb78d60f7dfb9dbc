"""Helpers for the engine tests: the built native module only, no PostgreSQL or Redis."""

from service.engine import Engine

NOW_MS = 1_700_000_000_000
TTL_MS = 60_000


def small_engine() -> Engine:
    return Engine(
        idempotency_records_max=1_000,
        reservations_active_max=1_000,
        reservations_terminal_max=100,
        items_max=1_000,
        journal_operations_max=10_000,
    )


def stock(engine: Engine, **on_hand: int) -> None:
    """Creates default-location items with the given on-hand quantities."""
    for sku, quantity in on_hand.items():
        engine.set_stock(sku, "", quantity, None, NOW_MS)


def level(engine: Engine, sku: str, now_ms: int = NOW_MS, location: str = "") -> tuple:
    """(on_hand, reserved, available, safety_stock) of one item."""
    [(_, _, on_hand, reserved, available, safety_stock)] = engine.get_stock(
        [sku], location, now_ms).levels
    return on_hand, reserved, available, safety_stock
