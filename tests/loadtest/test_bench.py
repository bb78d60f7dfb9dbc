"""The benchmark's bookkeeping: targets computed from a report, charts and summary written."""

from __future__ import annotations

from loadtest import bench, charts


def run(rate: float, p99: float, fraction: float | None = None, batch: int = 0) -> dict:
    result = {"calls_ok_per_s": rate, "operations_ok_per_s": rate * max(batch, 1),
              "latency_ms": {"p50": p99 / 3, "p99": p99, "p999": p99 * 2},
              "options": {"batch": batch}}
    if fraction is not None:
        result.update(fraction_of_saturation=fraction, offered_rate=int(rate * fraction))
    return result


def system(saturation: float, p99_at_70: float, batch_rate: float | None = None) -> dict:
    scenarios = {scenario: {"closed": run(saturation, 50.0),
                            "open": [run(saturation, p99_at_70 / 2, 0.3),
                                     run(saturation, p99_at_70, 0.7)]}
                 for scenario in bench.SCENARIOS}
    measured = {"scenarios": scenarios}
    if batch_rate is not None:
        measured["batch"] = [run(batch_rate, 20.0, batch=1_000)]
    return measured


def test_targets_are_ratios_from_the_same_run():
    systems = {"empty": system(10_000, 5.0, 50), "naive": system(1_000, 40.0),
               "service": system(9_000, 12.0, 120)}
    found = bench.targets(systems)
    assert found["service_over_empty_hot"] == {"value": 0.9, "target": 0.8, "met": True}
    assert found["service_over_naive_hot"] == {"value": 9.0, "target": 2.0, "met": True}
    assert found["service_p99_ms_at_70pct_spread"] == {"value": 12.0, "target": 15.0, "met": True}
    assert found["service_batch_reservations_per_s"] == {
        "value": 120_000, "target": 100_000, "met": True}


def test_a_missing_system_is_not_measured_and_not_met():
    found = bench.targets({"empty": system(10_000, 5.0)})
    assert found["service_over_empty_hot"] == {"value": None, "target": 0.8, "met": False}
    assert found["service_batch_reservations_per_s"]["met"] is False


def test_slow_service_misses_its_targets():
    systems = {"empty": system(10_000, 5.0), "naive": system(6_000, 40.0),
               "service": system(7_000, 30.0, 80)}
    found = bench.targets(systems)
    assert not found["service_over_empty_order3"]["met"]
    assert not found["service_over_naive_hot"]["met"]
    assert not found["service_p99_ms_at_70pct_hot"]["met"]
    assert not found["service_batch_reservations_per_s"]["met"]


def test_charts_and_summary_are_written(tmp_path):
    systems = {"empty": system(10_000, 5.0, 50), "service": system(9_000, 12.0, 120)}
    report = {"started_at": "2026-01-01T00:00:00Z", "quick": True, "seconds": 1.0,
              "machine": {"cpus": 2}, "systems": systems, "targets": bench.targets(systems)}
    charts.write_all(report, tmp_path)
    assert (tmp_path / "throughput.png").stat().st_size > 1_000
    assert (tmp_path / "latency.png").stat().st_size > 1_000
    summary = (tmp_path / "summary.md").read_text()
    assert "| service | hot | 9,000 |" in summary
    assert "| service_over_empty_hot | 0.9 | 0.8 | yes |" in summary
