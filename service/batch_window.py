"""How long the committer lets concurrent calls gather into one batch (the batch window).

The window is STOCK_BATCH_WINDOW_MS while the event loop's thread has time to spare, and
stretches toward STOCK_BATCH_WINDOW_MAX_MS as that thread becomes busy: a larger batch shares
the fixed cost of a batch (its transaction, its cache invalidation, its wake-ups) among more
calls, which pays only when that thread is what limits throughput. Below that, a longer window
would only add latency (docs/BENCHMARKS.md, "The batch window")."""

from __future__ import annotations

from service import metrics
from service.cpu_busy import ThreadBusy

# Busy share of the event loop's thread from which the window starts to stretch, and at
# which it reaches its maximum (linear between).
BUSY_STRETCH_FROM = 0.72
BUSY_STRETCH_FULL = 0.84


class BatchWindow:
    def __init__(self, window_ms: int, window_max_ms: int | None = None,
                 busy: ThreadBusy | None = None):
        self._min_s = window_ms / 1000
        self._max_s = max(window_ms, window_max_ms or 0) / 1000
        self._busy = busy if busy is not None or self._max_s == self._min_s else ThreadBusy()
        self.seconds = self._min_s
        metrics.BATCH_WINDOW_SECONDS.set(self.seconds)

    def update(self) -> None:
        """Samples how busy the event loop's thread was since the last update; sets `seconds`."""
        if self._busy is None:
            return
        busy = self._busy.sample()
        if busy is None:
            return
        share = (busy - BUSY_STRETCH_FROM) / (BUSY_STRETCH_FULL - BUSY_STRETCH_FROM)
        self.seconds = self._min_s + (self._max_s - self._min_s) * min(1.0, max(0.0, share))
        metrics.BATCH_WINDOW_SECONDS.set(self.seconds)
