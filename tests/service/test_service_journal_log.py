"""The journal log (docs/PERSISTENCE.md, "The journal log"): a large batch made durable as one
journal_log row, projected into the tables later. The projection must leave exactly the rows a
direct write leaves; a batch written into the tables meanwhile must win over an older logged
one; recovery and look-ups of evicted reservations must see logged changes; and the committer
must keep the log within its bound."""

from __future__ import annotations

import asyncio
import contextlib
import os

import asyncpg
import grpc
import pytest
from conftest import ADMIN_TOKEN, REDIS_URL, create_database, drop_database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stock_helpers import line, unique
from test_service_committer import wait_serving

from loadtest.processes import free_port
from service import metrics, recovery
from service.config import Config
from service.engine import Engine
from service.gen.stock.v1 import stock_pb2, stock_pb2_grpc
from service.persistence import Persistence
from service.server import App

# Recovery expires holds by the wall clock: these are made now.
NOW_MS = recovery.now_ms()
TTL_MS = 3_600_000  # outlives the test run: recovery expires by the wall clock
ON_HAND = 1_000_000
RESERVATIONS = 300


@pytest.fixture
async def persistence():
    """Persistence on a database of its own (recovery loads and rewrites a whole database)."""
    async with fresh_persistence() as persistence:
        yield persistence


@contextlib.asynccontextmanager
async def fresh_persistence():
    database_url = await create_database()
    persistence = Persistence(database_url, pool_size=1, timeout_ms=10_000, writers=1)
    try:
        await persistence.open()
        yield persistence
    finally:
        await persistence.close()
        await drop_database(database_url)


@contextlib.asynccontextmanager
async def connection_of(persistence: Persistence):
    async with persistence._pool.acquire() as connection:
        yield connection


def stocked(sku: str):
    """(engine, its stocking batch) with `sku` on hand."""
    engine = Engine()
    engine.set_stock(sku, "", ON_HAND, None, NOW_MS)
    return engine, engine.take_journal(10_000)


def reserve(engine: Engine, sku: str, count: int = RESERVATIONS):
    """(reservation ids, the batch of `count` one-line reservations with request ids)."""
    requests = [(os.urandom(16).hex(), f"order-{index}", [(sku, "", 1 + index % 3)], TTL_MS,
                 f"{sku}-request-{index}") for index in range(count)]
    answers = engine.reserve_batch(requests, NOW_MS)
    assert not any(isinstance(answer, Exception) for answer in answers)
    return [answer.reservation_id for answer in answers], engine.take_journal(10_000)


async def rows_of(db, sku: str) -> dict[str, list[tuple]]:
    """Every row the batches of `sku` wrote, in a stable order (ledger ids left out: they are
    a sequence's)."""
    ids = "SELECT reservation_id FROM reservation_lines WHERE sku = $1"
    queries = {
        "items": "SELECT * FROM items WHERE sku = $1",
        "reservations": f"SELECT * FROM reservations WHERE reservation_id IN ({ids})"
                        " ORDER BY reservation_id",
        "lines": "SELECT * FROM reservation_lines WHERE sku = $1 ORDER BY reservation_id",
        "idempotency": "SELECT * FROM idempotency WHERE request_id LIKE $1 || '-request-%'"
                       " ORDER BY request_id",
        "ledger": "SELECT lsn, at_ms, sku, location, kind, delta_on_hand, delta_reserved,"
                  " on_hand_after, reserved_after, delta_safety, safety_after, reservation_id,"
                  " order_id, request_id, reason, actor, stamp FROM ledger WHERE sku = $1"
                  " ORDER BY stamp, lsn",
    }
    return {name: [tuple(row) for row in await db.fetch(query, sku)]
            for name, query in queries.items()}


async def test_a_projected_batch_leaves_the_rows_a_direct_write_leaves(persistence):
    sku = unique("log-same")
    engine, stocking = stocked(sku)
    _, reserved = reserve(engine, sku)
    async with fresh_persistence() as direct_persistence:
        await direct_persistence.write_batch(stocking)
        await direct_persistence.write_batch(reserved)
        async with connection_of(direct_persistence) as db:
            direct = await rows_of(db, sku)
    assert len(direct["reservations"]) == RESERVATIONS
    assert len(direct["idempotency"]) == RESERVATIONS

    await persistence.write_batch(stocking)
    await persistence.append_log(reserved)
    assert persistence.log_operations == reserved.lsn_last - reserved.lsn_first + 1
    async with connection_of(persistence) as db:
        assert (await rows_of(db, sku))["reservations"] == []  # durable, not in the tables yet
        projected = await persistence.project_next()
        assert projected is not None and projected.items == [(sku, "")]
        assert await rows_of(db, sku) == direct
    assert await persistence.project_next() is None
    assert persistence.log_operations == 0


