"""kill -9 of the real service while 200 clients reserve: after a restart on the same database
every acknowledged reservation is there and active, the counters equal the active holds, and
retrying the unanswered calls with their request ids applies each exactly once."""

from __future__ import annotations

import asyncpg
import grpc
import pytest

from .conftest import SHARED_REDIS_URL, requires_service
from .service_client import (
    Load,
    assert_acked_reservations_active,
    assert_database_invariants,
    assert_reconcile_clean,
    assert_recovered_then_retries_apply_once,
    assert_service_agrees,
    count_durable,
    retry_unacked,
    seed,
    stub_for,
    wait_for_acks,
)

pytestmark = [requires_service, pytest.mark.slow]

CLIENTS = 200
SKUS = [f"sku-{number:02d}" for number in range(20)]
# Enough that no reservation is refused for short stock: every refusal here is the crash's.
ON_HAND = 1_000_000
# Kill once this many reservations were acknowledged, with the other clients mid-call.
ACKS_BEFORE_KILL = 300
ACKS_WAIT_S_MAX = 60.0


async def test_kill9_under_load_loses_and_doubles_nothing(
    shared_database, redis_prefix, service_factory
):
    service = service_factory(database_url=shared_database, redis_url=SHARED_REDIS_URL,
                              redis_prefix=redis_prefix)
    load = await kill9_under_load(service, ACKS_BEFORE_KILL, clients=CLIENTS, tag="kill9")
    print(f"before kill -9: {dict(load.codes)}; unanswered {len(load.unacked)}")
    assert load.codes["OK"] >= ACKS_BEFORE_KILL
    assert set(load.codes) <= {"OK", "UNAVAILABLE"}, load.codes

    await service.start()  # same database, same port
    async with grpc.aio.insecure_channel(service.address) as channel:
        stub = stub_for(channel)
        await assert_acked_reservations_active(stub, load)
        reserved = await assert_database_invariants(shared_database, load, ON_HAND)
        await assert_service_agrees(stub, SKUS, reserved)

        print(f"unanswered but durable: {await count_durable(shared_database, load.unacked)}")
        acked_before_retry = len(load.acked)
        await retry_unacked(stub, load)
        print(f"retried {len(load.unacked)} unanswered: "
              f"{len(load.acked) - acked_before_retry} now held")
        reserved = await assert_database_invariants(shared_database, load, ON_HAND)
        await assert_service_agrees(stub, SKUS, reserved)
        assert sum(reserved.values()) == sum(
            quantity for _, lines in load.acked.values() for _, _, quantity in lines)
        await assert_reconcile_clean(shared_database)


async def kill9_under_load(service, acks: int, before_kill=None, **load_options) -> Load:
    """Starts the service, seeds it, runs a Load until `acks` reservations were acknowledged,
    awaits `before_kill()`, then kill -9s the service with the other calls mid-flight."""
    await service.start()
    async with grpc.aio.insecure_channel(service.address) as channel:
        stub = stub_for(channel)
        await seed(stub, SKUS, ON_HAND)
        load = Load(stub, SKUS, **load_options)
        load.start()
        await wait_for_acks(load, acks, ACKS_WAIT_S_MAX)
        if before_kill is not None:
            await before_kill()
        service.kill9()
        await load.stop()
    return load


BATCH_CLIENTS = 4
# Reservations per ReserveBatch call: every group commit then holds 256 or more operations,
# so it is made durable in the journal log (docs/PERSISTENCE.md, "The journal log").
BATCH_RESERVATIONS = 300
BATCH_ACKS_BEFORE_KILL = 3_000


async def test_kill9_during_batch_load_loses_nothing_held_only_in_the_journal_log(
    shared_database, redis_prefix, service_factory
):
    """The same proof for batch calls: acknowledged reservations were durable as journal log
    rows, most not yet projected into the tables (the projector waits for the burst to end)
    when the process dies; the restart's recovery projects them before it loads."""
    service = service_factory(database_url=shared_database, redis_url=SHARED_REDIS_URL,
                              redis_prefix=redis_prefix)
    logged = 0

    async def count_logged() -> None:
        nonlocal logged
        logged = await journal_log_rows(shared_database)

    load = await kill9_under_load(service, BATCH_ACKS_BEFORE_KILL, before_kill=count_logged,
                                  clients=BATCH_CLIENTS, tag="kill9-batch",
                                  batch=BATCH_RESERVATIONS)
    print(f"before kill -9: {dict(load.codes)}; journal_log rows {logged}; "
          f"unanswered {len(load.unacked)}")
    assert logged > 0, "the batches should have been in the journal log"
    assert set(load.codes) <= {"OK", "UNAVAILABLE"}, load.codes

    await service.start()
    assert await journal_log_rows(shared_database) == 0  # projected before serving
    async with grpc.aio.insecure_channel(service.address) as channel:
        await assert_recovered_then_retries_apply_once(stub_for(channel), shared_database, load,
                                                       SKUS, ON_HAND)


async def journal_log_rows(database_url: str) -> int:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        return await connection.fetchval("SELECT count(*) FROM journal_log")
    finally:
        await connection.close()
