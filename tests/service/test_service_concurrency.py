"""Many concurrent calls on one hot sku: never oversold, grouped into few transactions."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections import Counter

import grpc
from journal_log import projected
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


BATCHES_AT_ONCE = 6
BATCH_RESERVATIONS = 1_000
BATCH_SKUS = 40


async def test_large_batches_written_in_parallel_leave_consistent_rows(
        stub, server, db, admin_metadata):
    """Concurrent ReserveBatch calls of 1,000, each on its own items, build a backlog of
    batches that share no row, so the committer writes them on two connections at once;
    afterwards every counter in PostgreSQL equals its active holds and its ledger, whatever
    order the batches committed in."""
    tag = unique("parallel")
    skus = [f"{tag}-{index:02d}" for index in range(BATCH_SKUS * BATCHES_AT_ONCE)]
    for sku in skus:
        await stock_item(stub, admin_metadata, sku, 1_000_000)
    before = await scrape(server)

    async def reserve_batch(round_number: int) -> list[str]:
        requests = [stock_pb2.ReserveRequest(
            order_id=f"{tag}-{round_number}-{index}",
            lines=[line(skus[round_number * BATCH_SKUS + index % BATCH_SKUS], 1 + index % 3)])
            for index in range(BATCH_RESERVATIONS)]
        response = await stub.ReserveBatch(stock_pb2.ReserveBatchRequest(requests=requests),
                                           timeout=60)
        assert all(result.WhichOneof("result") == "reservation" for result in response.results)
        return [result.reservation.reservation_id for result in response.results]

    held = await asyncio.gather(*(reserve_batch(round_number)
                                  for round_number in range(BATCHES_AT_ONCE)))
    ids = [reservation_id for batch in held for reservation_id in batch]
    # Settle half of them, again in concurrent batches: commits and releases of rows whose
    # reserve may sit in a batch still being written on the other connection.
    settle = [stub.CommitBatch(stock_pb2.CommitBatchRequest(requests=[
                  stock_pb2.CommitRequest(reservation_id=i) for i in ids[start:start + 500]]))
              for start in range(0, len(ids) // 2, 1_000)]
    settle += [stub.ReleaseBatch(stock_pb2.ReleaseBatchRequest(requests=[
                   stock_pb2.ReleaseRequest(reservation_id=i) for i in ids[start + 500:
                                                                           start + 1_000]]))
               for start in range(0, len(ids) // 2, 1_000)]
    await asyncio.gather(*settle)
    after = await scrape(server)
    assert (metric_value(after, "stock_commit_overlapped_total")
            > metric_value(before, "stock_commit_overlapped_total"))
    await projected(db)
    rows = await db.fetch(
        "SELECT i.sku, i.on_hand, i.reserved,"
        " (SELECT coalesce(sum(l.quantity), 0) FROM reservation_lines l JOIN reservations r"
        "   USING (reservation_id) WHERE r.status = 'active' AND l.sku = i.sku) AS held,"
        " (SELECT sum(delta_on_hand) FROM ledger g WHERE g.sku = i.sku) AS ledger_on_hand,"
        " (SELECT sum(delta_reserved) FROM ledger g WHERE g.sku = i.sku) AS ledger_reserved"
        " FROM items i WHERE i.sku LIKE $1", f"{tag}-%")
    assert len(rows) == BATCH_SKUS * BATCHES_AT_ONCE
    for row in rows:
        assert row["reserved"] == row["held"], dict(row)
        assert (row["on_hand"], row["reserved"]) == (row["ledger_on_hand"],
                                                     row["ledger_reserved"]), dict(row)
        assert (await level(stub, row["sku"])).reserved == row["reserved"]
    statuses = await db.fetch("SELECT status, count(*) FROM reservations"
                              " WHERE order_id LIKE $1 GROUP BY status", f"{tag}-%")
    assert dict(statuses) == {"active": len(ids) // 2, "committed": len(ids) // 4,
                              "released": len(ids) // 4}
