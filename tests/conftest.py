"""Session fixtures for the service tests: a fresh PostgreSQL database per run (random name,
dropped after), a fresh Redis key prefix, a real `python -m service` subprocess on a free port,
and a grpc.aio stub talking to it. `ServiceRunner` starts more servers for restart tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

# One definition of the shared-cluster role and of a free port, used by the benchmark too.
from loadtest.processes import free_port, pg_user

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("STOCK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN_TOKEN = "test-admin-token-" + uuid.uuid4().hex[:8]
# Bounded waits: a broken start fails the run instead of hanging it.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
HEALTH_POLL_S = 0.05
LOG_TAIL_CHARS = 6_000


def admin_dsn() -> str:
    return f"postgresql://{pg_user()}@127.0.0.1:5432/postgres"


async def create_database() -> str:
    """A new empty database; returns its DSN."""
    name = "stock_test_" + uuid.uuid4().hex[:12]
    connection = await asyncpg.connect(admin_dsn(), timeout=10)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return f"postgresql://{pg_user()}@127.0.0.1:5432/{name}"


async def drop_database(dsn: str) -> None:
    name = dsn.rsplit("/", 1)[1]
    connection = await asyncpg.connect(admin_dsn(), timeout=10)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


class ServiceRunner:
    """One `python -m service` subprocess with its own env; output kept in a log file."""

    def __init__(self, database_url: str, redis_prefix: str, **extra_env: str):
        self.database_url = database_url
        self.port = free_port()
        self.metrics_port = free_port()
        self.env = dict(os.environ, STOCK_LISTEN=self.address, STOCK_DATABASE_URL=database_url,
                        STOCK_REDIS_URL=REDIS_URL, STOCK_REDIS_PREFIX=redis_prefix,
                        STOCK_ADMIN_TOKEN=ADMIN_TOKEN,
                        STOCK_METRICS_LISTEN=f"127.0.0.1:{self.metrics_port}",
                        PYTHONUNBUFFERED="1", **extra_env)
        self.log_path = Path(tempfile.mkstemp(prefix="stock_service_", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def launch(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service"], cwd=ROOT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)

    async def start(self) -> ServiceRunner:
        self.launch()
        await self.wait_health(health_pb2.HealthCheckResponse.SERVING)
        return self

    async def health(self, service: str = "") -> int | None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            try:
                response = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=1)
            except grpc.aio.AioRpcError:
                return None
        return response.status

    async def wait_health(self, status: int, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"service exited {self.process.returncode}\n{self.log()}")
            if await self.health() == status:
                return
            await asyncio.sleep(HEALTH_POLL_S)
        raise AssertionError(f"health never became {status}\n{self.log()}")

    def terminate(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        return "(no log)"


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    dsn = await create_database()
    yield dsn
    await drop_database(dsn)


@pytest.fixture(scope="session")
def redis_prefix_session() -> str:
    return f"stocktest_{uuid.uuid4().hex[:10]}:"


@pytest.fixture(scope="session")
async def server(database_url, redis_prefix_session) -> AsyncIterator[ServiceRunner]:
    runner = ServiceRunner(database_url, redis_prefix_session)
    try:
        await runner.start()
        yield runner
    finally:
        if runner.process is not None:
            code = runner.terminate()
            print(f"--- service log (exit {code}) ---\n{runner.log()}")
        runner.log_path.unlink(missing_ok=True)


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
