"""kill -9 of the real service while 200 clients reserve: after a restart on the same database
every acknowledged reservation is there and active, the counters equal the active holds, and
retrying the unanswered calls with their request ids applies each exactly once."""

from __future__ import annotations

import grpc
import pytest

from .conftest import SHARED_REDIS_URL, requires_service
from .service_client import (
    Load,
    assert_acked_reservations_active,
    assert_database_invariants,
    assert_reconcile_clean,
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
    await service.start()
    async with grpc.aio.insecure_channel(service.address) as channel:
        stub = stub_for(channel)
        await seed(stub, SKUS, ON_HAND)
        load = Load(stub, SKUS, clients=CLIENTS, tag="kill9")
        load.start()
        await wait_for_acks(load, ACKS_BEFORE_KILL, ACKS_WAIT_S_MAX)
        service.kill9()
        await load.stop()
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
