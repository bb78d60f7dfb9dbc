"""Group commit failure: callers get UNAVAILABLE, the engine forgets what PostgreSQL did not
commit (rebuilt from PostgreSQL), health dips to NOT_SERVING and the service resumes by itself.
The server runs in-process here so a test can make one batch write fail."""

from __future__ import annotations

import asyncio

import asyncpg
import grpc
import pytest
from conftest import ADMIN_TOKEN, REDIS_URL, create_database, drop_database
from grpc_health.v1 import health_pb2
from stock_helpers import line, unique

from loadtest.processes import free_port
from service import metrics
from service.config import Config
from service.gen.stock.v1 import stock_pb2, stock_pb2_grpc
from service.server import App

SERVING_WAIT_S = 30.0
METADATA = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


@pytest.fixture
async def app(request):
    """An in-process service; parametrize indirectly with STOCK_JOURNAL_LOG_MAX_OPERATIONS
    (0: every batch goes into the tables directly)."""
    log_max = getattr(request, "param", Config.journal_log_max_operations)
    database_url = await create_database()
    app = App(Config(listen=f"127.0.0.1:{free_port()}", database_url=database_url,
                     redis_url=REDIS_URL, redis_prefix=unique("committer") + ":",
                     admin_token=ADMIN_TOKEN, rebuild_backoff_initial_ms=10,
                     journal_log_max_operations=log_max))
    await app.start()
    try:
        await wait_serving(app)
        yield app
    finally:
        await app.stop()
        await drop_database(database_url)


async def wait_serving(app: App) -> None:
    for _ in range(int(SERVING_WAIT_S / 0.01)):
        if app.committer.serving:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never SERVING")


def fail_next_write(app: App, seen: list[str]) -> None:
    """The next batch write raises like a dropped connection; later writes work."""
    real_write = app.persistence.write_batch

    async def failing_write(batch, **_):
        app.persistence.write_batch = real_write
        health = await app.health.Check(health_pb2.HealthCheckRequest(service=""), None)
        seen.append(health_pb2.HealthCheckResponse.ServingStatus.Name(health.status))
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost (test)")

    app.persistence.write_batch = failing_write


async def health_name(app: App) -> str:
    health = await app.health.Check(health_pb2.HealthCheckRequest(service=""), None)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)


async def test_failed_batch_is_unavailable_forgotten_and_service_resumes(app):
    sku = unique()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = stock_pb2_grpc.StockServiceStub(channel)
        await stub.SetStock(stock_pb2.SetStockRequest(sku=sku, on_hand=10), metadata=METADATA)
        seen: list[str] = []
        fail_next_write(app, seen)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Reserve(stock_pb2.ReserveRequest(order_id="o", lines=[line(sku, 4)]))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert seen == ["SERVING"]  # the write was attempted while serving

        await wait_serving(app)
        assert await health_name(app) == "SERVING"
        levels = await stub.GetStock(stock_pb2.GetStockRequest(skus=[sku]))
        # The uncommitted hold is gone from memory: the engine was rebuilt from PostgreSQL.
        assert [(lv.on_hand, lv.reserved) for lv in levels.levels] == [(10, 0)]
        held = await stub.Reserve(stock_pb2.ReserveRequest(order_id="o", lines=[line(sku, 4)]))
        assert held.status == stock_pb2.RESERVATION_STATUS_ACTIVE
    async with app.persistence._pool.acquire() as connection:
        row = await connection.fetchrow("SELECT on_hand, reserved FROM items WHERE sku = $1", sku)
    assert tuple(row) == (10, 4)


async def test_calls_while_rebuilding_are_unavailable(app):
    blocked = asyncio.Event()
    release = asyncio.Event()
    real_load = app.persistence.load_state

    async def slow_load(limit):
        blocked.set()
        await release.wait()
        return await real_load(limit)

    app.persistence.load_state = slow_load
    fail_next_write(app, [])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = stock_pb2_grpc.StockServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Adjust(stock_pb2.AdjustRequest(sku=unique(), delta=1), metadata=METADATA)
        await asyncio.wait_for(blocked.wait(), SERVING_WAIT_S)
        assert await health_name(app) == "NOT_SERVING"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetStock(stock_pb2.GetStockRequest(skus=["any"]))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        release.set()
        await wait_serving(app)
        await stub.GetStock(stock_pb2.GetStockRequest(skus=["any"]))


async def test_idle_service_notices_lost_postgres(app):
    """No call is writing, yet a failed probe takes health to NOT_SERVING until PostgreSQL
    answers again (here: until the blocked reload is let through)."""
    reloading, release = asyncio.Event(), asyncio.Event()
    real_ping, real_load = app.persistence.ping, app.persistence.load_state

    async def lost_ping():
        app.persistence.ping = real_ping
        raise OSError("connection refused (test)")

    async def held_load(limit):
        reloading.set()
        await release.wait()
        return await real_load(limit)

    app.persistence.ping, app.persistence.load_state = lost_ping, held_load
    await asyncio.wait_for(reloading.wait(), 10)
    assert await health_name(app) == "NOT_SERVING"
    release.set()
    await wait_serving(app)
    assert await health_name(app) == "SERVING"


