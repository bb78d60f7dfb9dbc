"""The batch window: STOCK_BATCH_WINDOW_MS while the event loop's thread has time to spare,
stretching toward STOCK_BATCH_WINDOW_MAX_MS as it becomes busy (service/batch_window.py)."""

from __future__ import annotations

import time

import pytest

from service.batch_window import BUSY_STRETCH_FROM, BUSY_STRETCH_FULL, BatchWindow
from service.cpu_busy import ThreadBusy


class FakeBusy:
    def __init__(self, *samples: float | None):
        self.samples = list(samples)

    def sample(self) -> float | None:
        return self.samples.pop(0)


def test_thread_busy_is_the_cpu_share_of_wall_time_between_samples():
    clocks = {"cpu": 10.0, "wall": 100.0}
    busy = ThreadBusy(cpu_clock=lambda: clocks["cpu"], wall_clock=lambda: clocks["wall"])
    clocks["cpu"] += 0.03
    clocks["wall"] += 0.1
    assert busy.sample() == pytest.approx(0.3)
    assert busy.sample() is None  # no time passed
    clocks["cpu"] += 0.5  # more CPU than wall time (clock granularity): capped
    clocks["wall"] += 0.1
    assert busy.sample() == 1.0


def test_thread_busy_tells_spinning_from_sleeping():
    busy = ThreadBusy()
    time.sleep(0.05)
    idle = busy.sample()
    deadline = time.monotonic() + 0.05
    while time.monotonic() < deadline:
        pass
    spinning = busy.sample()
    assert idle is not None and spinning is not None
    assert idle < 0.5 < spinning, (idle, spinning)


def test_the_window_stretches_with_the_busy_share_and_keeps_its_bounds():
    middle = (BUSY_STRETCH_FROM + BUSY_STRETCH_FULL) / 2
    window = BatchWindow(3, 8, busy=FakeBusy(0.1, BUSY_STRETCH_FROM, middle, None,
                                             BUSY_STRETCH_FULL, 1.0, 0.0))
    assert window.seconds == 0.003  # before any sample
    seen = []
    for _ in range(7):
        window.update()
        seen.append(round(window.seconds * 1000, 6))
    # An unknown share (None) keeps the window as it was.
    assert seen == [3.0, 3.0, 5.5, 5.5, 8.0, 8.0, 3.0]


def test_a_fixed_window_samples_nothing():
    window = BatchWindow(3, 3, busy=None)
    window.update()
    assert window.seconds == 0.003
    assert BatchWindow(5, 0).seconds == 0.005  # a maximum below the window: fixed