async def test_an_older_logged_batch_never_overwrites_a_newer_direct_write(persistence):
    """Reserve (logged), then release the same reservations (written into the tables before
    the reserve is projected): the release's rows stay, the ledger keeps the change order."""
    sku = unique("log-order")
    engine, stocking = stocked(sku)
    ids, reserved = reserve(engine, sku)
    answers = engine.release_batch([(reservation_id, None) for reservation_id in ids], NOW_MS)
    assert not any(isinstance(answer, Exception) for answer in answers)
    released = engine.take_journal(10_000)
    await persistence.write_batch(stocking)
    await persistence.append_log(reserved)
    await persistence.write_batch(released)
    await persistence.project_all()
    async with connection_of(persistence) as db:
        rows = await rows_of(db, sku)
    assert [(row[2], row[3]) for row in rows["items"]] == [(ON_HAND, 0)]
    assert {row[2] for row in rows["reservations"]} == {"released"}
    kinds = [row[4] for row in rows["ledger"]]
    assert kinds == ["set"] + ["reserve"] * RESERVATIONS + ["release"] * RESERVATIONS
    assert sum(row[6] for row in rows["ledger"]) == 0  # reserved deltas: back to 0


async def test_a_logged_safety_stock_change_survives_a_newer_direct_write(persistence):
    """A logged batch sets the safety stock; a newer batch that only reserves is written into
    the tables before the log is projected, so the projection's item row is refused as older.
    The safety stock is right anyway: every item row carries the item's whole levels as of its
    batch (docs/PERSISTENCE.md, "Safety stock")."""
    sku = unique("log-safety")
    engine, stocking = stocked(sku)
    engine.set_safety_stock(sku, "", 7, NOW_MS, reason="buffer")
    engine.reserve("r-logged", "o", [(sku, "", 2)], TTL_MS, NOW_MS)
    logged = engine.take_journal(10_000)
    engine.reserve("r-direct", "o", [(sku, "", 3)], TTL_MS, NOW_MS)
    direct = engine.take_journal(10_000)
    await persistence.write_batch(stocking)
    await persistence.append_log(logged)
    await persistence.write_batch(direct)
    await persistence.project_all()
    async with connection_of(persistence) as db:
        item = await db.fetchrow(
            "SELECT on_hand, reserved, safety_stock FROM items WHERE sku = $1", sku)
        sums = await db.fetchrow(
            "SELECT sum(delta_on_hand), sum(delta_reserved), sum(delta_safety) FROM ledger"
            " WHERE sku = $1", sku)
    [(_, _, on_hand, reserved, available, safety)] = engine.get_stock([sku], "", NOW_MS).levels
    assert (on_hand, reserved, safety, available) == (ON_HAND, 5, 7, ON_HAND - 12)
    assert tuple(item) == tuple(sums) == (on_hand, reserved, safety)


async def test_a_projection_locks_its_item_rows_last(persistence):
    """The item row is the one row batches share (a flash sale's hot item is in nearly every
    batch), and a statement's lock on it lasts until its transaction commits: the batch
    statement writes items last, so a projection waiting on any other row (here a
    reservation's, held by another transaction) has not locked the item yet, and a write of
    the item meanwhile goes through at once (with items first it waited for the whole
    projection)."""
    sku = unique("log-lock")
    engine, stocking = stocked(sku)
    ids, reserved = reserve(engine, sku, 10)
    await persistence.write_batch(stocking)
    await persistence.write_batch(reserved)
    answers = engine.release_batch([(ids[0], None)], NOW_MS)
    assert not any(isinstance(answer, Exception) for answer in answers)
    await persistence.append_log(engine.take_journal(10_000))  # names the item and ids[0]
    holder = await asyncpg.connect(persistence._database_url)
    prober = await asyncpg.connect(persistence._database_url)
    try:
        async with holder.transaction():
            await holder.execute(
                "SELECT 1 FROM reservations WHERE reservation_id = $1 FOR UPDATE", ids[0])
            projection = asyncio.create_task(persistence.project_next())
            await asyncio.sleep(0.3)
            assert not projection.done()  # waiting for the reservation's row
            await prober.execute("SET lock_timeout = '2s'")
            await prober.execute("UPDATE items SET on_hand = on_hand WHERE sku = $1", sku)
        projected = await projection
    finally:
        await holder.close()
        await prober.close()
    assert projected is not None and projected.items == [(sku, "")]
    async with connection_of(persistence) as db:
        assert await db.fetchval(
            "SELECT status FROM reservations WHERE reservation_id = $1", ids[0]) == "released"