async def test_refusal_waits_for_the_change_it_rests_on(app):
    """B is refused because A took the last unit; A's batch then fails. B must not have been
    told FAILED_PRECONDITION about a hold PostgreSQL never got: both get UNAVAILABLE."""
    sku = unique()
    entered, gate = asyncio.Event(), asyncio.Event()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = stock_pb2_grpc.StockServiceStub(channel)
        await stub.SetStock(stock_pb2.SetStockRequest(sku=sku, on_hand=1), metadata=METADATA)
        real_write = app.persistence.write_batch

        async def gated_write(batch, **_):
            app.persistence.write_batch = real_write
            entered.set()
            await gate.wait()
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost (test)")

        app.persistence.write_batch = gated_write
        first = asyncio.ensure_future(stub.Reserve(stock_pb2.ReserveRequest(
            order_id="a", lines=[line(sku, 1)])))
        await asyncio.wait_for(entered.wait(), 10)
        second = asyncio.ensure_future(stub.Reserve(stock_pb2.ReserveRequest(
            order_id="b", lines=[line(sku, 1)])))
        await asyncio.sleep(0.2)
        assert not second.done()  # refused in memory, but not answered yet
        gate.set()
        for call in (first, second):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        await wait_serving(app)
        held = await stub.Reserve(stock_pb2.ReserveRequest(order_id="c", lines=[line(sku, 1)]))
        assert held.status == stock_pb2.RESERVATION_STATUS_ACTIVE


BIG_BATCH = 1_000  # reservations per call: enough backlog for a second writer


@pytest.mark.parametrize("app", [0, Config.journal_log_max_operations], indirect=True,
                         ids=["into-tables", "into-journal-log"])
@pytest.mark.parametrize("shared_item", [True, False])
async def test_a_failed_large_batch_leaves_postgresql_consistent(app, shared_item):
    """Two large batches, the first of which fails after a delay. If the second shares an
    item with it, it must not be written meanwhile: its item row would hold levels that
    include the first batch's holds. If it shares nothing, it may be written at once, and
    what it committed stands on its own. Either way every call is UNAVAILABLE and, after the
    rebuild, each item's reserved equals its active holds in PostgreSQL. The same holds
    whether large batches go into the tables or into the journal log (projected by the
    rebuild's recovery)."""
    first_sku, other_sku = unique("first"), unique("other")
    second_sku = first_sku if shared_item else other_sku
    entered, gate = asyncio.Event(), asyncio.Event()
    logged = app.config.journal_log_max_operations > 0
    write_name = "append_log" if logged else "write_batch"
    real_write = getattr(app.persistence, write_name)
    writes: list[int] = []

    async def first_fails(batch, **kwargs):
        writes.append(batch.lsn_last)
        if len(writes) == 1:
            entered.set()
            await gate.wait()
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection lost (test)")
        await real_write(batch, **kwargs)

    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = stock_pb2_grpc.StockServiceStub(channel)
        for sku in (first_sku, other_sku):
            await stub.SetStock(stock_pb2.SetStockRequest(sku=sku, on_hand=10_000),
                                metadata=METADATA)

        def reserve_batch(sku: str):
            return stub.ReserveBatch(stock_pb2.ReserveBatchRequest(requests=[
                stock_pb2.ReserveRequest(order_id=f"o{n}", lines=[line(sku, 1)])
                for n in range(BIG_BATCH)]))

        setattr(app.persistence, write_name, first_fails)
        first = asyncio.ensure_future(reserve_batch(first_sku))
        await asyncio.wait_for(entered.wait(), 10)
        second = asyncio.ensure_future(reserve_batch(second_sku))
        await asyncio.sleep(0.5)  # time for a second writer to start, if it may
        assert len(writes) == (1 if shared_item else 2)
        gate.set()
        for call in (first, second):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        setattr(app.persistence, write_name, real_write)
        await wait_serving(app)
    async with app.persistence._pool.acquire() as connection:
        assert not await connection.fetchval("SELECT count(*) FROM journal_log")
        for sku in (first_sku, other_sku):
            reserved, held = await connection.fetchrow(
                "SELECT i.reserved, (SELECT coalesce(sum(l.quantity), 0) FROM reservation_lines l"
                " JOIN reservations r USING (reservation_id)"
                " WHERE r.status = 'active' AND l.sku = i.sku) FROM items i WHERE i.sku = $1",
                sku)
            assert reserved == held
    expected_other = 0 if shared_item else BIG_BATCH  # the disjoint batch did commit
    async with app.persistence._pool.acquire() as connection:
        assert await connection.fetchval("SELECT reserved FROM items WHERE sku = $1",
                                         other_sku) == expected_other


