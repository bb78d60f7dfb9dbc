"""The naive baseline: the same gRPC front, each Reserve one PostgreSQL transaction.

This is how a stock service is usually first written: the database row is the authority and
every hold is a guarded UPDATE (`... WHERE on_hand - reserved >= n`) plus an INSERT of the
reservation, committed before answering. On a hot SKU every buyer queues on one row lock. Only
the calls the benchmark uses are implemented (Reserve, SetStock, Adjust, GetStock); the others
answer UNIMPLEMENTED.

Run: python -m loadtest.naive_server --listen 127.0.0.1:50062 --database-url postgresql://...
"""

from __future__ import annotations

import argparse
import time
import uuid

import asyncpg
import grpc
import uvloop

from loadtest.empty_server import ACCEPTORS_DEFAULT, TTL_MS_DEFAULT, start
from service.gen.stock.v1 import stock_pb2, stock_pb2_grpc

# Enough connections to keep PostgreSQL busy on 2 cores without thrashing it.
POOL_CONNECTIONS_MAX = 32
STATEMENT_TIMEOUT_S = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    sku text NOT NULL, location text NOT NULL DEFAULT '',
    on_hand bigint NOT NULL, reserved bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (sku, location),
    CHECK (reserved >= 0 AND reserved <= on_hand));
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id text PRIMARY KEY, order_id text NOT NULL, request_id text UNIQUE,
    expires_at timestamptz NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS reservation_lines (
    reservation_id text NOT NULL REFERENCES reservations, sku text NOT NULL,
    location text NOT NULL, quantity bigint NOT NULL,
    PRIMARY KEY (reservation_id, sku, location));
"""

HOLD = """UPDATE items SET reserved = reserved + $3
          WHERE sku = $1 AND location = $2 AND on_hand - reserved >= $3"""
INSERT_RESERVATION = """INSERT INTO reservations (reservation_id, order_id, request_id, expires_at)
                        VALUES ($1, $2, NULLIF($3, ''), to_timestamp($4 / 1000.0))"""
INSERT_LINE = """INSERT INTO reservation_lines (reservation_id, sku, location, quantity)
                 VALUES ($1, $2, $3, $4)"""
UPSERT_ITEM = """INSERT INTO items (sku, location, on_hand) VALUES ($1, $2, $3)
                 ON CONFLICT (sku, location) DO UPDATE SET on_hand = EXCLUDED.on_hand
                 RETURNING on_hand, reserved"""
ADJUST_ITEM = """INSERT INTO items (sku, location, on_hand) VALUES ($1, $2, $3)
                 ON CONFLICT (sku, location) DO UPDATE SET on_hand = items.on_hand + $3
                 RETURNING on_hand, reserved"""


class NaiveStockServicer(stock_pb2_grpc.StockServiceServicer):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def Reserve(self, request, context):
        reservation_id = uuid.uuid4().hex
        expires_at_ms = int(time.time() * 1000) + (request.ttl_ms or TTL_MS_DEFAULT)
        # Lines in key order so that two multi-line orders never lock rows in opposite order.
        lines = sorted(request.lines, key=lambda line: (line.sku, line.location))
        async with self.pool.acquire() as connection, connection.transaction():
            for line in lines:
                status = await connection.execute(HOLD, line.sku, line.location, line.quantity)
                if status != "UPDATE 1":
                    await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                        f"short stock or unknown item {line.sku!r}")
            await connection.execute(INSERT_RESERVATION, reservation_id, request.order_id,
                                     request.request_id, expires_at_ms)
            await connection.executemany(
                INSERT_LINE, [(reservation_id, x.sku, x.location, x.quantity) for x in lines])
        reservation = stock_pb2.Reservation(
            reservation_id=reservation_id, order_id=request.order_id,
            status=stock_pb2.ReservationStatus.RESERVATION_STATUS_ACTIVE, lines=request.lines)
        reservation.expires_at.FromMilliseconds(expires_at_ms)
        return reservation

    async def _level(self, statement, request, amount):
        row = await self.pool.fetchrow(statement, request.sku, request.location, amount)
        return stock_pb2.AdjustResponse(level=stock_pb2.StockLevel(
            sku=request.sku, location=request.location, on_hand=row["on_hand"],
            reserved=row["reserved"], available=row["on_hand"] - row["reserved"]))

    async def SetStock(self, request, context):
        return await self._level(UPSERT_ITEM, request, request.on_hand)

    async def Adjust(self, request, context):
        return await self._level(ADJUST_ITEM, request, request.delta)

    async def GetStock(self, request, context):
        rows = await self.pool.fetch(
            "SELECT sku, location, on_hand, reserved FROM items"
            " WHERE sku = ANY($1::text[]) AND location = $2", list(request.skus), request.location)
        return stock_pb2.GetStockResponse(levels=[stock_pb2.StockLevel(
            sku=r["sku"], location=r["location"], on_hand=r["on_hand"], reserved=r["reserved"],
            available=r["on_hand"] - r["reserved"]) for r in rows])


async def main(listen: str, database_url: str, acceptors: int, loop_nice: int) -> None:
    pool = await asyncpg.create_pool(
        database_url, min_size=4, max_size=POOL_CONNECTIONS_MAX,
        command_timeout=STATEMENT_TIMEOUT_S)
    await pool.execute(SCHEMA)
    server, _ = await start(listen, NaiveStockServicer(pool), acceptors, loop_nice)
    print(f"naive_server listening on {listen}", flush=True)
    try:
        await server.wait_for_termination()
    finally:
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:50062")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--acceptors", type=int, default=ACCEPTORS_DEFAULT)
    parser.add_argument("--loop-nice", type=int, default=0,
                        help="niceness of the event loop thread (as STOCK_LOOP_NICE)")
    arguments = parser.parse_args()
    # The same event loop as the service (service/__main__.py): a fair front.
    uvloop.run(main(arguments.listen, arguments.database_url, arguments.acceptors,
                    arguments.loop_nice))
