"""Cache invalidation against real Redis: the shared one for the normal path (unique prefix per
test), a private redis-server for outages (the shared one is never stopped)."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
import redis.asyncio as redis_asyncio

from service.invalidation import (
    FLUSH_MESSAGE,
    PIPELINE_KEYS_MAX,
    Invalidator,
    cache_key,
    channel_name,
    scan_pattern,
)

from .conftest import SHARED_REDIS_URL, PrivateRedis, async_wait_until

WAIT_S_MAX = 10.0
# submit() only touches an in-memory queue; this bound is generous for a loaded 2-core machine
# and still far below one Redis timeout, so it fails if submit ever waits on Redis.
SUBMIT_S_MAX = 0.05


@pytest.fixture
async def shared_redis(redis_prefix):
    client = redis_asyncio.Redis.from_url(SHARED_REDIS_URL, socket_timeout=5)
    yield client
    async for key in client.scan_iter(match=scan_pattern(redis_prefix)):
        await client.unlink(key)
    await client.aclose()


async def started(invalidator: Invalidator) -> Invalidator:
    """Starts and waits for the start-up flush, so keys set afterwards survive it."""
    await invalidator.start()
    await async_wait_until(
        lambda: _true(invalidator.stats()["flushes"] >= 1), WAIT_S_MAX, "start-up flush"
    )
    return invalidator


async def _true(value: bool) -> bool:
    return value


async def keys_gone(client, keys: list[str]) -> bool:
    return await client.exists(*keys) == 0


class Subscriber:
    """Collects the messages published on the invalidation channel."""

    def __init__(self, client, prefix: str):
        self.pubsub = client.pubsub()
        self.channel = channel_name(prefix)
        self.messages: list[bytes] = []

    async def __aenter__(self):
        await self.pubsub.subscribe(self.channel)
        await self.pubsub.get_message(timeout=1)  # the subscribe confirmation
        return self

    async def __aexit__(self, *exc):
        await self.pubsub.unsubscribe(self.channel)
        await self.pubsub.aclose()

    async def wait_for(self, predicate, what: str) -> None:
        deadline = time.monotonic() + WAIT_S_MAX
        while time.monotonic() < deadline:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None:
                self.messages.append(message["data"])
                if predicate(self.messages):
                    return
        raise AssertionError(f"no {what} on {self.channel}; got {self.messages}")


def published_keys(messages: list[bytes]) -> set[str]:
    keys: set[str] = set()
    for message in messages:
        if message != FLUSH_MESSAGE:
            keys.update(json.loads(message))
    return keys


def test_cache_key_default_location_is_prefix_and_sku():
    assert cache_key("stock:", "A1", "") == "stock:A1"
    assert cache_key("stock:", "A1", "WH1") == "stock:WH1:A1"


def test_scan_pattern_escapes_glob_characters():
    assert scan_pattern("s[1]*?:") == "s\\[1\\]\\*\\?:*"


async def test_submitted_keys_are_deleted_and_published(shared_redis, redis_prefix):
    invalidator = await started(Invalidator(SHARED_REDIS_URL, redis_prefix))
    try:
        changed = [cache_key(redis_prefix, "A1", ""), cache_key(redis_prefix, "B2", "WH1")]
        untouched = cache_key(redis_prefix, "C3", "")
        for key in [*changed, untouched]:
            await shared_redis.set(key, "cached")
        async with Subscriber(shared_redis, redis_prefix) as subscriber:
            invalidator.submit([("A1", ""), ("B2", "WH1")])
            await subscriber.wait_for(
                lambda messages: published_keys(messages) >= set(changed), "invalidation message"
            )
        assert await shared_redis.exists(*changed) == 0
        assert await shared_redis.get(untouched) == b"cached", "only changed keys are deleted"
        stats = invalidator.stats()
        assert stats["deleted"] >= 2 and stats["published"] >= 2 and stats["connected"] == 1
    finally:
        await invalidator.stop()


async def test_waiting_keys_are_deduplicated(redis_prefix):
    invalidator = Invalidator(SHARED_REDIS_URL, redis_prefix)  # not started: keys only wait
    invalidator.submit([("A1", ""), ("A1", ""), ("A1", "WH1")])
    invalidator.submit([("A1", "")])
    assert invalidator.stats()["queued"] == 2


async def test_many_keys_go_out_in_bounded_pipelines(shared_redis, redis_prefix):
    invalidator = await started(Invalidator(SHARED_REDIS_URL, redis_prefix))
    try:
        batches_before = invalidator.stats()["batches"]
        count = PIPELINE_KEYS_MAX + 10
        items = [(f"sku{i}", "") for i in range(count)]
        invalidator.submit(items)
        await async_wait_until(
            lambda: _true(invalidator.stats()["queued"] == 0
                          and invalidator.stats()["deleted"] >= count),
            WAIT_S_MAX, "all keys invalidated",
        )
        assert invalidator.stats()["batches"] - batches_before >= 2
    finally:
        await invalidator.stop()


async def test_start_flushes_keys_a_previous_process_may_have_left_stale(
    shared_redis, redis_prefix
):
    stale = cache_key(redis_prefix, "OLD", "")
    await shared_redis.set(stale, "cached")
    async with Subscriber(shared_redis, redis_prefix) as subscriber:
        invalidator = await started(Invalidator(SHARED_REDIS_URL, redis_prefix))
        try:
            await subscriber.wait_for(lambda messages: FLUSH_MESSAGE in messages, "flush message")
        finally:
            await invalidator.stop()
    assert await shared_redis.exists(stale) == 0


async def test_stop_flushes_what_is_queued(shared_redis, redis_prefix):
    invalidator = await started(Invalidator(SHARED_REDIS_URL, redis_prefix))
    key = cache_key(redis_prefix, "LAST", "")
    await shared_redis.set(key, "cached")
    invalidator.submit([("LAST", "")])
    await invalidator.stop()
    assert await shared_redis.exists(key) == 0


async def test_submit_never_raises(redis_prefix):
    invalidator = Invalidator(SHARED_REDIS_URL, redis_prefix)
    invalidator.submit([("only-one-field",)])  # a caller bug must not fail a reservation
    invalidator.submit(None)
    assert invalidator.stats()["failures"] == 2


async def test_overflow_is_counted_logged_and_answered_with_a_flush(
    shared_redis, redis_prefix, caplog
):
    never_submitted = cache_key(redis_prefix, "NEVER", "")
    await shared_redis.set(never_submitted, "cached")
    invalidator = Invalidator(SHARED_REDIS_URL, redis_prefix, queue_keys_max=3)
    with caplog.at_level(logging.ERROR, logger="service.invalidation"):
        invalidator.submit([(f"sku{i}", "") for i in range(5)])
    stats = invalidator.stats()
    assert (stats["queued"], stats["dropped"]) == (3, 2)
    assert any("dropped 2 keys" in record.getMessage() for record in caplog.records)
    async with Subscriber(shared_redis, redis_prefix) as subscriber:
        await invalidator.start()
        try:
            await subscriber.wait_for(lambda messages: FLUSH_MESSAGE in messages, "flush message")
        finally:
            await invalidator.stop()
    assert await shared_redis.exists(never_submitted) == 0, "a drop must end in a prefix flush"


@pytest.mark.slow
async def test_redis_down_then_back_replays_waiting_keys(private_redis: PrivateRedis, redis_prefix):
    client = redis_asyncio.Redis.from_url(private_redis.url, socket_timeout=5)
    invalidator = await started(Invalidator(private_redis.url, redis_prefix))
    try:
        changed = cache_key(redis_prefix, "A1", "WH1")
        untouched = cache_key(redis_prefix, "C3", "")
        await client.set(changed, "cached")
        await client.set(untouched, "cached")
        await client.aclose()
        private_redis.stop()

        began = time.monotonic()
        invalidator.submit([("A1", "WH1")])
        assert time.monotonic() - began < SUBMIT_S_MAX, "submit must not wait for Redis"
        await async_wait_until(
            lambda: _true(invalidator.stats()["connected"] == 0), WAIT_S_MAX, "outage noticed"
        )
        assert invalidator.stats()["queued"] == 1, "the key waits while Redis is down"

        private_redis.start()  # append-only file: the cached values come back with it
        client = redis_asyncio.Redis.from_url(private_redis.url, socket_timeout=5)
        await async_wait_until(lambda: keys_gone(client, [changed]), WAIT_S_MAX, "replay")
        assert await client.get(untouched) == b"cached", "a plain outage needs no flush"
        assert invalidator.stats()["connected"] == 1
        assert invalidator.stats()["failures"] >= 1
    finally:
        await invalidator.stop()
        await client.aclose()


@pytest.mark.slow
async def test_overflow_while_redis_is_down_flushes_the_prefix_when_it_returns(
    private_redis: PrivateRedis, redis_prefix
):
    client = redis_asyncio.Redis.from_url(private_redis.url, socket_timeout=5)
    invalidator = await started(Invalidator(private_redis.url, redis_prefix, queue_keys_max=2))
    try:
        dropped_key = cache_key(redis_prefix, "sku4", "")
        await client.set(dropped_key, "cached")
        await client.aclose()
        private_redis.stop()
        invalidator.submit([(f"sku{i}", "") for i in range(5)])
        assert invalidator.stats()["dropped"] == 3

        private_redis.start()
        client = redis_asyncio.Redis.from_url(private_redis.url, socket_timeout=5)
        await async_wait_until(lambda: keys_gone(client, [dropped_key]), WAIT_S_MAX, "flush")
        # The key disappears during the flush; the counter moves once the flush (UNLINKs, then
        # the `*` message) has finished, so wait for it rather than race it.
        await async_wait_until(  # start-up flush, then the owed one
            lambda: _true(invalidator.stats()["flushes"] >= 2), WAIT_S_MAX, "owed flush counted")
    finally:
        await invalidator.stop()
        await client.aclose()


@pytest.mark.slow
async def test_stop_while_redis_is_down_returns_within_its_timeout(
    private_redis: PrivateRedis, redis_prefix
):
    invalidator = await started(Invalidator(private_redis.url, redis_prefix))
    private_redis.stop()
    invalidator.submit([("A1", "")])
    began = time.monotonic()
    await invalidator.stop(timeout_s=1.0)
    assert time.monotonic() - began < 2.0
    await asyncio.sleep(0)


@pytest.mark.slow
async def test_a_hung_redis_times_out_instead_of_stalling_the_drainer(redis_prefix):
    """A server that accepts connections and never answers: only the explicit socket timeouts
    turn that into a failure (and a retry) instead of a drainer stuck forever."""

    async def swallow(reader, writer):
        await reader.read()  # never answers; returns when the client gives up
        writer.close()

    black_hole = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = black_hole.sockets[0].getsockname()[1]
    invalidator = Invalidator(f"redis://127.0.0.1:{port}/0", redis_prefix)
    try:
        await invalidator.start()
        await async_wait_until(
            lambda: _true(invalidator.stats()["failures"] >= 1), WAIT_S_MAX, "a timed-out call")
        began = time.monotonic()
        invalidator.submit([("A1", "")])
        assert time.monotonic() - began < SUBMIT_S_MAX
        assert invalidator.stats()["connected"] == 0
    finally:
        await invalidator.stop(timeout_s=1.0)
        black_hole.close()