BATCHES_AT_ONCE = 6
BATCH_RESERVATIONS = 1_000
BATCH_SKUS = 40
WRITE_DELAY_S = 0.05
# Concurrent Reserve calls on one item: several batches in a row, each waiting for the last.
CHAINED_CALLS = 300
CHAINED_CALL_SPACING_S = 0.001


async def test_large_batches_written_in_parallel_leave_consistent_rows(app):
    """Concurrent ReserveBatch calls of 1,000, each on its own items, build a backlog of
    batches that share no row, so the committer writes them on two connections at once;
    afterwards every counter in PostgreSQL equals its active holds and its ledger, whatever
    order the batches committed in. Every write is slowed by WRITE_DELAY_S here: a log
    append of 1,000 reservations takes a few ms, and without a backlog nothing overlaps."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = stock_pb2_grpc.StockServiceStub(channel)
        await assert_parallel_batches_consistent(app, stub)


def delayed(write):
    async def slow(batch, **kwargs):
        await asyncio.sleep(WRITE_DELAY_S)
        await write(batch, **kwargs)
    return slow


async def assert_parallel_batches_consistent(app: App, stub) -> None:
    tag = unique("parallel")
    skus = [f"{tag}-{index:02d}" for index in range(BATCH_SKUS * BATCHES_AT_ONCE)]
    for sku in skus:
        await stub.SetStock(stock_pb2.SetStockRequest(sku=sku, on_hand=1_000_000),
                            metadata=METADATA)
    for name in ("append_log", "write_batch"):
        setattr(app.persistence, name, delayed(getattr(app.persistence, name)))
    overlapped = metrics.COMMIT_OVERLAPPED._value.get
    before = overlapped()

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
    assert overlapped() > before
    await app.persistence.project_all()
    async with app.persistence._pool.acquire() as db:
        await assert_rows_consistent(db, stub, tag, ids)


async def assert_rows_consistent(db, stub, tag: str, ids: list[str]) -> None:
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
        [level] = (await stub.GetStock(stock_pb2.GetStockRequest(skus=[row["sku"]]))).levels
        assert level.reserved == row["reserved"]
    statuses = await db.fetch("SELECT status, count(*) FROM reservations"
                              " WHERE order_id LIKE $1 GROUP BY status", f"{tag}-%")
    assert dict(statuses) == {"active": len(ids) // 2, "committed": len(ids) // 4,
                              "released": len(ids) // 4}


async def test_a_finishing_write_starts_the_next_batch_itself(app):
    """On a hot item every batch must wait for the one before it. The write that finishes
    answers its calls and starts the waiting batch in its own task, without a round through
    the committer loop (a busy event loop took about five more turns for that). Writes are
    slowed past the batch window here, so that the next batch need not linger. Afterwards the
    item, its ledger and every answer agree."""
    sku = unique("chained")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = stock_pb2_grpc.StockServiceStub(channel)
        await stub.SetStock(stock_pb2.SetStockRequest(sku=sku, on_hand=10_000),
                            metadata=METADATA)
        for name in ("append_log", "write_batch"):
            setattr(app.persistence, name, delayed(getattr(app.persistence, name)))
        started_in: list[str] = []
        real_start = app.committer._start_write

        def recording_start() -> bool:
            started = real_start()
            if started:
                started_in.append(asyncio.current_task().get_name())
            return started

        app.committer._start_write = recording_start
        async def reserve(index: int):
            await asyncio.sleep(index * CHAINED_CALL_SPACING_S)  # arrivals across many writes
            return await stub.Reserve(stock_pb2.ReserveRequest(
                order_id=f"{sku}-{index}", lines=[line(sku, 1)]), timeout=60)

        answers = await asyncio.gather(*(reserve(index) for index in range(CHAINED_CALLS)))
        assert len({answer.reservation_id for answer in answers}) == CHAINED_CALLS
        assert "batch-write" in started_in, started_in  # some started by a finishing write
        [level] = (await stub.GetStock(stock_pb2.GetStockRequest(skus=[sku]))).levels
        assert level.reserved == CHAINED_CALLS
        await app.persistence.project_all()  # a batch of 256 or more went to the journal log
        async with app.persistence._pool.acquire() as db:
            row = await db.fetchrow(
                "SELECT reserved, (SELECT sum(delta_reserved) FROM ledger WHERE sku = $1) AS"
                " ledger_reserved FROM items WHERE sku = $1", sku)
        assert (row["reserved"], row["ledger_reserved"]) == (CHAINED_CALLS, CHAINED_CALLS)
