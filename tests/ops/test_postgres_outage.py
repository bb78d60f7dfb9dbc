"""PostgreSQL stopped and started under load (a private cluster: the machine's shared one is
never stopped). While it is down calls get UNAVAILABLE and health says NOT_SERVING; nothing is
acknowledged that PostgreSQL does not have; when it returns the service recovers by itself."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2

from service.gen.stock.v1 import stock_pb2

from .conftest import SHARED_REDIS_URL, create_database, requires_service, unique_name
from .service_client import (
    CALL_TIMEOUT_S,
    Load,
    assert_recovered_then_retries_apply_once,
    reserve_request,
    seed,
    stub_for,
    wait_for_acks,
)

pytestmark = [requires_service, pytest.mark.slow]

CLIENTS = 20
SKUS = [f"sku-{number:02d}" for number in range(10)]
ON_HAND = 1_000_000
ACKS_BEFORE_OUTAGE = 100
ACKS_AFTER_OUTAGE = 100
# Short database timeouts so the outage is noticed (and the recovery found) in test time.
SERVICE_ENV = {"STOCK_DATABASE_TIMEOUT_MS": "1000", "STOCK_REBUILD_BACKOFF_INITIAL_MS": "100",
               "STOCK_REBUILD_BACKOFF_MAX_MS": "500"}
NOT_SERVING_WAIT_S_MAX = 15.0
SERVING_AGAIN_WAIT_S_MAX = 30.0
OUTAGE_S = 2.0
ACKS_WAIT_S_MAX = 60.0


async def test_postgres_outage_refuses_then_recovers_without_loss(
    private_postgres, redis_prefix, service_factory
):
    database = unique_name("db")
    await create_database(private_postgres.dsn_admin, database)
    database_url = private_postgres.dsn(database)
    service = service_factory(database_url=database_url, redis_url=SHARED_REDIS_URL,
                              redis_prefix=redis_prefix, extra_env=SERVICE_ENV)
    await service.start()
    async with grpc.aio.insecure_channel(service.address) as channel:
        stub = stub_for(channel)
        await seed(stub, SKUS, ON_HAND)
        load = Load(stub, SKUS, clients=CLIENTS, tag="pg")
        load.start()
        await wait_for_acks(load, ACKS_BEFORE_OUTAGE, ACKS_WAIT_S_MAX)

        await asyncio.to_thread(private_postgres.stop, "fast")
        down_since = time.monotonic()
        await service.wait_health(health_pb2.HealthCheckResponse.NOT_SERVING,
                                  NOT_SERVING_WAIT_S_MAX)
        await assert_reserve_unavailable(stub)
        await asyncio.sleep(OUTAGE_S)
        down_until = time.monotonic()
        await asyncio.to_thread(private_postgres.start)

        await service.wait_health(health_pb2.HealthCheckResponse.SERVING,
                                  SERVING_AGAIN_WAIT_S_MAX)
        await wait_for_acks(load, len(load.acked) + ACKS_AFTER_OUTAGE, ACKS_WAIT_S_MAX)
        await load.stop()

        print(f"answers: {dict(load.codes)}; unanswered {len(load.unacked)}")
        acked_while_down = [code for at, code in load.answers
                            if down_since < at < down_until and code == "OK"]
        assert acked_while_down == [], "acknowledged while PostgreSQL was down"
        assert load.codes["UNAVAILABLE"] > 0 and set(load.codes) <= {"OK", "UNAVAILABLE"}, (
            load.codes)

        await assert_recovered_then_retries_apply_once(stub, database_url, load, SKUS, ON_HAND)


async def assert_reserve_unavailable(stub) -> None:
    request = reserve_request("probe-while-down", [(SKUS[0], "", 1)])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Reserve(request, timeout=CALL_TIMEOUT_S)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # A read answers from PostgreSQL's authority too: it must not pretend either.
    with pytest.raises(grpc.aio.AioRpcError) as read:
        await stub.GetStock(stock_pb2.GetStockRequest(skus=SKUS[:1]), timeout=CALL_TIMEOUT_S)
    assert read.value.code() == grpc.StatusCode.UNAVAILABLE
