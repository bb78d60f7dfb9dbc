"""STOCK_GRPC_ACCEPTORS: several gRPC servers in the one service process share its port, and
calls on every client connection are answered whichever server the kernel gave it to."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from stock_helpers import unique

from service.config import Config
from service.gen.stock.v1 import stock_pb2, stock_pb2_grpc

# Enough separate connections that, spread over the listeners, every one gets some.
CONNECTIONS = 16
TCP_LISTEN = "0A"  # the state column of /proc/net/tcp and tcp6


def listening_sockets(port: int) -> int:
    """Sockets in LISTEN state on `port` (any address; gRPC listens on 127.0.0.1 through an
    IPv6 socket with a v4-mapped address), in this network namespace."""
    rows = [row.split() for table in ("/proc/net/tcp", "/proc/net/tcp6")
            for row in Path(table).read_text().splitlines()[1:]]
    return sum(1 for row in rows
               if row[1].endswith(f":{port:04X}") and row[3] == TCP_LISTEN)


async def test_the_acceptors_share_the_port_and_all_answer(server, stub, admin_metadata):
    assert listening_sockets(server.port) == Config.grpc_acceptors > 1
    sku = unique()
    await stub.SetStock(stock_pb2.SetStockRequest(sku=sku, on_hand=CONNECTIONS),
                        metadata=admin_metadata)

    async def reserve_on_own_connection(number: int) -> str:
        # A private subchannel pool: a new TCP connection per channel, not a shared one.
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(server.address, options=options) as channel:
            reply = await stock_pb2_grpc.StockServiceStub(channel).Reserve(
                stock_pb2.ReserveRequest(request_id=unique(f"acc{number}"), order_id="o",
                                         lines=[stock_pb2.Line(sku=sku, quantity=1)],
                                         ttl_ms=60_000), timeout=10)
            return reply.reservation_id

    ids = await asyncio.gather(*(reserve_on_own_connection(n) for n in range(CONNECTIONS)))
    assert len(set(ids)) == CONNECTIONS
    stock = await stub.GetStock(stock_pb2.GetStockRequest(skus=[sku]))
    assert (stock.levels[0].reserved, stock.levels[0].available) == (CONNECTIONS, 0)
