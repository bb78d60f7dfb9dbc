"""Many concurrent calls on one hot sku: never oversold, grouped into few transactions."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections import Counter

import grpc
from stock_helpers import item_row, level, line, stock_item, unique

from service.gen.stock.v1 import stock_pb2

UNITS = 500
CALLS = 2_000


async def reserve_one(stub, sku: str) -> grpc.StatusCode:
    try:
        await stub.Reserve(stock_pb2.ReserveRequest(order_id=unique("order"), lines=[line(sku, 1)]),
                           timeout=60)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_2000_concurrent_reservations_of_500_units(stub, db, admin_metadata):
    sku = unique("hot")
    await stock_item(stub, admin_metadata, sku, UNITS)
    codes = await asyncio.gather(*(reserve_one(stub, sku) for _ in range(CALLS)))
    assert Counter(codes) == {grpc.StatusCode.OK: UNITS,
                              grpc.StatusCode.FAILED_PRECONDITION: CALLS - UNITS}
    assert tuple(await item_row(db, sku)) == (UNITS, UNITS)
    assert (await level(stub, sku)).available == 0
    holds = await db.fetchval(
        "SELECT count(*) FROM reservations r JOIN reservation_lines l USING (reservation_id)"
        " WHERE l.sku = $1 AND r.status = 'active'", sku)
    assert holds == UNITS
    ledger = await db.fetchval("SELECT count(*) FROM ledger WHERE sku = $1 AND kind = 'reserve'",
                               sku)
    assert ledger == UNITS


def metric_value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


async def scrape(server) -> str:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    return await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())


async def test_concurrent_changes_share_transactions(stub, server, admin_metadata):
    sku = unique("grouped")
    await stock_item(stub, admin_metadata, sku, 1_000)
    before = await scrape(server)
    await asyncio.gather(*(reserve_one(stub, sku) for _ in range(200)))
    after = await scrape(server)
    transactions = (metric_value(after, "stock_commit_seconds_count")
                    - metric_value(before, "stock_commit_seconds_count"))
    operations = (metric_value(after, "stock_commit_batch_operations_sum")
                  - metric_value(before, "stock_commit_batch_operations_sum"))
    assert operations >= 200
    # Grouping: far fewer transactions than changes (each reservation is one operation).
    assert transactions < 100, (transactions, operations)
    assert 'stock_requests_total{code="OK",method="Reserve"}' in after


BATCH_WINDOW_S = 0.003  # STOCK_BATCH_WINDOW_MS's default, which the test server runs with
STREAM_CALLERS = 40
STREAM_S = 1.5


async def test_a_steady_stream_starts_at_most_one_transaction_per_window(
        stub, server, admin_metadata):
    """Under a steady stream of concurrent calls the committer does not write back to back
    (about two calls per transaction): each batch waits out the window since the last one."""
    sku = unique("paced")
    await stock_item(stub, admin_metadata, sku, 1_000_000)
    loop = asyncio.get_running_loop()

    async def caller(deadline: float) -> int:
        calls = 0
        while loop.time() < deadline:
            assert await reserve_one(stub, sku) == grpc.StatusCode.OK
            calls += 1
        return calls

    before = await scrape(server)
    started = loop.time()
    calls = sum(await asyncio.gather(*(caller(started + STREAM_S)
                                       for _ in range(STREAM_CALLERS))))
    elapsed = loop.time() - started
    after = await scrape(server)
    transactions = (metric_value(after, "stock_commit_seconds_count")
                    - metric_value(before, "stock_commit_seconds_count"))
    # The first batch of a burst does not wait; a few more for the stream's start and end.
    assert transactions <= elapsed / BATCH_WINDOW_S + 10, (transactions, calls, elapsed)
    assert calls > transactions
    assert 'stock_gc_pause_seconds_count{generation="0"}' in after


async def test_engine_tables_are_exported_with_the_presized_room(stub, server, admin_metadata):
    sku = unique("tables")
    await stock_item(stub, admin_metadata, sku, 10)
    before = await scrape(server)
    active = 'stock_engine_table_entries{table="reservations_active"}'
    assert await reserve_one(stub, sku) == grpc.StatusCode.OK
    after = await scrape(server)
    # Holds of earlier tests may expire meanwhile (the sweeper counts them).
    expired = (metric_value(after, "stock_expirations_total")
               - metric_value(before, "stock_expirations_total"))
    assert metric_value(after, active) == metric_value(before, active) + 1 - expired
    # The sweeper keeps up with the few holds tests leave due: its lag is exported, and small.
    assert 0 <= metric_value(after, "stock_expiry_lag_seconds") < 5
    # The service's default STOCK_ENGINE_HOLDS_PRESIZED: room for a million holds.
    for table in ("reservations", "idempotency_records"):
        assert metric_value(after, f'stock_engine_table_room{{table="{table}"}}') >= 1_000_000
