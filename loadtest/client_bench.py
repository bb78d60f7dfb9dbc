"""Throughput of service.client.StockClient's coalescing mode: many coroutines of one process
each calling reserve() in a loop, gathered into ReserveBatch calls. Prints one JSON object.

Run: python -m loadtest.client_bench --target 127.0.0.1:50051 --callers 2000 --duration-s 5
(the items must exist: loadgen seed creates them)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

from service.client import Line, StockClient, StockError

SKUS = 10_000
TTL_MS = 2_000
CALLERS_MAX = 20_000
DURATION_S_MAX = 600


def sku_name(index: int) -> str:
    return f"sku-{index:07d}"  # the load generator's names (loadgen seed)


async def caller(client: StockClient, deadline: float, latencies_s: list[float],
                 failures: dict[str, int]) -> None:
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            await client.reserve("client-bench", [Line(sku_name(random.randrange(SKUS)), 1)],
                                 ttl_ms=TTL_MS)
            latencies_s.append(time.monotonic() - started)
        except StockError as error:
            failures[error.code.name] = failures.get(error.code.name, 0) + 1


def percentile_ms(sorted_s: list[float], fraction: float) -> float | None:
    if not sorted_s:
        return None
    return round(sorted_s[min(len(sorted_s) - 1, int(fraction * len(sorted_s)))] * 1000, 3)


async def measure(target: str, callers: int, duration_s: float) -> dict:
    latencies_s: list[float] = []
    failures: dict[str, int] = {}
    async with StockClient(target, coalesce=True) as client:
        started = time.monotonic()
        deadline = started + duration_s
        await asyncio.gather(*(caller(client, deadline, latencies_s, failures)
                               for _ in range(callers)))
        elapsed_s = time.monotonic() - started
    latencies_s.sort()
    return {"callers": callers, "duration_s": round(elapsed_s, 2),
            "reservations_ok": len(latencies_s),
            "reservations_ok_per_s": round(len(latencies_s) / elapsed_s),
            "failures": failures,
            "latency_ms": {"p50": percentile_ms(latencies_s, 0.5),
                           "p99": percentile_ms(latencies_s, 0.99)}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--callers", type=int, default=2_000)
    parser.add_argument("--duration-s", type=float, default=5.0)
    arguments = parser.parse_args()
    assert 1 <= arguments.callers <= CALLERS_MAX, "callers out of bounds"
    assert 0 < arguments.duration_s <= DURATION_S_MAX, "duration out of bounds"
    print(json.dumps(asyncio.run(measure(arguments.target, arguments.callers,
                                         arguments.duration_s))))
