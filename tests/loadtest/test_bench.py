"""The benchmark's bookkeeping: targets computed from a report, charts and summary written."""

from __future__ import annotations

import json
import subprocess
import sys

from loadtest import bench, charts, hold_churn_summary


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
    assert found["service_p99_ms_at_70pct_spread"] == {"value": 12.0, "target": 15.0, "met": True,
                                                        "runs": [12.0],
                                                        "empty_server_at_the_same_rate": None}
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


def open_run(offered: int, p99: float, achieved: float | None = None) -> dict:
    return {"offered_rate": offered, "calls_ok_per_s": offered if achieved is None else achieved,
            "latency_ms": {"p50": p99 / 3, "p99": p99, "p999": p99 * 2}}


def test_latency_search_bisects_between_the_last_rate_met_and_the_first_missed():
    search = bench.SloSearch(10_000, [open_run(3_000, 9.0), open_run(5_000, 14.0),
                                      open_run(7_000, 300.0), open_run(9_000, 900.0)])
    assert search.bracket() == (5_000, 7_000)
    assert search.next_rate() == 6_000
    search.record(open_run(6_000, 40.0))
    assert search.next_rate() == 5_500
    search.record(open_run(5_500, 12.0))
    summary = search.summary()
    assert (summary["rate"], summary["lowest_rate_missed"]) == (5_500, 6_000)
    assert summary["fraction_of_closed_maximum"] == 0.55
    assert [run["offered_rate"] for run in summary["runs"]] == [6_000, 5_500]


def test_latency_search_counts_a_rate_not_served_as_missed_and_starts_from_zero():
    # p99 within bound but a tenth of the calls were not answered OK: not served.
    search = bench.SloSearch(4_000, [open_run(1_200, 10.0, achieved=1_080.0)])
    assert search.bracket() == (0, 1_200)
    assert search.next_rate() == 600
    # Every fraction met: the closed-loop maximum bounds the search.
    assert bench.SloSearch(4_000, [open_run(3_600, 5.0)]).next_rate() == 3_800


def test_latency_capacity_compares_service_and_empty_in_the_summary(tmp_path):
    systems = {"empty": system(10_000, 5.0), "service": system(9_000, 12.0)}
    for name, rate in (("empty", 4_000), ("service", 3_000)):
        for scenario in bench.SCENARIOS:
            systems[name]["scenarios"][scenario]["slo"] = {"rate": rate}
    capacity = bench.latency_capacity(systems)
    assert capacity["hot"] == {"rates": {"empty": 4_000, "service": 3_000},
                               "service_over_empty": 0.75}
    report = {"started_at": "2026-01-01T00:00:00Z", "quick": True, "seconds": 1.0,
              "machine": {"cpus": 2}, "systems": systems, "targets": bench.targets(systems),
              "latency_capacity": capacity}
    charts.write_all(report, tmp_path)
    assert "| hot | 4,000 | 3,000 | 0.75 |" in (tmp_path / "summary.md").read_text()


def test_the_p99_target_is_judged_on_the_median_of_the_runs_at_70_percent(tmp_path):
    systems = {"empty": system(10_000, 5.0), "service": system(9_000, 12.0)}
    open_runs = systems["service"]["scenarios"]["hot"]["open"]
    open_runs += [run(9_000, 90.0, 0.7), run(9_000, 14.0, 0.7)]  # 12.0 is the first
    found = bench.targets(systems)["service_p99_ms_at_70pct_hot"]
    assert found == {"value": 14.0, "target": 15.0, "met": True, "runs": [12.0, 90.0, 14.0],
                     "empty_server_at_the_same_rate": None}
    systems["empty"]["scenarios"]["hot"]["at_service_target_rate"] = [
        run(6_300, 80.0), run(6_300, 95.0), run(6_300, 20.0)]
    open_runs.append(run(9_000, 40.0, 0.7))  # an even count: the lower middle run
    assert bench.targets(systems)["service_p99_ms_at_70pct_hot"]["value"] == 14.0
    open_runs.append(run(9_000, 50.0, 0.7))
    assert not bench.targets(systems)["service_p99_ms_at_70pct_hot"]["met"]
    report = {"started_at": "2026-01-01T00:00:00Z", "quick": False, "seconds": 1.0,
              "machine": {"cpus": 2}, "systems": systems, "targets": bench.targets(systems)}
    charts.write_all(report, tmp_path)
    assert bench.targets(systems)["service_p99_ms_at_70pct_hot"][
        "empty_server_at_the_same_rate"] == 80.0
    assert ("| service_p99_ms_at_70pct_hot | 40.0 (median of 12.0, 90.0, 14.0, 40.0, 50.0); "
            "empty server at the same rate: 80.0 | 15.0 | no |") in (
                tmp_path / "summary.md").read_text()


