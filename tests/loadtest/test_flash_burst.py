"""loadtest/flash_burst.py, the worst-day burst of `make bench`: how a round is judged and
reported (the burst itself needs the release load generator, which `make bench` builds)."""

from __future__ import annotations

import pytest

from loadtest import bench, charts, flash_burst
from service.gen.stock.v1 import stock_pb2


def fake_round(monkeypatch, codes: dict[str, int], on_hand: int, reserved: int) -> dict:
    sent = []

    def loadgen(arguments, server_pid):
        sent.append(arguments)
        return {"codes": codes, "drained": True, "server_cpu_s": 1.0, "postgres_cpu_s": 0.5,
                "loadgen_cpu_s": 0.2, "latency_ms": {"p50": 4_000.0, "p99": 9_000.0,
                                                      "max": 9_500.0}}

    monkeypatch.setattr(bench, "loadgen", loadgen)
    monkeypatch.setattr(flash_burst, "stock_of", lambda address: stock_pb2.StockLevel(
        sku=flash_burst.HOT_SKU, on_hand=on_hand, reserved=reserved))
    found = flash_burst.burst_round("127.0.0.1:1", type("P", (), {"pid": 1})(),
                                    calls=50_000, units=300)
    [arguments] = sent
    options = dict(zip(arguments[1::2], arguments[2::2], strict=False))
    assert (options["--rate"], options["--duration-s"], options["--mode"]) == (
        "50000", "1", "open")
    return found


def test_every_unit_held_once_and_every_buyer_answered_passes(monkeypatch):
    found = fake_round(monkeypatch, {"OK": 300, "FAILED_PRECONDITION": 49_700}, 300, 300)
    assert found["passed"] and found["problems"] == []
    assert (found["granted"], found["answered"], found["unanswered"]) == (300, 50_000, 0)


def test_buyers_left_without_an_answer_are_counted_not_hidden(monkeypatch):
    found = fake_round(monkeypatch, {"OK": 300, "FAILED_PRECONDITION": 40_000,
                                     "CANCELLED": 9_700}, 300, 300)
    assert found["passed"]  # no unit sold twice or left unsold
    assert (found["answered"], found["unanswered"]) == (40_300, 9_700)


@pytest.mark.parametrize(("codes", "reserved", "problem"), [
    ({"OK": 301, "FAILED_PRECONDITION": 49_699}, 301, "301 holds granted for 300 units"),
    ({"OK": 300, "FAILED_PRECONDITION": 49_700}, 299, "reserved 299"),
    ({"OK": 299, "FAILED_PRECONDITION": 49_701}, 299, "299 holds granted"),
])
def test_a_unit_sold_twice_or_left_unsold_fails_the_round(monkeypatch, codes, reserved,
                                                          problem):
    found = fake_round(monkeypatch, codes, 300, reserved)
    assert not found["passed"]
    assert any(problem in text for text in found["problems"]), found["problems"]


def test_bursts_are_summarised(tmp_path, monkeypatch):
    found = fake_round(monkeypatch, {"OK": 300, "FAILED_PRECONDITION": 49_700}, 300, 300)
    systems = {"service": {"scenarios": {}}}
    report = {"started_at": "2026-01-01T00:00:00Z", "quick": True, "seconds": 1.0,
              "machine": {"cpus": 2}, "systems": systems, "targets": {},
              "flash_burst": {"service": [found]}}
    summary = charts.summary_markdown(report)
    assert "| service | 50,000 | 300 | 300 | 300 | 50,000 | 4,000 | 9,000 | 9,500 | yes |" in \
        summary
