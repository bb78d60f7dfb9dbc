"""Redis down and back (a private redis-server; the shared one is never stopped): reservations
keep succeeding at normal latency while it is down, and once it returns the cache keys of the
items changed meanwhile are deleted. Two kinds of outage: the server stopped (connections
refused at once) and the server hung (SIGSTOP: connections accepted, nothing answers, so only
timeouts and the background queue keep calls fast)."""

from __future__ import annotations

import asyncio
import statistics
import time
import urllib.request
from collections.abc import Callable

import grpc
import pytest
import redis.asyncio as redis_asyncio

from service.invalidation import BACKOFF_S_MAX, SOCKET_TIMEOUT_S, cache_key

from .conftest import PrivateRedis, async_wait_until, requires_service
from .service_client import CALL_TIMEOUT_S, reserve_request, seed, stub_for

pytestmark = [requires_service, pytest.mark.slow]

ON_HAND = 1_000_000
CALLS_PER_PHASE = 30
INVALIDATION_WAIT_S_MAX = 10.0
# "Normal latency": no worse than a few times the latency with Redis up (plus slack for a busy
# 2-core machine), and never as long as one Redis socket timeout, which a call that waited on
# Redis would take.
LATENCY_FACTOR_MAX = 3.0
LATENCY_SLACK_S = 0.05
# Redis stays down this long after the last change, so the invalidator fails at least one more
# attempt with the waiting keys: they must survive failed attempts, not just wait for the first.
DOWN_AFTER_LAST_CHANGE_S = BACKOFF_S_MAX + SOCKET_TIMEOUT_S + 0.5


async def timed_reserves(stub, tag: str, lines) -> list[float]:
    seconds = []
    for number in range(CALLS_PER_PHASE):
        began = time.monotonic()
        await stub.Reserve(reserve_request(f"{tag}-{number}", lines), timeout=CALL_TIMEOUT_S)
        seconds.append(time.monotonic() - began)
    return seconds


def metric(metrics_port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as page:
        for line in page.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"metric {name} not exposed")


async def gone(cache, keys) -> bool:
    return await cache.exists(*keys) == 0


async def outage_keeps_latency_and_invalidates_after(
    service, private_redis: PrivateRedis, prefix: str,
    go_down: Callable[[], None], come_back: Callable[[], None],
) -> None:
    cache = redis_asyncio.Redis.from_url(private_redis.url, socket_timeout=5)
    changed = [cache_key(prefix, "A", ""), cache_key(prefix, "B", "WH1")]
    untouched = cache_key(prefix, "C", "")
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            stub = stub_for(channel)
            await seed(stub, ["A", "BASE", "C"], ON_HAND)
            await seed(stub, ["B"], ON_HAND, location="WH1")
            # The invalidator is live once a change of BASE deletes its key; its start-up flush
            # is then behind it, so the keys set below can only go by invalidation.
            await cache.set(cache_key(prefix, "BASE", ""), "cached")
            baseline = await timed_reserves(stub, "base", [("BASE", "", 1)])
            await async_wait_until(lambda: gone(cache, [cache_key(prefix, "BASE", "")]),
                                   INVALIDATION_WAIT_S_MAX, "invalidation with Redis up")
            for key in [*changed, untouched]:
                await cache.set(key, "cached")
            await cache.aclose()

            go_down()
            during = await timed_reserves(stub, "down", [("A", "", 1), ("B", "WH1", 1)])
            print(f"median latency: Redis up {statistics.median(baseline) * 1000:.1f} ms, "
                  f"down {statistics.median(during) * 1000:.1f} ms; "
                  f"max down {max(during) * 1000:.1f} ms")
            assert statistics.median(during) <= (
                LATENCY_FACTOR_MAX * statistics.median(baseline) + LATENCY_SLACK_S), (
                baseline, during)
            assert max(during) < SOCKET_TIMEOUT_S, during
            await asyncio.to_thread(service_reports_backlog, service.metrics_port)
            await asyncio.sleep(DOWN_AFTER_LAST_CHANGE_S)

            come_back()
            cache = redis_asyncio.Redis.from_url(private_redis.url, socket_timeout=5)
            assert await cache.get(untouched) == b"cached", "Redis came back with its data"
            await async_wait_until(lambda: gone(cache, changed), INVALIDATION_WAIT_S_MAX,
                                   "invalidation after Redis returned")
            assert await cache.get(untouched) == b"cached", "only changed items are invalidated"
    finally:
        await cache.aclose()


def service_reports_backlog(metrics_port: int) -> None:
    """The waiting keys are visible in /metrics (refreshed after each committed batch)."""
    assert metric(metrics_port, "stock_invalidation_queue_keys") >= 1


async def test_redis_stopped_does_not_slow_reservations_and_keys_are_invalidated_after(
    shared_database, private_redis, redis_prefix, service_factory
):
    service = service_factory(database_url=shared_database, redis_url=private_redis.url,
                              redis_prefix=redis_prefix)
    await service.start()
    # The append-only file brings the cached values back with the restarted server.
    await outage_keeps_latency_and_invalidates_after(
        service, private_redis, redis_prefix, private_redis.stop, private_redis.start)


async def test_redis_hung_does_not_slow_reservations_and_keys_are_invalidated_after(
    shared_database, private_redis, redis_prefix, service_factory
):
    service = service_factory(database_url=shared_database, redis_url=private_redis.url,
                              redis_prefix=redis_prefix)
    await service.start()
    await outage_keeps_latency_and_invalidates_after(
        service, private_redis, redis_prefix, private_redis.pause, private_redis.resume)