def test_latency_search_judges_a_rate_run_several_times_by_its_median_run():
    stalled = open_run(5_000, 80.0)
    search = bench.SloSearch(10_000, [open_run(3_000, 9.0), open_run(5_000, 12.0), stalled,
                                      open_run(5_000, 13.0), open_run(7_000, 300.0)])
    assert search.bracket() == (5_000, 7_000)
    search = bench.SloSearch(10_000, [open_run(3_000, 9.0), open_run(5_000, 12.0), stalled,
                                      open_run(5_000, 70.0), open_run(7_000, 300.0)])
    assert search.bracket() == (3_000, 5_000)


def test_slow_windows_count_the_timeline_windows_over_the_bound():
    result = {"timeline": {"window_ms": 100, "calls": [5, 5, 5], "max_ms": [3.0, 15.5, 15.0]}}
    assert bench.slow_windows(result) == 1
    assert bench.slow_windows({"timeline": None}) == 0


async def test_the_empty_server_freezes_what_survives_so_full_collections_skip_it():
    """The fake's own growing state (a protobuf object per reservation) must not make the
    floor's collections longer and longer: it is frozen out of them every FREEZE_INTERVAL_S."""
    import asyncio
    import gc

    from loadtest import empty_server
    from service.gen.stock.v1 import stock_pb2

    kept = {str(n): stock_pb2.Reservation(reservation_id=str(n)) for n in range(1_000)}
    collectable = gc.get_objects  # the collector's generations, not the frozen objects
    assert any(thing is kept for thing in collectable())
    freezer = asyncio.create_task(empty_server.freeze_survivors())
    try:
        await asyncio.sleep(0)
        assert not any(thing is kept for thing in collectable())
    finally:
        freezer.cancel()
        gc.unfreeze()


def test_open_loop_trials_rotate_so_no_system_always_follows_the_same_one():
    servers = {"empty": None, "naive": None, "service": None}
    trials = [bench.open_loop_order(servers, bench.TARGET_FRACTION, trial) for trial in range(3)]
    for order in trials:  # every system once, and the floor once
        assert sorted(order) == [("empty", False), ("empty", True), ("naive", False),
                                 ("service", False)]
    # The trials run one after another: over the three, every run has more than one
    # predecessor (the first run of all has none).
    sequence = [run for order in trials for run in order]
    predecessors = {}
    for before, after in zip(sequence, sequence[1:], strict=False):
        predecessors.setdefault(after, set()).add(before)
    assert all(len(before) > 1 for before in predecessors.values()), predecessors
    # Away from the target fraction there is no floor run.
    assert bench.open_loop_order(servers, 0.3, 0) == [("empty", False), ("naive", False),
                                                      ("service", False)]


def test_hold_churn_lines_are_summarised_with_their_slow_calls():
    line = {"live": 200_000, "steps": 600_000, "items": 1, "mean_ns": 300, "p99_ns": 700,
            "p99_99_ns": 40_000, "max_ns": 1_456_827, "calls_over_200us": 6,
            "calls_over_1ms": 1, "expiry_queue_max": 441_026, "step_ns": 760}
    text = hold_churn_summary.summary(line)
    assert text == ("hold_churn 200,000 live holds over 1 item, 1,200,000 calls: mean 300 ns, "
                    "p99 700 ns, max 1.46 ms, 1 calls over 1 ms, "
                    "expiry queue at most 441,026 entries")


def test_mass_expiry_rounds_are_summarised(tmp_path):
    systems = {"empty": system(10_000, 5.0, 50), "service": system(9_000, 12.0, 120)}
    expiry_round = {"holds": 91_000, "rate": 1_000, "p50": 8.5, "p99": 21.3, "max": 32.6,
                    "overdue_cleared_s": 6.65}
    report = {"started_at": "2026-01-01T00:00:00Z", "quick": True, "seconds": 1.0,
              "machine": {"cpus": 2}, "systems": systems, "targets": bench.targets(systems),
              "mass_expiry": [expiry_round]}
    charts.write_all(report, tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    assert "| 91,000 | 1,000 | 8.5 | 21.3 | 32.6 | 6.65 |" in summary


def test_the_engine_benchmark_runs_against_the_built_engine():
    """`python -m loadtest.bench_engine --quick` runs every part against the engine as built
    (its inputs follow the binding's shapes: a change of them once broke only `make bench`)."""
    finished = subprocess.run([sys.executable, "-m", "loadtest.bench_engine", "--quick"],
                              capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr[-2_000:]
    report, _ = json.JSONDecoder().raw_decode(finished.stdout)
    assert set(report) >= {"reserve", "load", "take_journal"}, report
    assert report["load"]["load_s"] > 0, report["load"]
