"""How busy the event loop's thread is: the share of wall time it spent on a processor between
two samples (its thread CPU time). Python runs every handler, the engine and the committer on
that one thread, so it is what saturates first (docs/BENCHMARKS.md, "The batch window")."""

from __future__ import annotations

import time
from collections.abc import Callable


class ThreadBusy:
    """Each `sample()`, made on the thread measured, answers its busy share (0.0..1.0) since
    the previous sample, or None when no time passed."""

    def __init__(self, cpu_clock: Callable[[], float] = time.thread_time,
                 wall_clock: Callable[[], float] = time.monotonic):
        self._cpu_clock, self._wall_clock = cpu_clock, wall_clock
        self._last = (cpu_clock(), wall_clock())

    def sample(self) -> float | None:
        now = (self._cpu_clock(), self._wall_clock())
        last, self._last = self._last, now
        wall = now[1] - last[1]
        if wall <= 0:
            return None
        return min(1.0, max(0.0, (now[0] - last[0]) / wall))
