"""The scheduling priority (niceness) of the thread that runs the event loop.

Every gRPC handler, the engine calls and the group commit run on that one thread. On a host
whose cores it shares with PostgreSQL, the load and other processes, it is preempted whenever
another runnable thread is due, and while it waits for a core no call moves. A negative
niceness lets it run first when it has work. Measured on the 2-core bench host (probes in
docs/BENCHMARKS.md, "The event loop thread's priority"): at nice -10 the service's closed
loop rose by about a quarter, and near saturation its p99 at a fixed offered rate fell by
half or more; at light load (no contention to win) it changed nothing beyond noise.

Only the calling thread changes: Linux applies setpriority(PRIO_PROCESS, tid) to that one
thread, so gRPC's own threads (its completion-queue poller and I/O threads) keep theirs.
Raising those too made the tails worse in the same probes: they then competed with the loop
thread itself. Threads the loop thread starts afterwards inherit its niceness.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

NICE_MIN = -20
NICE_MAX = 19


def thread_nice() -> int:
    """The calling thread's niceness."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def set_thread_nice(nice: int) -> bool:
    """Gives the calling thread niceness `nice`; 0 leaves the one it inherited (from the
    process's start, `nice -n ...`). False, with a warning, when the system refuses: a value
    below the inherited one needs CAP_SYS_NICE (or root), and the thread then keeps its own."""
    assert NICE_MIN <= nice <= NICE_MAX, f"niceness {nice} outside {NICE_MIN}..{NICE_MAX}"
    if nice == 0:
        return True
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError as exc:
        log.warning("the event loop thread keeps niceness %d: setting %d was refused (%s; a "
                    "lower niceness needs CAP_SYS_NICE)", thread_nice(), nice, exc.strerror)
        return False
    log.info("event loop thread niceness: %d", nice)
    return True
