"""Shared helpers for the operations tests: free ports, private Redis and PostgreSQL processes
(so outage tests never touch the machine's shared servers), fresh databases and a launcher for a
real `python -m service` subprocess.
"""

from __future__ import annotations

import asyncio
import glob
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from service_process import ServiceProcess, create_database, drop_database

# One definition of the shared-cluster role and of a free port, used by the benchmark too.
from loadtest.processes import free_port, pg_user

ROOT = Path(__file__).resolve().parents[2]
SHARED_REDIS_URL = "redis://127.0.0.1:6379/0"
SHARED_PG_HOST = "127.0.0.1"
SHARED_PG_PORT = 5432
ADMIN_TOKEN = "ops-test-token"

# Waits, each bounded so a broken start fails the test instead of hanging it.
REDIS_START_S_MAX = 10.0
PG_START_S_MAX = 30.0
CLI_TIMEOUT_S = 30


def unique_name(kind: str) -> str:
    return f"ops_{kind}_{uuid.uuid4().hex[:12]}"


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


async def async_wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


# One ledger row as the service writes it (its $1..$16 in column order), for tests that build a
# history by hand.
LEDGER_INSERT = """
INSERT INTO ledger (lsn, at_ms, sku, location, kind, delta_on_hand, delta_reserved,
                    on_hand_after, reserved_after, reservation_id, order_id, request_id,
                    reason, actor, delta_safety, safety_after)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
"""


async def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """stockctl as an operator runs it: `python -m service.cli ...` in a subprocess."""
    command = [sys.executable, "-m", "service.cli", *argv]
    return await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, capture_output=True, text=True,
        timeout=CLI_TIMEOUT_S, env=env,
    )


# ---- private Redis -----------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of our own on a free port. Persistent (append-only file in a temp dir) so
    keys set before a stop are still there after a start: an outage test can then prove that
    the keys were deleted by invalidation, not lost by the restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="ops_redis_")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None, "private redis already running"
        self.process = subprocess.Popen(
            [
                "redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                "--dir", self.dir, "--save", "", "--appendonly", "yes",
                "--appendfsync", "always", "--daemonize", "no", "--logfile", "redis.log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.ping, REDIS_START_S_MAX, f"private redis on {self.port}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
        self.process.terminate()
        try:
            self.process.wait(timeout=REDIS_START_S_MAX)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers (a hung Redis)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def ping(self) -> bool:
        result = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "ping"],
            capture_output=True, text=True, timeout=5,
        )
        return result.stdout.strip() == "PONG"

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


# ---- private PostgreSQL ------------------------------------------------------------------------


def postgres_bin(name: str) -> str:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        pytest.skip(f"PostgreSQL server binary {name} not installed")
    return candidates[-1]


def as_postgres(argv: list[str]) -> list[str]:
    """initdb and pg_ctl refuse to run as root: run them as the postgres account."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free port that a test may stop and start at will."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ops_pg_"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")

    @property
    def dsn_admin(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        subprocess.run(
            as_postgres([postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                         "-A", "trust", "--no-sync", "-E", "UTF8"]),
            check=True, capture_output=True, timeout=120,
        )

    def start(self) -> None:
        # fsync off: the tests stop the server process, never the machine, so the OS page cache
        # survives and durability across the restart is still real; it saves seconds per test.
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
                   "-c fsync=off -c max_connections=50")
        subprocess.run(
            as_postgres([postgres_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                         "-o", options, "-w", "-t", str(int(PG_START_S_MAX)), "start"]),
            check=True, capture_output=True, timeout=PG_START_S_MAX + 5,
        )

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            as_postgres([postgres_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                         "stop"]),
            capture_output=True, timeout=PG_START_S_MAX + 5,
        )

    def cleanup(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.cleanup()


# ---- databases ---------------------------------------------------------------------------------


def shared_admin_dsn() -> str:
    return f"postgresql://{pg_user()}@{SHARED_PG_HOST}:{SHARED_PG_PORT}/postgres"


def shared_dsn(database: str) -> str:
    return f"postgresql://{pg_user()}@{SHARED_PG_HOST}:{SHARED_PG_PORT}/{database}"


@pytest.fixture
async def shared_database() -> AsyncIterator[str]:
    """A fresh, empty database on the shared cluster; yields its DSN and drops it after."""
    name = unique_name("db")
    await create_database(shared_admin_dsn(), name)
    try:
        yield shared_dsn(name)
    finally:
        await drop_database(shared_admin_dsn(), name)


@pytest.fixture
def redis_prefix() -> str:
    return f"{unique_name('redis')}:"


# ---- the service subprocess --------------------------------------------------------------------


@pytest.fixture
def service_factory(request) -> Iterator:
    """Makes ServiceProcess objects; terminates them after the test. Their logs are printed, and
    pytest shows captured output only for a failed test."""
    made: list[ServiceProcess] = []

    def make(**kwargs) -> ServiceProcess:
        service = ServiceProcess(admin_token=ADMIN_TOKEN, **kwargs)
        made.append(service)
        return service

    yield make
    for service in made:
        service.terminate()
        print(f"--- service log {service.log_path} ---\n{service.log_tail()}")
        service.cleanup()


def service_available() -> bool:
    """The service can run: its entry point exists and the engine is built (`make build`;
    `make test` builds first, so this only skips partial checkouts)."""
    written = all((ROOT / "service" / name).exists() for name in ("server.py", "__main__.py"))
    return written and importlib.util.find_spec("service._core") is not None


requires_service = pytest.mark.skipif(
    not service_available(), reason="service not runnable yet (server or built engine missing)"
)
