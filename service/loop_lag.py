"""How late the event loop runs a timer (`stock_event_loop_lag_seconds`).

Every call's handler, group commit and wake-up runs on one event loop thread; while it is
held (a long callback, a collection, the thread waiting for a processor) every call waits.
A timer that should fire every LAG_PROBE_INTERVAL_S records how late it ran: the tail
latency's share that the service's own thread adds, seen by operators without a profiler."""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import Histogram

from service import metrics

LAG_PROBE_INTERVAL_S = 0.05


class LoopLagProbe:
    def __init__(self, interval_s: float = LAG_PROBE_INTERVAL_S,
                 histogram: Histogram = metrics.LOOP_LAG_SECONDS):
        self._interval_s = interval_s
        self._histogram = histogram
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._interval_s
            await asyncio.sleep(self._interval_s)
            self._histogram.observe(max(0.0, loop.time() - due))
