"""Config.from_env: every setting from the environment, bounded; a bad value stops the start
with a message naming the variable."""

from __future__ import annotations

import pytest

from service.config import (
    BATCH_WINDOW_MS_MAX,
    DATABASE_WRITERS_MAX,
    GRPC_ACCEPTORS_MAX,
    JOURNAL_LOG_MAX_OPERATIONS_BOUND,
    RESERVATION_RETENTION_MS_MIN,
    RETENTION_MS_MAX,
    Config,
    ConfigError,
)
from service.loop_priority import NICE_MAX, NICE_MIN
from service.server import GRPC_PENDING_REQUESTS_DEFAULT, server_options
from service.validation import limit

PREFAULT_MIB_MAX = limit("PREFAULT_MIB_MAX")
URL = {"STOCK_DATABASE_URL": "postgresql://127.0.0.1/stock"}


def test_defaults_need_only_a_database():
    config = Config.from_env(URL)
    assert config.database_url == URL["STOCK_DATABASE_URL"]
    assert config.journal_log_max_operations == 1_000_000
    assert config.database_writers == 2
    assert (config.batch_window_ms, config.batch_window_max_ms) == (3, 8)
    assert config.engine_holds_presized == 1_000_000
    with pytest.raises(ConfigError, match="STOCK_DATABASE_URL"):
        Config.from_env({})


def test_integers_are_parsed_and_other_variables_ignored():
    config = Config.from_env({**URL, "STOCK_JOURNAL_LOG_MAX_OPERATIONS": "0",
                              "STOCK_DATABASE_WRITERS": "1", "OTHER": "x"})
    assert (config.journal_log_max_operations, config.database_writers) == (0, 1)
    with pytest.raises(ConfigError, match="STOCK_DATABASE_WRITERS='two': not an integer"):
        Config.from_env({**URL, "STOCK_DATABASE_WRITERS": "two"})


@pytest.mark.parametrize(("name", "value"), [
    ("STOCK_JOURNAL_LOG_MAX_OPERATIONS", -1),
    ("STOCK_JOURNAL_LOG_MAX_OPERATIONS", JOURNAL_LOG_MAX_OPERATIONS_BOUND + 1),
    ("STOCK_DATABASE_WRITERS", 0),
    ("STOCK_DATABASE_WRITERS", DATABASE_WRITERS_MAX + 1),
    ("STOCK_BATCH_OPERATIONS_MAX", 0),
    ("STOCK_BATCH_WINDOW_MS", -1),
    ("STOCK_BATCH_WINDOW_MS", BATCH_WINDOW_MS_MAX + 1),
    ("STOCK_BATCH_WINDOW_MAX_MS", -1),
    ("STOCK_BATCH_WINDOW_MAX_MS", BATCH_WINDOW_MS_MAX + 1),
    ("STOCK_DATABASE_TIMEOUT_MS", 0),
    ("STOCK_MEMORY_PREFAULT_MIB", -1),
    ("STOCK_MEMORY_PREFAULT_MIB", PREFAULT_MIB_MAX + 1),
    ("STOCK_ENGINE_HOLDS_PRESIZED", -1),
    ("STOCK_ENGINE_HOLDS_PRESIZED", limit("TABLE_SIZE_MAX") + 1),
    ("STOCK_GRPC_ACCEPTORS", 0),
    ("STOCK_GRPC_ACCEPTORS", GRPC_ACCEPTORS_MAX + 1),
    ("STOCK_LOOP_NICE", NICE_MIN - 1),
    ("STOCK_LOOP_NICE", NICE_MAX + 1),
    ("STOCK_IDEMPOTENCY_RETENTION_MS", 0),
    ("STOCK_IDEMPOTENCY_RETENTION_MS", RETENTION_MS_MAX + 1),
    ("STOCK_RESERVATION_RETENTION_MS", -1),
    ("STOCK_RESERVATION_RETENTION_MS", RESERVATION_RETENTION_MS_MIN - 1),
    ("STOCK_RESERVATION_RETENTION_MS", RETENTION_MS_MAX + 1),
])
def test_out_of_bounds_values_are_refused_by_name(name, value):
    with pytest.raises(ConfigError, match=name):
        Config.from_env({**URL, name: str(value)})


def test_the_bounds_themselves_are_accepted():
    config = Config.from_env({**URL,
                              "STOCK_JOURNAL_LOG_MAX_OPERATIONS": str(
                                  JOURNAL_LOG_MAX_OPERATIONS_BOUND),
                              "STOCK_DATABASE_WRITERS": str(DATABASE_WRITERS_MAX)})
    assert config.journal_log_max_operations == JOURNAL_LOG_MAX_OPERATIONS_BOUND


def test_loop_nice_default_and_bounds():
    assert Config.from_env(URL).loop_nice == 0  # leaves the niceness the service started with
    for nice in (NICE_MIN, NICE_MAX):
        assert Config.from_env({**URL, "STOCK_LOOP_NICE": str(nice)}).loop_nice == nice


def test_grpc_acceptors_default_and_bound():
    assert Config.from_env(URL).grpc_acceptors == 16
    config = Config.from_env({**URL, "STOCK_GRPC_ACCEPTORS": str(GRPC_ACCEPTORS_MAX)})
    assert config.grpc_acceptors == GRPC_ACCEPTORS_MAX


def test_a_unix_socket_is_served_by_one_acceptor():
    """gRPC would unlink one server's unix socket to bind the next: refused, not half-served."""
    with pytest.raises(ConfigError, match="STOCK_GRPC_ACCEPTORS must be 1 when STOCK_LISTEN"):
        Config.from_env({**URL, "STOCK_LISTEN": "unix:/tmp/stock.sock"})
    assert Config.from_env({**URL, "STOCK_LISTEN": "unix:/tmp/stock.sock",
                            "STOCK_GRPC_ACCEPTORS": "1"}).grpc_acceptors == 1


def test_grpc_pending_calls_are_never_capped_below_grpcs_default():
    """Calls gRPC core holds for the event loop: at least our in-flight bound (beyond it our
    servicer answers RESOURCE_EXHAUSTED) and never fewer than gRPC's own default, so a small
    bound does not let gRPC cancel a burst before the servicer can refuse it."""
    small = dict(server_options(Config.from_env({**URL, "STOCK_INFLIGHT_CALLS_MAX": "4"})))
    assert small["grpc.server.max_pending_requests"] == GRPC_PENDING_REQUESTS_DEFAULT
    assert small["grpc.server.max_pending_requests_hard_limit"] > GRPC_PENDING_REQUESTS_DEFAULT
    large = dict(server_options(Config.from_env({**URL, "STOCK_INFLIGHT_CALLS_MAX": "20000"})))
    assert large["grpc.server.max_pending_requests"] == 20_000


def test_reservation_retention_default_bounds_and_off():
    day_ms = 86_400_000
    assert Config.from_env(URL).reservation_retention_ms == 30 * day_ms
    for retention in (0, RESERVATION_RETENTION_MS_MIN, RETENTION_MS_MAX):
        config = Config.from_env({**URL, "STOCK_RESERVATION_RETENTION_MS": str(retention)})
        assert config.reservation_retention_ms == retention
