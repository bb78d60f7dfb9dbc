"""Service configuration: every setting the service reads, from the environment, with defaults.

Each field's docstring names its environment variable. Durations carry their unit in the name.
`Config.from_env()` is the only place that reads `os.environ`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from service.front import is_unix_socket
from service.loop_priority import NICE_MAX, NICE_MIN
from service.validation import limit

# More writers than cores buys nothing but connections and row-lock waits.
DATABASE_WRITERS_MAX = 8
# gRPC servers sharing the listening port (SO_REUSEPORT); each accepts calls on its own.
GRPC_ACCEPTORS_MAX = 64
# A batch window longer than this would hold every call for a visible pause.
BATCH_WINDOW_MS_MAX = 1_000
DAY_MS = 86_400_000
# An ended reservation stays readable at least this long (a late GetReservation, Commit or
# Release answers with what became of it rather than NOT_FOUND).
RESERVATION_RETENTION_MS_MIN = DAY_MS
# Retentions beyond ten years are a typo, not a policy.
RETENTION_MS_MAX = 3_650 * DAY_MS
# A longer log would make a restart spend minutes projecting it before serving.
JOURNAL_LOG_MAX_OPERATIONS_BOUND = 10_000_000


class ConfigError(ValueError):
    """A setting is missing or malformed; the service refuses to start."""


@dataclass(frozen=True)
class Config:
    listen: str = "127.0.0.1:50051"
    """STOCK_LISTEN: host:port of the gRPC server."""

    database_url: str = ""
    """STOCK_DATABASE_URL: PostgreSQL DSN (required; scripts/run.sh provides one for `make run`)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """STOCK_REDIS_URL: Redis holding the read cache the service invalidates after each commit."""

    redis_prefix: str = "stock:"
    """STOCK_REDIS_PREFIX: prefix of every cache key the service deletes."""

    admin_token: str = ""
    """STOCK_ADMIN_TOKEN: bearer token for Adjust, SetStock and SetSafetyStock. Empty: operator
    calls refused."""

    metrics_listen: str = ""
    """STOCK_METRICS_LISTEN: host:port for Prometheus /metrics. Empty: no metrics endpoint."""

    batch_window_ms: int = 3
    """STOCK_BATCH_WINDOW_MS: under concurrency, at most one batch starts per window (the
    committer waits out the rest of it for more changes): a few ms of latency for far fewer
    PostgreSQL transactions. A lone call does not wait."""

    batch_window_max_ms: int = 8
    """STOCK_BATCH_WINDOW_MAX_MS: the window stretches from STOCK_BATCH_WINDOW_MS up to this as
    the machine's processors become busy (service/batch_window.py): larger batches cost less
    processor time per call when that is what limits throughput. Equal to
    STOCK_BATCH_WINDOW_MS (or 0): a fixed window."""

    batch_operations_max: int = 10_000
    """STOCK_BATCH_OPERATIONS_MAX: journal operations per PostgreSQL transaction (at most the
    engine's JOURNAL_TAKE_OPERATIONS_MAX)."""

    database_pool_size: int = 4
    """STOCK_DATABASE_POOL_SIZE: asyncpg connections for look-ups of reservations no longer in
    memory, health probes and maintenance (batch writers have their own connections)."""

    database_writers: int = 2
    """STOCK_DATABASE_WRITERS: batches written at once, each on its own connection (1..8),
    once a backlog of large batches builds up and only for batches that share no row (small
    or overlapping batches go one at a time). Two wrote 1.66 times the reservations/s of one
    for disjoint 1,000-reservation batches on this 2-core machine (loadtest/bench_write.py);
    1 writes strictly one batch after another."""

    journal_log_max_operations: int = 1_000_000
    """STOCK_JOURNAL_LOG_MAX_OPERATIONS: large batches (at least LOG_WRITE_OPERATIONS_MIN
    operations) are made durable as one journal_log row and projected into the tables after
    the burst (docs/PERSISTENCE.md, "The journal log"); at most this many operations wait
    there (beyond, batches go into the tables directly). Recovery projects them all before
    it loads, at about 25,000 operations/s here. 0: never log, always write the tables."""

    database_timeout_ms: int = 5_000
    """STOCK_DATABASE_TIMEOUT_MS: bound on every SQL statement and on connecting."""

    idempotency_retention_ms: int = 7 * DAY_MS
    """STOCK_IDEMPOTENCY_RETENTION_MS: idempotency records older than this are pruned from
    PostgreSQL (and so are not reloaded after a restart)."""

    reservation_retention_ms: int = 30 * DAY_MS
    """STOCK_RESERVATION_RETENTION_MS: reservations that ended (committed, released, expired)
    longer ago than this are deleted from PostgreSQL with their lines (service/pruner.py);
    GetReservation, Commit and Release then answer NOT_FOUND for them. The ledger keeps their
    movements. At least a day (RESERVATION_RETENTION_MS_MIN), at most RETENTION_MS_MAX; 0:
    keep every reservation."""

    inflight_calls_max: int = 10_000
    """STOCK_INFLIGHT_CALLS_MAX: concurrent stock RPCs in the process; beyond it calls get
    RESOURCE_EXHAUSTED at once (each gRPC server of the front also caps its own calls, health
    and reflection included, at this number)."""

    grpc_acceptors: int = 16
    """STOCK_GRPC_ACCEPTORS: gRPC servers (1..64; 1 with a unix socket) in the one process,
    all on the listening port, each accepting the calls of the client connections the kernel
    gives it (service/front.py says why; the measurements that chose 16 are in
    docs/BENCHMARKS.md, "Where the slow calls wait")."""

    loop_nice: int = 0
    """STOCK_LOOP_NICE: niceness of the thread that runs the event loop, set once the gRPC
    front has started (-20..19; service/loop_priority.py). 0 leaves the niceness the service
    was started with. A negative value lets that thread run first on a host whose cores it
    shares with PostgreSQL and other work (measured: docs/BENCHMARKS.md, "The event loop
    thread's priority"); it needs CAP_SYS_NICE, and without it the service logs a warning and
    runs as it was started."""

    sweep_interval_ms: int = 250
    """STOCK_SWEEP_INTERVAL_MS: longest pause between two expiry sweeps."""

    shutdown_grace_ms: int = 10_000
    """STOCK_SHUTDOWN_GRACE_MS: time in-flight calls get to finish after SIGTERM."""

    rebuild_backoff_initial_ms: int = 100
    """STOCK_REBUILD_BACKOFF_INITIAL_MS: first pause between attempts to reach PostgreSQL."""

    rebuild_backoff_max_ms: int = 5_000
    """STOCK_REBUILD_BACKOFF_MAX_MS: the pause doubles up to this."""

    log_level: str = "INFO"
    """STOCK_LOG_LEVEL: Python logging level (DEBUG, INFO, WARNING, ...)."""

    memory_prefault_mib: int = 0
    """STOCK_MEMORY_PREFAULT_MIB: MiB the engine's allocator touches before the service
    serves, keeping from then on every page it frees (resident memory then never falls below
    its high-water mark). Growth under load, a flash sale's holds at about 800 bytes each,
    then costs no page faults when it happens: 1,024 raised a ReserveBatch burst by 11-19 %
    here (docs/BENCHMARKS.md, "Memory touched at start-up"). A GiB takes 0.5-4 s at start-up.
    0: off."""

    engine_holds_presized: int = 1_000_000
    """STOCK_ENGINE_HOLDS_PRESIZED: holds the engine's tables that grow with holds (the
    reservation index, the expiry queue, the idempotency records) have room for when it is
    built, on top of those it loads, each within its own bound. Below that, no call waits for
    a table to grow, a rehash of every entry on the event loop. What it costs and saves is
    in docs/OPERATIONS.md and docs/BENCHMARKS.md, "Tables sized in advance". 0: tables start
    small and double as they fill."""

    invalidation_queue_keys_max: int = 100_000
    """STOCK_INVALIDATION_QUEUE_KEYS_MAX: cache keys waiting for deletion before drops start."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Config:
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, object] = {}
        for field in fields(cls):
            name = "STOCK_" + field.name.upper()
            if name not in environ:
                continue
            raw = environ[name]
            if field.type in ("int", int):
                try:
                    values[field.name] = int(raw)
                except ValueError as exc:
                    raise ConfigError(f"{name}={raw!r}: not an integer") from exc
            else:
                values[field.name] = raw
        config = cls(**values)  # type: ignore[arg-type]
        config.check()
        return config

    def check(self) -> None:
        if not self.database_url:
            raise ConfigError("STOCK_DATABASE_URL is required")
        # The engine hands out at most this many operations per take_journal call.
        take_max = limit("JOURNAL_TAKE_OPERATIONS_MAX")
        if not 1 <= self.batch_operations_max <= take_max:
            raise ConfigError(f"STOCK_BATCH_OPERATIONS_MAX must be 1..{take_max}")
        positive = ("database_pool_size", "database_timeout_ms", "inflight_calls_max",
                    "sweep_interval_ms", "rebuild_backoff_initial_ms", "rebuild_backoff_max_ms",
                    "invalidation_queue_keys_max", "idempotency_retention_ms")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"STOCK_{name.upper()} must be positive")
        if not 1 <= self.grpc_acceptors <= GRPC_ACCEPTORS_MAX:
            raise ConfigError(f"STOCK_GRPC_ACCEPTORS must be 1..{GRPC_ACCEPTORS_MAX}")
        if is_unix_socket(self.listen) and self.grpc_acceptors != 1:
            raise ConfigError("STOCK_GRPC_ACCEPTORS must be 1 when STOCK_LISTEN is a unix socket")
        if not NICE_MIN <= self.loop_nice <= NICE_MAX:
            raise ConfigError(f"STOCK_LOOP_NICE must be {NICE_MIN}..{NICE_MAX}")
        if not 1 <= self.database_writers <= DATABASE_WRITERS_MAX:
            raise ConfigError(f"STOCK_DATABASE_WRITERS must be 1..{DATABASE_WRITERS_MAX}")
        if not 0 <= self.journal_log_max_operations <= JOURNAL_LOG_MAX_OPERATIONS_BOUND:
            raise ConfigError("STOCK_JOURNAL_LOG_MAX_OPERATIONS must be "
                              f"0..{JOURNAL_LOG_MAX_OPERATIONS_BOUND}")
        presized_max = limit("TABLE_SIZE_MAX")
        if not 0 <= self.engine_holds_presized <= presized_max:
            raise ConfigError(f"STOCK_ENGINE_HOLDS_PRESIZED must be 0..{presized_max}")
        prefault_max = limit("PREFAULT_MIB_MAX")
        if not 0 <= self.memory_prefault_mib <= prefault_max:
            raise ConfigError(f"STOCK_MEMORY_PREFAULT_MIB must be 0..{prefault_max}")
        if self.idempotency_retention_ms > RETENTION_MS_MAX:
            raise ConfigError(f"STOCK_IDEMPOTENCY_RETENTION_MS must be at most {RETENTION_MS_MAX}")
        retention = self.reservation_retention_ms
        if retention and not RESERVATION_RETENTION_MS_MIN <= retention <= RETENTION_MS_MAX:
            raise ConfigError("STOCK_RESERVATION_RETENTION_MS must be 0 (keep all) or "
                              f"{RESERVATION_RETENTION_MS_MIN}..{RETENTION_MS_MAX}")
        if self.shutdown_grace_ms < 0:
            raise ConfigError("STOCK_SHUTDOWN_GRACE_MS must be >= 0")
        for name in ("batch_window_ms", "batch_window_max_ms"):
            if not 0 <= getattr(self, name) <= BATCH_WINDOW_MS_MAX:
                raise ConfigError(f"STOCK_{name.upper()} must be 0..{BATCH_WINDOW_MS_MAX}")
