"""Probe (kept with its output): where single Reserve calls wait when ReserveBatch traffic
runs beside them. One service instance with its metrics endpoint; each round offers Reserve
on the hot SKU at a fixed rate for 8 s, alone and beside ReserveBatch calls (1,000
reservations each, 2 in flight, on spread), in turned order. Beside the client's latency it
reads, from the service's histograms (deltas over the span): the Reserve handlers' time
(`stock_request_seconds{method="Reserve"}`, from the handler's start to its answer, group
commit included), and the PostgreSQL transactions (`stock_commit_seconds`). Client latency
beyond the handler's is time spent before the handler started (gRPC, the event loop).
Percentiles from histograms are bucket upper bounds. Run from the repository root:
.venv/bin/python loadtest/reference/20261207T1700Z-mixed-traffic/mixed_wait.py
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from loadtest import bench, processes

ROUNDS = 3
DURATION_S = 8
SINGLES_PER_S = 500
BATCH = 1_000
BATCHES_IN_FLIGHT = 2
QUANTILES = (0.5, 0.9, 0.99)


def histograms(metrics_url: str) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts of the histograms this probe reads, by upper bound."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    wanted = {"stock_request_seconds": {"method": "Reserve"},
              "stock_commit_seconds": {}}
    found: dict[str, dict[float, float]] = {name: {} for name in wanted}
    for family in text_string_to_metric_families(text):
        if family.name not in wanted:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_bucket"):
                continue
            labels = {key: value for key, value in sample.labels.items() if key != "le"}
            if labels == wanted[family.name]:
                found[family.name][float(sample.labels["le"])] = sample.value
    return found


def quantiles(before: dict[float, float], after: dict[float, float]) -> dict:
    bounds = sorted(after)
    counts = [after[bound] - before.get(bound, 0.0) for bound in bounds]
    total = counts[-1] if counts else 0.0
    result: dict = {"count": int(total)}
    for quantile in QUANTILES:
        bound = next((b for b, c in zip(bounds, counts, strict=True) if c >= quantile * total),
                     None)
        result[f"p{int(quantile * 100)}_le_ms"] = None if bound is None else bound * 1000
    over_20ms = total - next(c for b, c in zip(bounds, counts, strict=True) if b >= 0.02)
    result["over_20ms"] = int(over_20ms)
    return result


def span(address: str, process, metrics_url: str, beside_batches: bool) -> dict:
    before = histograms(metrics_url)
    batches = None
    if beside_batches:
        batches = subprocess.Popen(
            [str(bench.LOADGEN), "run", *bench.scenario_arguments(address, "spread"),
             "--duration-s", str(DURATION_S), "--batch", str(BATCH), "--concurrency",
             str(BATCHES_IN_FLIGHT)], stdout=subprocess.PIPE, text=True)
    singles = bench.open_loop(address, process, "hot", SINGLES_PER_S, duration_s=DURATION_S)
    batch_rate = None
    if batches is not None:
        batch_rate = round(json.loads(batches.communicate()[0])["operations_ok_per_s"])
    after = histograms(metrics_url)
    return {"beside_batches": beside_batches, "singles_ok": singles["calls_ok"],
            **{f"client_{name}_ms": value for name, value in singles["latency_ms"].items()},
            "handler": quantiles(before["stock_request_seconds"],
                                 after["stock_request_seconds"]),
            "pg_transactions": quantiles(before["stock_commit_seconds"],
                                         after["stock_commit_seconds"]),
            "batch_reservations_per_s": batch_rate}


def main() -> None:
    metrics_listen = f"{processes.HOST}:{processes.free_port()}"
    with tempfile.TemporaryDirectory() as logs, bench.serving(
            "service", "mixed", Path(logs), "mixed",
            extra_env={"STOCK_METRICS_LISTEN": metrics_listen}) as (address, process, _):
        metrics_url = f"http://{metrics_listen}/metrics"
        for round_number in range(ROUNDS):
            order = (False, True) if round_number % 2 == 0 else (True, False)
            for beside in order:
                print(json.dumps({"round": round_number,
                                  **span(address, process, metrics_url, beside)}), flush=True)


if __name__ == "__main__":
    main()