async def test_recovery_and_lookups_see_logged_batches(persistence):
    sku = unique("log-recover")
    engine, stocking = stocked(sku)
    ids, reserved = reserve(engine, sku)
    await persistence.write_batch(stocking)
    await persistence.append_log(reserved)
    stored = await persistence.find_reservation(ids[0])  # projects the log first
    assert stored is not None and stored.status == "active"
    async with connection_of(persistence) as db:
        assert not await db.fetchval("SELECT count(*) FROM journal_log")

    other = unique("log-recover")
    engine, stocking = stocked(other)
    ids, reserved = reserve(engine, other)
    await persistence.write_batch(stocking)
    await persistence.append_log(reserved)
    loaded, _ = await recovery.recover(persistence, persistence.write_batch)
    async with connection_of(persistence) as db:
        assert not await db.fetchval("SELECT count(*) FROM journal_log")
    assert loaded.get_reservation(ids[-1], NOW_MS).status == "active"
    [level] = loaded.get_stock([other], "", NOW_MS).levels
    assert level[3] == sum(1 + index % 3 for index in range(RESERVATIONS))


@pytest.fixture
async def small_log_app():
    """An in-process service whose log holds at most 1,500 operations, projector stopped."""
    database_url = await create_database()
    app = App(Config(listen=f"127.0.0.1:{free_port()}", database_url=database_url,
                     redis_url=REDIS_URL, redis_prefix=unique("log") + ":",
                     admin_token=ADMIN_TOKEN, journal_log_max_operations=1_500))
    await app.start()
    try:
        await wait_serving(app)
        await app.projector.stop()
        yield app
    finally:
        await app.stop()
        await drop_database(database_url)


async def test_a_lookup_projects_the_log_only_when_the_log_holds_the_reservation(persistence):
    """A look-up of an id the log does not hold (unknown, or written into the tables) must
    neither wait for nor force a projection: during a burst that would take seconds."""
    direct_sku, logged_sku = unique("log-lookup"), unique("log-lookup")
    engine, stocking = stocked(direct_sku)
    direct_ids, direct = reserve(engine, direct_sku, count=10)
    await persistence.write_batch(stocking)
    await persistence.write_batch(direct)
    engine, stocking = stocked(logged_sku)
    logged_ids, logged = reserve(engine, logged_sku, count=10)
    await persistence.write_batch(stocking)
    await persistence.append_log(logged)

    async def log_rows() -> int:
        async with connection_of(persistence) as db:
            return await db.fetchval("SELECT count(*) FROM journal_log")

    assert await persistence.find_reservation("no-such-reservation") is None
    assert await persistence.find_reservation('quote"and\\backslash') is None
    assert await persistence.find_reservation(logged_ids[3][:-1]) is None  # a prefix of one
    stored = await persistence.find_reservation(direct_ids[0])
    assert stored is not None and stored.status == "active"
    assert await log_rows() == 1, "a look-up of an id the log does not hold projected it"

    stored = await persistence.find_reservation(logged_ids[-1])  # its state is in the log
    assert stored is not None and stored.status == "active" and stored.lines
    assert await log_rows() == 0


async def test_the_committer_logs_large_batches_within_the_bound(small_log_app):
    app = small_log_app
    sku = unique("log-bound")
    logged = metrics.COMMIT_LOGGED._value.get
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = stock_pb2_grpc.StockServiceStub(channel)
        await stub.SetStock(stock_pb2.SetStockRequest(sku=sku, on_hand=ON_HAND),
                            metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),))

        async def reserve_batch(count: int) -> None:
            response = await stub.ReserveBatch(stock_pb2.ReserveBatchRequest(requests=[
                stock_pb2.ReserveRequest(order_id=f"o{n}", lines=[line(sku, 1)])
                for n in range(count)]))
            assert all(r.WhichOneof("result") == "reservation" for r in response.results)

        before = logged()
        await reserve_batch(10)  # small: into the tables
        assert (logged(), app.persistence.log_operations) == (before, 0)
        await reserve_batch(1_000)  # large, and the log has room
        assert (logged(), app.persistence.log_operations) == (before + 1, 1_000)
        await reserve_batch(1_000)  # the log would pass its bound: into the tables
        assert (logged(), app.persistence.log_operations) == (before + 1, 1_000)
        async with app.persistence._pool.acquire() as connection:
            assert await connection.fetchval("SELECT count(*) FROM journal_log") == 1
            assert await connection.fetchval(
                "SELECT reserved FROM items WHERE sku = $1", sku) == 2_010
            await app.persistence.project_all()
            assert await connection.fetchval(
                "SELECT count(*) FROM reservations WHERE status = 'active'") == 2_010
        [level] = (await stub.GetStock(stock_pb2.GetStockRequest(skus=[sku]))).levels
        assert level.reserved == 2_010


