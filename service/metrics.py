"""Prometheus metrics: one module-level set (the default registry), served if configured.

Every backlog the service has is visible here: the engine journal waiting for PostgreSQL, the
invalidation queue, and the outcome and latency of every call and every batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Calls answer in well under a millisecond in memory, plus one group commit (a few ms).
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)

REQUESTS = Counter("stock_requests_total", "RPCs answered", ["method", "code"])
REQUEST_SECONDS = Histogram("stock_request_seconds", "RPC latency", ["method"],
                            buckets=LATENCY_BUCKETS_S)
# Set by the servicer, which counts the calls in flight to bound them (service/servicer.py).
INFLIGHT = Gauge("stock_requests_inflight", "RPCs being served")
BATCH_OPERATIONS = Histogram("stock_commit_batch_operations",
                             "Engine operations (LSNs) per PostgreSQL transaction",
                             buckets=BATCH_SIZE_BUCKETS)
BATCH_ROWS = Histogram("stock_commit_batch_item_rows", "Item rows updated per transaction",
                       buckets=BATCH_SIZE_BUCKETS)
COMMIT_SECONDS = Histogram("stock_commit_seconds", "PostgreSQL batch transaction latency",
                           buckets=LATENCY_BUCKETS_S)
COMMIT_OVERLAPPED = Counter("stock_commit_overlapped_total",
                            "Batch transactions started while another was still being written")
COMMIT_LOGGED = Counter("stock_commit_logged_total",
                        "Batch transactions written as one journal_log row (to be projected)")
JOURNAL_LOG_OPERATIONS = Gauge("stock_journal_log_operations",
                               "Operations durable in journal_log, not yet projected into tables")
PROJECTED_OPERATIONS = Counter("stock_projected_operations_total",
                               "Operations projected from journal_log into the tables")
PROJECTION_FAILURES = Counter("stock_projection_failures_total",
                              "Failed attempts to project a journal_log row (retried)")
PROJECTION_SECONDS = Histogram("stock_projection_seconds",
                               "Time to project one journal_log row into the tables",
                               buckets=LATENCY_BUCKETS_S)
COMMIT_FAILURES = Counter("stock_commit_failures_total", "Batch transactions that failed")
REBUILDS = Counter("stock_engine_rebuilds_total", "Engine rebuilds from PostgreSQL")
JOURNAL_PENDING = Gauge("stock_journal_pending", "Journal operations not yet in PostgreSQL")
DURABILITY_WAITERS = Gauge("stock_durability_waiters", "Calls waiting for their group commit")
BATCH_WINDOW_SECONDS = Gauge("stock_batch_window_seconds",
                             "How long the committer lets calls gather into one batch now")
EXPIRATIONS = Counter("stock_expirations_total", "Reservations expired by the sweeper")
EXPIRY_LAG_SECONDS = Gauge("stock_expiry_lag_seconds",
                           "How long the oldest active hold has been due, after a sweep round")
PRUNED_ROWS = Counter("stock_pruned_rows_total",
                      "Rows deleted from PostgreSQL past their retention (reservations: with "
                      "their lines)", ["table"])
PRUNE_FAILURES = Counter("stock_prune_failures_total",
                         "Pruning rounds that failed (retried at the next interval)")
INVALIDATION_QUEUE = Gauge("stock_invalidation_queue_keys", "Cache keys waiting for deletion")
INVALIDATION_DROPPED = Gauge("stock_invalidation_dropped_keys",
                             "Cache keys dropped because the queue was full (since start)")
SERVING = Gauge("stock_serving", "1 while the engine is loaded and PostgreSQL writable")
GC_PAUSE_BUCKETS_S = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25)
GC_PAUSE_SECONDS = Histogram("stock_gc_pause_seconds",
                             "Python garbage collector pauses (the event loop stands still)",
                             ["generation"], buckets=GC_PAUSE_BUCKETS_S)

LOOP_LAG_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1)
LOOP_LAG_SECONDS = Histogram("stock_event_loop_lag_seconds",
                             "How late the event loop ran a timer due every 50 ms "
                             "(service/loop_lag.py)", buckets=LOOP_LAG_BUCKETS_S)


# Engine.stats() keys counted in stock_engine_table_entries.
ENGINE_TABLE_ENTRIES = ("items", "reservations_active", "reservations_terminal",
                        "idempotency_records", "expiry_queue_entries")


class EngineTables(Collector):
    """The live engine's table sizes (`Engine.stats()`), read when /metrics is scraped, so no
    call pays for them. `stock_engine_table_room` is how many entries a table holds before it
    grows, a rehash inside the call that crosses the line (STOCK_ENGINE_HOLDS_PRESIZED sets
    it); entries near the room mean the presized room is running out."""

    def __init__(self) -> None:
        # The live engine, or None while there is none (set by service/server.py).
        self.source: Callable[[], Any] = lambda: None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        engine = self.source()
        if engine is None:
            return
        stats = engine.stats()
        entries = GaugeMetricFamily("stock_engine_table_entries",
                                    "Entries in the engine's tables", labels=["table"])
        for name in ENGINE_TABLE_ENTRIES:
            entries.add_metric([name], stats[name])
        yield entries
        room = GaugeMetricFamily("stock_engine_table_room",
                                 "Entries a growing engine table holds before it grows",
                                 labels=["table"])
        room.add_metric(["reservations"], stats["reservations_capacity"])
        room.add_metric(["idempotency_records"], stats["idempotency_capacity"])
        yield room


ENGINE_TABLES = EngineTables()
REGISTRY.register(ENGINE_TABLES)


class GcPauseObserver:
    """Times every collection of Python's cyclic garbage collector (a `gc.callbacks` entry):
    while it runs no call is served, so its pauses are part of the tail latency."""

    def __init__(self) -> None:
        self._started = 0.0
        self._histograms = [GC_PAUSE_SECONDS.labels(str(generation)) for generation in range(3)]

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._histograms[info["generation"]].observe(time.perf_counter() - self._started)


def serve(listen: str) -> None:
    """Starts the /metrics HTTP endpoint (a daemon thread) on host:port."""
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host or "127.0.0.1")
    log.info("metrics on http://%s/metrics", listen)


def record_invalidator(stats: dict[str, int]) -> None:
    """Copies the invalidator's own counters (service/invalidation.py Invalidator.stats)."""
    INVALIDATION_QUEUE.set(stats.get("queued", 0))
    INVALIDATION_DROPPED.set(stats.get("dropped", 0))


class CallObserver:
    """Counts one RPC method's calls by final status code and times them.

    Label children are looked up once per code and kept: prometheus_client's labels() costs
    microseconds, and this runs on every call (see service/servicer.py `rpc`)."""

    def __init__(self, method: str):
        self._method = method
        self._seconds = REQUEST_SECONDS.labels(method)
        self._counts: dict[str, Counter] = {}

    def started(self) -> float:
        return time.monotonic()

    def finished(self, started: float, code) -> None:
        name = code_name(code)
        counter = self._counts.get(name)
        if counter is None:
            counter = self._counts[name] = REQUESTS.labels(self._method, name)
        counter.inc()
        self._seconds.observe(time.monotonic() - started)


def code_name(code) -> str:
    if isinstance(code, grpc.StatusCode):
        return code.name
    return str(code)
