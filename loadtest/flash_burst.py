"""The worst day: CALLS buyers press "buy" on one SKU with UNITS on hand within one second.

Each round serves a fresh instance of a system whose only stock is UNITS of the hot SKU, and
offers CALLS one-unit Reserve calls on it, open loop, spread evenly over one second, with at
most 5,000 in flight as in the benchmark's other open-loop runs (latency counts from each
call's intended send time, so waiting to be sent counts too; each call has a 10 s deadline,
and the load generator waits at most 15 s for the last answers). Then it reads the item back
through GetStock.

A round passes when exactly UNITS calls got a hold and the item shows exactly UNITS reserved:
not one unit sold twice, none left unsold. It reports the answers by status code (the rest
refused, FAILED_PRECONDITION; calls the system did not answer within their deadline, or at
all before the load generator stopped waiting), their latency (p50, p99, max: when the last
buyer heard), and the CPU the system, PostgreSQL and the load generator spent.

    .venv/bin/python -m loadtest.flash_burst --systems service,naive --rounds 2

`make bench` runs `burst_round` on the service and the naive baseline (docs/BENCHMARKS.md).
Needs the load generator built (`cargo build --release --manifest-path
loadtest/loadgen/Cargo.toml`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

from loadtest import bench
from loadtest.client_bench import percentile_ms
from service.client import Line, StockClient, StockError, StockLevel

TOKEN = "flash-burst"
HOT_SKU = "hot-0"  # the load generator's hot scenario (loadtest/loadgen/src/workload.rs)
CALLS_DEFAULT = 50_000
UNITS_DEFAULT = 300
IN_FLIGHT_MAX = bench.OPEN_IN_FLIGHT_MAX
# With 20,000 in flight (the load generator's bound) the service answered every call too, but
# some only after its 10 s deadline: HTTP/2 streams are not served in order.
HOLD_TTL_MS = 600_000  # no hold expires during a round
BURST_S = 1
CLIENT_START_S = 0.2  # the client's buyers start this long after their coroutines exist
FIGURES = ("p50", "p99", "max")


def stock_of(address: str) -> StockLevel:
    """The hot SKU's level, read back through the API after the burst."""
    async def read() -> StockLevel:
        async with StockClient(address) as client:
            [level] = await client.get_stock([HOT_SKU])
        return level

    return asyncio.run(read())


async def client_burst(address: str, calls: int) -> dict:
    """The same buyers, each a coroutine of this process calling `StockClient.reserve` at its
    moment of the second, the client coalescing them into ReserveBatch calls: what an order
    service in front of the stock service does with service/client.py. Shaped like the load
    generator's report."""
    loop = asyncio.get_running_loop()
    latencies_s: list[float] = []
    codes: collections.Counter[str] = collections.Counter()
    cpu_before = time.process_time()
    async with StockClient(address, coalesce=True) as client:
        start = loop.time() + CLIENT_START_S

        async def buyer(number: int) -> None:
            intended = start + BURST_S * number / calls
            await asyncio.sleep(max(0.0, intended - loop.time()))
            try:
                await client.reserve(f"flash-{number}", [Line(HOT_SKU, 1)], ttl_ms=HOLD_TTL_MS)
                codes["OK"] += 1
            except StockError as error:
                codes[error.code.name] += 1
            latencies_s.append(loop.time() - intended)

        await asyncio.gather(*(buyer(number) for number in range(calls)))
    latencies_s.sort()
    return {"codes": dict(codes), "drained": True, "client_cpu_s": time.process_time() - cpu_before,
            "latency_ms": {figure: percentile_ms(latencies_s, fraction)
                           for figure, fraction in (("p50", 0.5), ("p99", 0.99),
                                                    ("max", 1.0))}}


def burst_round(address: str, process, *, calls: int, units: int,
                through_client: bool = False) -> dict:
    """One burst against a system seeded with `units` of the hot SKU (and nothing else of
    it), from the load generator's single calls or (`through_client`) from the coalescing
    client: the answers, their latency, the item afterwards, and whether the round passed."""
    started_at = time.time()
    if through_client:
        server_before = bench.cpu_seconds(process.pid)
        postgres_before = bench.postgres_cpu_seconds()
        result = asyncio.run(client_burst(address, calls))
        result.update(server_cpu_s=round(bench.cpu_seconds(process.pid) - server_before, 2),
                      postgres_cpu_s=round(bench.postgres_cpu_spent(postgres_before), 2),
                      loadgen_cpu_s=round(result.pop("client_cpu_s"), 2))
    else:
        result = bench.loadgen(["run", "--target", address, "--scenario", "hot", "--mode",
                                "open", "--rate", str(calls), "--duration-s", str(BURST_S),
                                "--warmup-s", "0", "--concurrency", str(IN_FLIGHT_MAX),
                                "--ttl-ms", str(HOLD_TTL_MS)], process.pid)
    level = stock_of(address)
    codes = result["codes"]
    problems = []
    if codes.get("OK", 0) != units:
        problems.append(f"{codes.get('OK', 0)} holds granted for {units} units")
    if (level.on_hand, level.reserved) != (units, units):
        problems.append(f"the item shows on_hand {level.on_hand} reserved {level.reserved}")
    answered = codes.get("OK", 0) + codes.get("FAILED_PRECONDITION", 0)
    latency = result["latency_ms"]
    return {"started_at": round(started_at, 3), "calls": calls, "units": units,
            "through": "coalescing client" if through_client else "single calls",
            "codes": codes, "granted": codes.get("OK", 0), "reserved": level.reserved,
            "answered": answered, "unanswered": calls - answered,
            **{f"{figure}_ms": latency[figure] for figure in FIGURES},
            "server_cpu_s": result["server_cpu_s"], "postgres_cpu_s": result["postgres_cpu_s"],
            "loadgen_cpu_s": result["loadgen_cpu_s"],
            "first_error_messages": result.get("first_error_messages", {}),
            "passed": not problems, "problems": problems}


def rounds(system: str, tmp: Path, *, count: int, calls: int, units: int,
           token: str = TOKEN, through_client: bool = False) -> list[dict]:
    """`count` bursts on `system`, each on a fresh instance (the stock is sold out after one)."""
    found = []
    for number in range(count):
        with bench.serving(system, token, tmp, f"flash{number}", skus=1,
                           on_hand=units) as (address, process, _):
            done = burst_round(address, process, calls=calls, units=units,
                               through_client=through_client)
        bench.log(f"  flash burst on {system} ({done['through']}): {calls:,} buyers for"
                  f" {units} units in"
                  f" {BURST_S} s: {done['granted']} held, {done['answered']:,} answered"
                  f" ({done['codes']}), last answer {done['max_ms']:,.0f} ms, p50"
                  f" {done['p50_ms']:,.0f} ms"
                  f"{'' if done['passed'] else '; WRONG: ' + '; '.join(done['problems'])}")
        found.append(done)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default="service", help="comma-separated: service, naive")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--calls", type=int, default=CALLS_DEFAULT)
    parser.add_argument("--units", type=int, default=UNITS_DEFAULT)
    parser.add_argument("--client", action="store_true",
                        help="also through the coalescing client (the service only)")
    arguments = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as logs:
        for system in arguments.systems.split(","):
            results[system] = rounds(system, Path(logs), count=arguments.rounds,
                                     calls=arguments.calls, units=arguments.units)
        if arguments.client:
            results["service via client"] = rounds(
                "service", Path(logs), count=arguments.rounds, calls=arguments.calls,
                units=arguments.units, through_client=True)
    print(json.dumps(results, indent=1))
    return 0 if all(run["passed"] for runs in results.values() for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