async def test_the_projector_catches_up_once_bulk_load_pauses(server, stub, db, admin_metadata):
    """Through the shared service: a call of 1,000 reservations is answered once durable in
    the log, and the tables hold it shortly after."""
    sku = unique("log-catch-up")
    await stub.SetStock(stock_pb2.SetStockRequest(sku=sku, on_hand=ON_HAND),
                        metadata=admin_metadata)
    response = await stub.ReserveBatch(stock_pb2.ReserveBatchRequest(requests=[
        stock_pb2.ReserveRequest(order_id=f"o{n}", lines=[line(sku, 2)]) for n in range(1_000)]))
    ids = [result.reservation.reservation_id for result in response.results]
    for _ in range(1_000):
        if await db.fetchval("SELECT count(*) FROM reservations"
                             " WHERE reservation_id = ANY($1::text[])", ids) == len(ids):
            break
        await asyncio.sleep(0.02)
    assert await db.fetchval("SELECT reserved FROM items WHERE sku = $1", sku) == 2_000


# --- any interleaving of logged and direct batches and projections: the same tables ---------

STEP = st.tuples(
    st.sampled_from(["reserve", "reserve", "release", "commit", "adjust", "safety"]),
    st.integers(min_value=0, max_value=2),  # which sku (reserve, adjust, safety)
    st.integers(min_value=0, max_value=7),  # which earlier reservation (release, commit)
    st.integers(min_value=1, max_value=3),  # quantity
    st.booleans(),  # with a request id
)
BATCH = st.tuples(st.lists(STEP, min_size=1, max_size=4),
                  st.sampled_from(["direct", "log", "log"]),  # how the batch is written
                  st.integers(min_value=0, max_value=2))  # projections after it


def apply_step(engine: Engine, skus: list[str], held: list[str], step, number: int) -> None:
    """One engine operation; refusals (short stock, wrong state) change nothing."""
    kind, sku, which, quantity, with_request = step
    request_id = f"{skus[0]}-request-{number}" if with_request else None
    if kind == "reserve":
        [answer] = engine.reserve_batch([(os.urandom(16).hex(), f"order-{number}",
                                          [(skus[sku], "", quantity)], TTL_MS, request_id)],
                                        NOW_MS)
        if not isinstance(answer, Exception):
            held.append(answer.reservation_id)
    elif kind == "adjust":
        engine.adjust(skus[sku], "", quantity, NOW_MS, request_id=request_id)
    elif kind == "safety":
        engine.set_safety_stock(skus[sku], "", quantity, NOW_MS, request_id=request_id)
    elif held:
        reservation_id = held[which % len(held)]
        if kind == "release":
            engine.release_batch([(reservation_id, request_id)], NOW_MS)
        else:
            engine.commit_batch([(reservation_id, None, request_id)], NOW_MS)


@pytest.fixture(scope="module")
async def two_databases():
    """(logged, direct): persistence on two databases of their own, kept for all examples
    (each example uses skus and request ids of its own)."""
    async with fresh_persistence() as logged, fresh_persistence() as direct:
        yield logged, direct


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches=st.lists(BATCH, min_size=1, max_size=8))
async def test_logged_and_direct_batches_in_any_interleaving_leave_the_same_tables(
        two_databases, batches):
    """The committer may log a batch, write a later one into the tables directly before the
    first is projected, and project at any moment. Whatever the interleaving, once the log is
    projected the tables hold exactly what writing every batch into them in order leaves."""
    logged, direct = two_databases
    tag = unique("log-any")
    skus = [f"{tag}-{index}" for index in range(3)]
    engine = Engine()
    for sku in skus:
        engine.set_stock(sku, "", 5, None, NOW_MS)
    stocking = engine.take_journal(10_000)
    await logged.write_batch(stocking)
    await direct.write_batch(stocking)
    held: list[str] = []
    number = 0
    for steps, mode, projections in batches:
        for step in steps:
            number += 1
            apply_step(engine, skus, held, step, number)
        batch = engine.take_journal(10_000)
        if batch is not None:
            await direct.write_batch(batch)
            await (logged.append_log(batch) if mode == "log" else logged.write_batch(batch))
        for _ in range(projections):
            await logged.project_next()
    await logged.project_all()
    async with connection_of(logged) as left, connection_of(direct) as right:
        for sku in skus:
            assert await rows_of(left, sku) == await rows_of(right, sku)
