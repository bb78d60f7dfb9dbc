"""serve(): the gRPC server with health, reflection, interceptors and an orderly shutdown.

Start order: listen first (health answers NOT_SERVING), then load the engine from PostgreSQL
in the background; SERVING once it is loaded and overdue holds are expired. SIGTERM (or
SIGINT): NOT_SERVING; new calls are refused with UNAVAILABLE (retryable) while the calls
already accepted finish (they wait for their group commit); then gRPC stops, what is still
journaled is written, the cache invalidations are flushed, exit 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service import metrics
from service.auth import OperatorAuth
from service.committer import Committer
from service.config import Config
from service.engine import prefault_memory
from service.front import Front
from service.gen.stock.v1 import stock_pb2
from service.invalidation import Invalidator
from service.loop_lag import LoopLagProbe
from service.persistence import Persistence
from service.projector import Projector
from service.pruner import Pruner
from service.servicer import StockServicer, add_to_server
from service.sweeper import Sweeper

log = logging.getLogger(__name__)

SERVICE_NAME = stock_pb2.DESCRIPTOR.services_by_name["StockService"].full_name
# Health reports under both the overall name "" and the service name.
HEALTH_NAMES = ("", SERVICE_NAME)
INVALIDATOR_STOP_TIMEOUT_S = 2.0
PENDING_HARD_LIMIT_FACTOR = 2
# gRPC core's own `grpc.server.max_pending_requests`.
GRPC_PENDING_REQUESTS_DEFAULT = 1_000
# Calls refused while draining still need a moment to be answered before gRPC stops.
SERVER_STOP_GRACE_MIN_S = 0.5


class App:
    """Everything one running service holds; start() and stop() in that order, once."""

    def __init__(self, config: Config):
        self.config = config
        self.persistence = Persistence(config.database_url, pool_size=config.database_pool_size,
                                       timeout_ms=config.database_timeout_ms,
                                       writers=config.database_writers)
        self.invalidator = Invalidator(config.redis_url, config.redis_prefix,
                                       queue_keys_max=config.invalidation_queue_keys_max)
        self.health = health.aio.HealthServicer()
        self.committer = Committer(
            self.persistence, self.invalidator, window_ms=config.batch_window_ms,
            window_max_ms=config.batch_window_max_ms,
            operations_max=config.batch_operations_max, writers=config.database_writers,
            backoff_initial_ms=config.rebuild_backoff_initial_ms,
            backoff_max_ms=config.rebuild_backoff_max_ms, on_serving=self._set_serving,
            journal_log_max_operations=config.journal_log_max_operations,
            holds_presized=config.engine_holds_presized)
        self.projector = Projector(self.persistence,
                                   lag_max_operations=config.journal_log_max_operations)
        self.persistence.on_projected = lambda projected: self.invalidator.submit(
            projected.items)
        self.sweeper = Sweeper(self.committer, interval_ms=config.sweep_interval_ms)
        self.pruner = Pruner(self.persistence,
                             idempotency_retention_ms=config.idempotency_retention_ms,
                             reservation_retention_ms=config.reservation_retention_ms)
        self.servicer = StockServicer(self.committer, self.persistence,
                                      OperatorAuth(config.admin_token),
                                      inflight_calls_max=config.inflight_calls_max)
        # The servicer bounds the stock calls in flight for the whole process; each server's
        # own bound (the same number) also covers health and reflection calls.
        self.front = Front(config.grpc_acceptors, self._register,
                           maximum_concurrent_rpcs=config.inflight_calls_max,
                           options=server_options(config))
        self.loop_lag = LoopLagProbe()
        metrics.ENGINE_TABLES.source = lambda: self.committer.live_engine
        self.port = 0

    def _register(self, server: grpc.aio.Server) -> None:
        """Adds the stock API, health and reflection to one server of the front."""
        add_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), server)

    async def _set_serving(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in HEALTH_NAMES:
            await self.health.set(name, status)
        log.info("health: %s", "SERVING" if serving else "NOT_SERVING")

    async def start(self) -> None:
        if self.config.memory_prefault_mib:
            # Before anything serves, so blocking the event loop delays no call.
            started = time.monotonic()
            prefault_memory(self.config.memory_prefault_mib)
            log.info("touched %d MiB of memory for the engine in %.1f s",
                     self.config.memory_prefault_mib, time.monotonic() - started)
        if self.config.metrics_listen:
            metrics.serve(self.config.metrics_listen)
        await self._set_serving(False)
        self.port = self.front.bind(self.config.listen)
        await self.invalidator.start()
        await self.front.start(loop_nice=self.config.loop_nice)
        log.info("listening on %s", self.config.listen)
        self.committer.start()
        self.projector.start()
        self.sweeper.start()
        self.pruner.start()
        self.loop_lag.start()

    async def stop(self) -> None:
        log.info("shutting down")
        await self.loop_lag.stop()
        await self.sweeper.stop()
        await self.pruner.stop()
        await self.health.enter_graceful_shutdown()
        started = time.monotonic()
        grace_s = self.config.shutdown_grace_ms / 1000
        await self.committer.drain(grace_s)
        await self.front.stop(max(SERVER_STOP_GRACE_MIN_S,
                                  grace_s - (time.monotonic() - started)))
        await self.projector.stop()  # what is left, the next start's recovery projects
        await self.committer.stop()
        await self.invalidator.stop(INVALIDATOR_STOP_TIMEOUT_S)
        await self.persistence.close()
        log.info("stopped")


def server_options(config: Config) -> list[tuple[str, int]]:
    """gRPC core cancels (CANCELLED, not RESOURCE_EXHAUSTED) calls arriving while more than
    `grpc.server.max_pending_requests` (default 1,000) wait to be picked up by the event loop;
    a burst of 2,000 calls met that. Raise it to our own bound, which answers properly, and
    never below gRPC's default: with a small bound (4 in a test) a burst of 400 calls was
    all cancelled by gRPC before the event loop could refuse one with RESOURCE_EXHAUSTED."""
    pending = max(config.inflight_calls_max, GRPC_PENDING_REQUESTS_DEFAULT)
    return [("grpc.server.max_pending_requests", pending),
            ("grpc.server.max_pending_requests_hard_limit", pending * PENDING_HARD_LIMIT_FACTOR)]


async def serve(config: Config) -> None:
    """Runs until SIGTERM or SIGINT, then shuts down in order."""
    app = App(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    gc.callbacks.append(metrics.GcPauseObserver())
    await app.start()
    # Everything made so far (modules, protobuf descriptors, gRPC and driver state) lives as
    # long as the process: moved out of the collector's generations, a full collection no
    # longer walks it (the engine's own state is in Rust and never was there). Measured pauses:
    # docs/BENCHMARKS.md ("Garbage collector pauses").
    gc.freeze()
    await stop.wait()
    await app.stop()
