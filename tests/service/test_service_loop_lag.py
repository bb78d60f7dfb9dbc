"""The event loop lag metric records how late a timer ran: nothing while the loop is free,
the length of a block when something holds the loop's thread."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, Histogram

from service import metrics
from service.loop_lag import LoopLagProbe

# Its own histogram: services started by other tests in this process feed the global one.
REGISTRY = CollectorRegistry()
LAG = Histogram("probe_lag_seconds", "test", buckets=metrics.LOOP_LAG_BUCKETS_S,
                registry=REGISTRY)


def samples() -> tuple[float, float]:
    """(observations, observations of 50 ms or less)."""
    return (REGISTRY.get_sample_value("probe_lag_seconds_count") or 0.0,
            REGISTRY.get_sample_value("probe_lag_seconds_bucket", {"le": "0.05"}) or 0.0)


async def test_a_blocked_loop_shows_as_lag_and_a_free_one_does_not():
    probe = LoopLagProbe(interval_s=0.01, histogram=LAG)
    count_before, short_before = samples()
    probe.start()
    await asyncio.sleep(0.1)
    count, short = samples()
    assert count - count_before >= 3  # it fires while the loop is free
    assert short - short_before == count - count_before  # every one of them on time
    time.sleep(0.12)  # holds the loop's thread, as a long callback would
    await asyncio.sleep(0.03)
    await probe.stop()
    count_after, short_after = samples()
    assert count_after - short_after == 1  # the one timer the block delayed, by over 50 ms
    await asyncio.sleep(0.03)
    assert samples() == (count_after, short_after)  # stopped: nothing more is recorded
