"""A real `python -m service` subprocess for tests, and throw-away databases on a cluster.

One implementation for the service tests (tests/conftest.py) and the operations tests
(tests/ops/conftest.py): each gives it its own database, Redis URL, key prefix, operator token
and extra environment. Output goes to a log file, shown when a test fails.
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
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loadtest.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
# Bounded waits: a broken start fails the test instead of hanging it.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
HEALTH_POLL_S = 0.05
LOG_TAIL_CHARS = 6_000
ADMIN_CONNECT_TIMEOUT_S = 10


async def admin_execute(admin_dsn: str, sql: str) -> None:
    """One statement on its own connection (CREATE/DROP DATABASE cannot run in a pool's)."""
    connection = await asyncpg.connect(admin_dsn, timeout=ADMIN_CONNECT_TIMEOUT_S)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def create_database(admin_dsn: str, name: str) -> None:
    await admin_execute(admin_dsn, f'CREATE DATABASE "{name}"')


async def drop_database(admin_dsn: str, name: str) -> None:
    await admin_execute(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class ServiceProcess:
    database_url: str
    redis_url: str
    redis_prefix: str
    admin_token: str
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    log_path: Path = field(
        default_factory=lambda: Path(tempfile.mkstemp(prefix="stock_service_", suffix=".log")[1]))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return dict(os.environ, STOCK_LISTEN=self.address, STOCK_DATABASE_URL=self.database_url,
                    STOCK_REDIS_URL=self.redis_url, STOCK_REDIS_PREFIX=self.redis_prefix,
                    STOCK_ADMIN_TOKEN=self.admin_token,
                    STOCK_METRICS_LISTEN=f"127.0.0.1:{self.metrics_port}",
                    PYTHONUNBUFFERED="1", **self.extra_env)

    def launch(self) -> None:
        assert self.process is None or self.process.poll() is not None, "service already running"
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service"], cwd=ROOT, env=self.env(), stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)

    async def start(self, timeout_s: float = START_TIMEOUT_S) -> ServiceProcess:
        self.launch()
        await self.wait_health(health_pb2.HealthCheckResponse.SERVING, timeout_s)
        return self

    async def health(self, service: str = "") -> int | None:
        """The health status of `service` ("" = overall), or None when nothing answers."""
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
                raise AssertionError(
                    f"service exited with {self.process.returncode}:\n{self.log_tail()}")
            if await self.health() == status:
                return
            await asyncio.sleep(HEALTH_POLL_S)
        raise AssertionError(f"service health never became {status}:\n{self.log_tail()}")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_S)

    def terminate(self) -> int | None:
        """SIGTERM and wait (SIGKILL past the bound); the exit code, None if never launched."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        return "(no log)"

    def cleanup(self) -> None:
        self.terminate()
        with contextlib.suppress(OSError):
            self.log_path.unlink()
