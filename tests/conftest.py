"""Session fixtures for the service tests: a fresh PostgreSQL database per run (random name,
dropped after), a fresh Redis key prefix, a real `python -m service` subprocess on a free port,
and a grpc.aio stub talking to it. `service_runner` makes more servers for restart tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
import service_process

# One definition of the shared-cluster role and of a free port, used by the benchmark too.
from loadtest.processes import pg_user

REDIS_URL = os.environ.get("STOCK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN_TOKEN = "test-admin-token-" + uuid.uuid4().hex[:8]


def admin_dsn() -> str:
    return f"postgresql://{pg_user()}@127.0.0.1:5432/postgres"


async def create_database() -> str:
    """A new empty database on the shared cluster; returns its DSN."""
    name = "stock_test_" + uuid.uuid4().hex[:12]
    await service_process.create_database(admin_dsn(), name)
    return f"postgresql://{pg_user()}@127.0.0.1:5432/{name}"


async def drop_database(dsn: str) -> None:
    await service_process.drop_database(admin_dsn(), dsn.rsplit("/", 1)[1])


def service_runner(database_url: str, redis_prefix: str,
                   **extra_env: str) -> service_process.ServiceProcess:
    """A `python -m service` subprocess (not started) on the shared Redis, with this run's
    operator token."""
    return service_process.ServiceProcess(database_url, REDIS_URL, redis_prefix, ADMIN_TOKEN,
                                          extra_env=extra_env)


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    dsn = await create_database()
    yield dsn
    await drop_database(dsn)


@pytest.fixture(scope="session")
def redis_prefix_session() -> str:
    return f"stocktest_{uuid.uuid4().hex[:10]}:"


@pytest.fixture(scope="session")
async def server(database_url, redis_prefix_session
                 ) -> AsyncIterator[service_process.ServiceProcess]:
    runner = service_runner(database_url, redis_prefix_session)
    try:
        await runner.start()
        yield runner
    finally:
        if runner.process is not None:
            print(f"--- service log (exit {runner.terminate()}) ---\n{runner.log_tail()}")
        runner.cleanup()


@pytest.fixture(scope="session")
async def channel(server) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield channel


@pytest.fixture(scope="session")
def stub(channel):
    from service.gen.stock.v1 import stock_pb2_grpc
    return stock_pb2_grpc.StockServiceStub(channel)


@pytest.fixture(scope="session")
async def db(database_url, server) -> AsyncIterator[asyncpg.Pool]:
    """Read access to the server's database (after the server migrated it)."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2, command_timeout=10)
    yield pool
    await pool.close()


@pytest.fixture
def admin_metadata() -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {ADMIN_TOKEN}"), ("x-stock-actor", "tester"))
