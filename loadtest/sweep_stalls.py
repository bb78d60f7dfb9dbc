"""How long the sweeper's engine calls hold the event loop while it expires HOLDS due holds:
the real engine and `Sweeper`, a stand-in committer that drains the journal on the loop as the
real one does (no PostgreSQL). Per expiry call size, prints one JSON line per round: the
slowest `expire_due` and `take_journal` call, the longest the loop went without a turn, and
how long the whole sweep took.

    .venv/bin/python -m loadtest.sweep_stalls 50000 --call-max 10000,500,100 --rounds 3

Not a test and not part of `make bench`: a probe for docs/BENCHMARKS.md, "Expiry rounds in
short calls".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from service import sweeper as sweeper_module
from service.engine import Engine
from service.recovery import now_ms

ITEMS = 1_000
TTL_MS = 1_000
TAKE_OPERATIONS = 10_000


class TimedEngine:
    """The engine, with the slowest call of each timed method recorded (ms)."""

    TIMED = ("expire_due", "take_journal")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.slowest_ms = dict.fromkeys(self.TIMED, 0.0)

    def __getattr__(self, name: str):
        method = getattr(self.engine, name)
        if name not in self.TIMED:
            return method

        def timed(*arguments):
            started = time.perf_counter()
            result = method(*arguments)
            elapsed_ms = (time.perf_counter() - started) * 1000
            self.slowest_ms[name] = max(self.slowest_ms[name], elapsed_ms)
            return result

        return timed


class DrainingCommitter:
    """What the sweeper needs of the committer; everything journaled is durable once drained."""

    def __init__(self, engine: TimedEngine) -> None:
        self._engine = engine
        self._wake = asyncio.Event()
        self._durable = asyncio.Event()

    def engine(self) -> tuple[TimedEngine, int]:
        return self._engine, 1

    async def wait_durable(self, lsn: int, generation: int) -> None:
        self._wake.set()
        while self._engine.journal_pending():
            self._durable.clear()
            await self._durable.wait()

    async def drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._engine.take_journal(TAKE_OPERATIONS) is not None:
                await asyncio.sleep(0)
            self._durable.set()


async def probe(holds: int, call_max: int) -> dict:
    sweeper_module.EXPIRE_CALL_MAX = call_max
    engine = Engine(journal_operations_max=max(holds, TAKE_OPERATIONS) * 2,
                    reservations_active_max=holds + 1)
    now = now_ms()
    for index in range(ITEMS):
        engine.set_stock(f"s{index}", "", 10**12, None, now)
    for index in range(holds):
        engine.reserve(f"r{index}", "o", [(f"s{index % ITEMS}", "", 1)], TTL_MS, now)
    while engine.take_journal(TAKE_OPERATIONS) is not None:
        pass
    timed = TimedEngine(engine)
    committer = DrainingCommitter(timed)
    sweeper = sweeper_module.Sweeper(committer, interval_ms=250)  # type: ignore[arg-type]
    await asyncio.sleep(TTL_MS / 1000 + 0.05)
    drain = asyncio.create_task(committer.drain())
    longest_s, running = 0.0, True

    async def turns() -> None:
        nonlocal longest_s
        while running:
            started = time.perf_counter()
            await asyncio.sleep(0)
            longest_s = max(longest_s, time.perf_counter() - started)

    watcher = asyncio.create_task(turns())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    while engine.stats()["reservations_active"]:
        await sweeper.sweep_once()
    sweep_ms = (time.perf_counter() - started) * 1000
    running = False
    await watcher
    drain.cancel()
    return {"holds": holds, "call_max": call_max,
            "slowest_call_ms": {name: round(ms, 2) for name, ms in timed.slowest_ms.items()},
            "longest_loop_stall_ms": round(longest_s * 1000, 2), "sweep_ms": round(sweep_ms, 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("holds", type=int)
    parser.add_argument("--call-max", default="10000,500,100",
                        help="expirations per engine call, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    for _ in range(arguments.rounds):
        for call_max in (int(size) for size in arguments.call_max.split(",")):
            print(json.dumps(await probe(arguments.holds, call_max)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
