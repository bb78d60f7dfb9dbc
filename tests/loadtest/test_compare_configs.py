"""loadtest/compare_configs.py: the parts that decide, without servers."""

from __future__ import annotations

import pytest

from loadtest.compare_configs import b_better, machine_times, parse_env, run_order


def test_only_service_variables_are_taken():
    assert parse_env(["STOCK_BATCH_WINDOW_MS=8", "STOCK_LOG_LEVEL=INFO"]) == {
        "STOCK_BATCH_WINDOW_MS": "8", "STOCK_LOG_LEVEL": "INFO"}
    for bad in (["PATH=/tmp"], ["STOCK_BATCH_WINDOW_MS"]):
        with pytest.raises(SystemExit):
            parse_env(bad)


def test_better_is_more_calls_closed_and_a_lower_p99_open():
    a = {"calls_per_s": 100.0, "p99_ms": 10.0}
    b = {"calls_per_s": 110.0, "p99_ms": 12.0}
    assert b_better(a, b, closed=True) and not b_better(a, b, closed=False)


def test_machine_times_count_idle_within_total():
    total, idle = machine_times()
    assert 0 <= idle <= total


def test_each_configuration_takes_each_position_equally_over_two_pairs():
    positions = {"A": [], "B": []}
    for pair in range(2):
        sequence = "".join(run_order(pair, round_number) for round_number in range(4))
        for position, name in enumerate(sequence):
            positions[name].append(position)
    # Over two pairs of eight runs each, A and B each take every one of the eight places once.
    assert sorted(positions["A"]) == sorted(positions["B"]) == list(range(8))
