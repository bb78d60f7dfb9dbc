"""Health tells the truth; reflection is on; PostgreSQL unreachable means UNAVAILABLE."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from conftest import create_database, drop_database, service_runner
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from stock_helpers import unique

from loadtest.processes import free_port
from service.gen.stock.v1 import stock_pb2, stock_pb2_grpc

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


async def test_serving_after_recovery(server):
    assert await server.health("") == SERVING
    assert await server.health("stock.v1.StockService") == SERVING


async def test_reflection_lists_the_services(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]))
    async for response in responses:
        names = {service.name for service in response.list_services_response.service}
        assert {"stock.v1.StockService", "grpc.health.v1.Health"} <= names
        break


async def test_unreachable_postgres_is_not_serving_and_unavailable():
    # Nothing listens on this port: recovery keeps retrying, calls are refused meanwhile.
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/stock"
    runner = service_runner(nowhere, unique("down") + ":", STOCK_REBUILD_BACKOFF_MAX_MS="200")
    runner.launch()
    try:
        await runner.wait_health(NOT_SERVING)
        assert await runner.health("stock.v1.StockService") == NOT_SERVING
        async with grpc.aio.insecure_channel(runner.address) as channel:
            stub = stock_pb2_grpc.StockServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetStock(stock_pb2.GetStockRequest(skus=["a"]), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert runner.terminate() == 0, runner.log_tail()
    finally:
        runner.terminate()
        runner.log_path.unlink(missing_ok=True)


async def test_memory_prefaulted_before_serving():
    """STOCK_MEMORY_PREFAULT_MIB: the pages are touched (and resident) before health turns
    SERVING, and the service then serves as usual."""
    mib = 128
    database_url = await create_database()
    runner = service_runner(database_url, unique("prefault") + ":",
                            STOCK_MEMORY_PREFAULT_MIB=str(mib))
    try:
        await runner.start()
        assert f"touched {mib} MiB of memory" in runner.log_tail()
        status = Path(f"/proc/{runner.process.pid}/status").read_text()
        resident_kib = int(next(line for line in status.splitlines()
                                if line.startswith("VmRSS:")).split()[1])
        assert resident_kib >= mib * 1024, status
        async with grpc.aio.insecure_channel(runner.address) as channel:
            stub = stock_pb2_grpc.StockServiceStub(channel)
            response = await stub.GetStock(stock_pb2.GetStockRequest(skus=["a"]), timeout=5)
        assert list(response.levels) == []  # a fresh database: no item yet
        assert runner.terminate() == 0, runner.log_tail()
    finally:
        runner.cleanup()
        await drop_database(database_url)
