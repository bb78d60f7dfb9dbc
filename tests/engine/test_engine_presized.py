"""holds_presized: the tables that grow with holds are built with room for them, so storing
that many rebuilds no table (no call waits for a rehash), and a load adds room for what it
loads on top."""

from __future__ import annotations

import pytest
from engine_helpers import NOW_MS, TTL_MS, stock

from service.engine import LIMITS, Engine, LimitExceeded

HOLDS = 5_000


def capacities(engine: Engine) -> tuple[int, int]:
    stats = engine.stats()
    return stats["reservations_capacity"], stats["idempotency_capacity"]


def reserve(engine: Engine, first: int, count: int) -> None:
    for number in range(first, first + count):
        engine.reserve(f"r-{number:08d}", "o", [("a", "", 1)], TTL_MS, NOW_MS,
                       request_id=f"q-{number:08d}")


def test_presized_tables_take_their_holds_without_growing():
    engine = Engine(holds_presized=HOLDS)
    reservations, records = capacities(engine)
    assert reservations >= HOLDS and records >= HOLDS
    stock(engine, a=10 * HOLDS)
    reserve(engine, 0, HOLDS)
    assert capacities(engine) == (reservations, records)
    # Past the room made, the tables grow as before and every hold is still found.
    reserve(engine, HOLDS, 2 * reservations)
    grown_reservations, grown_records = capacities(engine)
    assert grown_reservations > reservations and grown_records > records
    assert engine.get_reservation("r-00000000", NOW_MS).status == "active"
    assert engine.stats()["reservations_active"] == HOLDS + 2 * reservations


def test_tables_start_small_without_presizing():
    reservations, records = capacities(Engine())
    assert reservations < HOLDS and records < HOLDS


def test_room_is_made_within_each_tables_own_bound():
    engine = Engine(holds_presized=LIMITS["TABLE_SIZE_MAX"], reservations_active_max=100,
                    reservations_terminal_max=10, idempotency_records_max=50)
    reservations, records = capacities(engine)
    assert 110 <= reservations <= 2 * 110 + 1  # half the next power of two
    assert 51 <= records < 2 * 51


def test_a_load_adds_room_for_what_it_loads():
    source = Engine()
    stock(source, a=10 * HOLDS)
    reserve(source, 0, HOLDS)
    state = source.export()
    engine = Engine(holds_presized=HOLDS)
    engine.load(state.items, state.holds, [], NOW_MS)
    reservations, _ = capacities(engine)
    assert reservations >= 2 * HOLDS
    reserve(engine, HOLDS, HOLDS)
    assert capacities(engine)[0] == reservations


def test_presizing_beyond_the_table_bound_is_refused():
    with pytest.raises(LimitExceeded) as refused:
        Engine(holds_presized=LIMITS["TABLE_SIZE_MAX"] + 1)
    assert refused.value.field == "holds_presized"
    assert refused.value.bound == LIMITS["TABLE_SIZE_MAX"]
