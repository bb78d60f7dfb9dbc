"""Servers under test as child processes, and throw-away PostgreSQL databases for them.

Shared by the load test (tests/loadtest/test_locust.py) and the benchmark (loadtest/bench.py):
both start `python -m service` (or the baselines) on a free 127.0.0.1 port against a fresh
database, and drop the database afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.gen.stock.v1 import stock_pb2, stock_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
PG_PORT = 5432
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.2


def pg_user() -> str:
    """The role scripts/ensure_services.sh found working (trust authentication)."""
    stamp = ROOT / ".stamps" / "pg_user"
    return stamp.read_text().strip() if stamp.exists() else "postgres"


def database_url(name: str) -> str:
    return f"postgresql://{pg_user()}@{HOST}:{PG_PORT}/{name}"


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", HOST, "-p", str(PG_PORT), "-U", pg_user(), "-d", "postgres",
                    "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True, capture_output=True)


@contextmanager
def fresh_database(prefix: str):
    """Yields the URL of a new, empty database, dropped (connections forced off) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    psql(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(name)
    finally:
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_until_serving(target: str, process: subprocess.Popen, *, health: bool) -> None:
    """Until the server answers: health SERVING when it has health, else a GetStock."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    with grpc.insecure_channel(target) as channel:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode} before serving")
            try:
                if health:
                    answer = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=1.0)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                else:
                    stock_pb2_grpc.StockServiceStub(channel).GetStock(
                        stock_pb2.GetStockRequest(skus=["ready"]), timeout=1.0)
                    return
            except grpc.RpcError:
                pass
            time.sleep(POLL_INTERVAL_S)
    raise RuntimeError(f"server on {target} not serving after {READY_TIMEOUT_S} s")


@contextmanager
def server(arguments: list[str], *, env: dict[str, str], health: bool, log_path: Path,
           checkout: Path = ROOT):
    """Runs `python <arguments>` from the repository root (or from another checkout, with
    that checkout's .venv); yields the process once serving."""
    python = sys.executable if checkout == ROOT else str(checkout / ".venv" / "bin" / "python")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([python, *arguments], cwd=checkout, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            target = env["STOCK_LISTEN"]
            wait_until_serving(target, process, health=health)
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def service_env(listen: str, database: str, admin_token: str, **extra: str) -> dict[str, str]:
    """The environment of `python -m service` under test: its own Redis prefix, no metrics."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("STOCK_")}
    env.update(STOCK_LISTEN=listen, STOCK_DATABASE_URL=database, STOCK_ADMIN_TOKEN=admin_token,
               STOCK_REDIS_PREFIX=f"loadtest-{uuid.uuid4().hex[:12]}:", **extra)
    return env
