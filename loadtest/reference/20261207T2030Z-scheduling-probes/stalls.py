"""Probe (not a test, not part of `make bench`): one service instance, a closed-loop round, then
open-loop runs at one rate; per run, the client's latency and timeline, the service's own
histograms above 10/20/50/100 ms (request, commit, collector pauses, event loop lag), each
thread's CPU and run-queue wait (/proc/<tid>/schedstat), the host's steal and iowait, and
PostgreSQL's WAL volume (pg_stat_wal).

    SCEN=hot .venv/bin/python loadtest/reference/20261207T2030Z-scheduling-probes/stalls.py \
        4400 5 [STOCK_NAME=value ...]

Needs the load generator built (`cargo build --release --manifest-path
loadtest/loadgen/Cargo.toml`)."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from loadtest import bench, processes

HISTOGRAMS = ("stock_commit_seconds", "stock_gc_pause_seconds", "stock_event_loop_lag_seconds",
              "stock_request_seconds")
THRESHOLDS_S = ("0.01", "0.02", "0.05", "0.1")
BUSY_THREAD_NS = 5e7  # threads that ran less than this in a run are left out


def scrape(port: int) -> dict:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    found: dict = collections.defaultdict(dict)
    for line in text.splitlines():
        match = re.match(r"(stock_[a-z_]+)_bucket\{(.*)\} ([0-9.e+]+)", line)
        if match and match.group(1) in HISTOGRAMS:
            bound = re.search(r'le="([^"]+)"', match.group(2)).group(1)
            labels = re.sub(r',?le="[^"]+"', "", match.group(2))
            found[(match.group(1), labels)][bound] = float(match.group(3))
    return found


def above(before: dict, after: dict) -> dict:
    """Per histogram: (observations, {threshold: observations above it}) during the run."""
    result = {}
    for key, buckets in after.items():
        delta = {bound: count - before.get(key, {}).get(bound, 0) for bound, count in
                 buckets.items()}
        total = delta.get("+Inf", 0)
        over = {threshold: total - delta[bound] for threshold in THRESHOLDS_S for bound in delta
                if bound != "+Inf" and abs(float(bound) - float(threshold)) < 1e-9}
        if total:
            result[key] = (int(total), {t: int(n) for t, n in over.items() if n})
    return result


def sql(query: str) -> list[str]:
    return subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", query],
                          capture_output=True, text=True, check=True).stdout.strip().split("|")


def schedstats(pid: int) -> dict[str, tuple[int, int]]:
    """(ns on a CPU, ns runnable but waiting) of every PostgreSQL process and service thread."""
    found = {}
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                run, wait = (comm.parent / "schedstat").read_text().split()[:2]
                found[f"postgres:{comm.parent.name}"] = (int(run), int(wait))
        except OSError:
            continue
    for task in Path(f"/proc/{pid}/task").iterdir():
        run, wait = (task / "schedstat").read_text().split()[:2]
        found[f"{(task / 'comm').read_text().strip()}:{task.name}"] = (int(run), int(wait))
    return found


def sched_delta(before: dict, after: dict) -> dict[str, tuple[float, float]]:
    result = {}
    for key, (run, wait) in after.items():
        run_before, wait_before = before.get(key, (0, 0))
        if run - run_before > BUSY_THREAD_NS:
            result[key] = (round((run - run_before) / 1e9, 2), round((wait - wait_before) / 1e9, 2))
    return result


def main() -> None:
    rate, runs = int(sys.argv[1]), int(sys.argv[2])
    scenario = os.environ.get("SCEN", "hot")
    extra = dict(argument.split("=", 1) for argument in sys.argv[3:])
    metrics_port = processes.free_port()
    extra["STOCK_METRICS_LISTEN"] = f"127.0.0.1:{metrics_port}"
    wal = "select wal_bytes from pg_stat_wal"
    with tempfile.TemporaryDirectory() as tmp, bench.serving(
            "service", "probe", Path(tmp), "probe", extra_env=extra) as (address, process, _):
        closed = bench.loadgen(["run", *bench.scenario_arguments(address, scenario),
                                "--duration-s", "5", "--mode", "closed", "--concurrency", "128"],
                               process.pid)
        print("closed", closed["calls_ok_per_s"])
        for _ in range(runs):
            sched_before, metrics_before = schedstats(process.pid), scrape(metrics_port)
            stat_before, wal_before = Path("/proc/stat").read_text().split()[1:9], sql(wal)
            result = bench.loadgen(["run", *bench.scenario_arguments(address, scenario),
                                    "--duration-s", "6", "--mode", "open", "--rate", str(rate),
                                    "--concurrency", "5000"], process.pid)
            stat_after, wal_after = Path("/proc/stat").read_text().split()[1:9], sql(wal)
            calls = rate * (6 + bench.WARMUP_S)
            latency = {key: result["latency_ms"][key] for key in ("p50", "p99", "p999", "max")}
            print("open", rate, latency,
                  "service us/call", round(result["server_cpu_s"] / calls * 1e6),
                  "postgres us/call", round(result["postgres_cpu_s"] / calls * 1e6))
            print("    run / wait s", sched_delta(sched_before, schedstats(process.pid)))
            print("    steal jiffies", int(stat_after[7]) - int(stat_before[7]),
                  "iowait", int(stat_after[4]) - int(stat_before[4]),
                  "WAL MB", round((float(wal_after[0]) - float(wal_before[0])) / 1e6, 1))
            for (name, labels), counts in above(metrics_before, scrape(metrics_port)).items():
                if counts[1]:
                    print("   ", name, labels, counts)
            timeline = result.get("timeline") or {}
            print("    100 ms windows with a call over 15 ms",
                  [(i, round(ms)) for i, ms in enumerate(timeline.get("max_ms", [])) if ms > 15],
                  flush=True)


if __name__ == "__main__":
    main()
