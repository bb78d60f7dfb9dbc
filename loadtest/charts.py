"""Charts and a markdown summary of one benchmark report (loadtest/bench.py's JSON)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the benchmark runs headless
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

COLORS = {"empty": "tab:gray", "naive": "tab:red", "service": "tab:blue"}
LABELS = {"empty": "empty server (Python gRPC floor)", "naive": "naive (1 PG txn per Reserve)",
          "service": "this service"}


def write_all(report: dict, directory: Path) -> None:
    throughput_chart(report, directory / "throughput.png")
    latency_chart(report, directory / "latency.png")
    (directory / "summary.md").write_text(summary_markdown(report))


def scenarios_of(report: dict) -> list[str]:
    for system in report["systems"].values():
        return list(system["scenarios"])
    return []


def throughput_chart(report: dict, path: Path) -> None:
    systems = list(report["systems"])
    scenarios = scenarios_of(report)
    width = 0.8 / max(1, len(systems))
    figure, axes = plt.subplots(figsize=(9, 4.5))
    for index, system in enumerate(systems):
        values = [report["systems"][system]["scenarios"][s]["closed"]["calls_ok_per_s"]
                  for s in scenarios]
        positions = [i + (index - (len(systems) - 1) / 2) * width for i in range(len(scenarios))]
        bars = axes.bar(positions, values, width, label=LABELS[system], color=COLORS[system])
        axes.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8)
    axes.set_xticks(range(len(scenarios)), scenarios)
    axes.set_ylabel("Reserve calls/s (closed loop, max)")
    axes.set_title(f"Maximum throughput, {report['machine']['cpus']} cores, one run")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def latency_chart(report: dict, path: Path) -> None:
    scenarios = scenarios_of(report)
    figure, axes_row = plt.subplots(1, len(scenarios), figsize=(5 * len(scenarios), 4.5),
                                    squeeze=False)
    for axes, scenario in zip(axes_row[0], scenarios, strict=True):
        for system, measured in report["systems"].items():
            runs = measured["scenarios"][scenario]["open"]
            rates = [run["offered_rate"] for run in runs]
            for key, style in (("p50", ":"), ("p99", "-"), ("p999", "--")):
                values = [run["latency_ms"][key] for run in runs]
                axes.plot(rates, values, style, marker="o", color=COLORS[system],
                          label=f"{system} {key}")
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on short ranges
        axes.set_xlabel("offered Reserve calls/s (open loop)")
        axes.set_ylabel("latency from intended send, ms")
        axes.set_title(scenario)
        axes.grid(True, which="both", alpha=0.3)
    axes_row[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def summary_markdown(report: dict) -> str:
    lines = [f"Run {report['started_at']} ({'quick' if report['quick'] else 'full'}), "
             f"{report['seconds']} s, 1-minute load average at start "
             f"{report.get('load_average_1m_at_start', '?')}.", "",
             "| system | scenario | max calls/s | open-loop rate | p50 ms | p99 ms | p99.9 ms |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for system, measured in report["systems"].items():
        for scenario, result in measured["scenarios"].items():
            closed = result["closed"]["calls_ok_per_s"]
            for run in result["open"]:
                latency = run["latency_ms"]
                lines.append(
                    f"| {system} | {scenario} | {closed:,.0f} | {run['offered_rate']:,} "
                    f"({run['fraction_of_saturation']:.0%}) | {latency['p50']} | "
                    f"{latency['p99']} | {latency['p999']} |")
    capacity = report.get("latency_capacity")
    if capacity:
        bound = report["targets"]["service_p99_ms_at_70pct_hot"]["target"]
        lines += ["", f"Highest offered rate served with p99 <= {bound} ms (bisection, one run"
                  " per rate, the median of the runs at 70 %):",
                  "", "| scenario | " + " | ".join(report["systems"]) + " | service / empty |",
                  "|---|" + "---:|" * (len(report["systems"]) + 1)]
        for scenario, found in capacity.items():
            rates = [f"{found['rates'][system]:,}" if system in found["rates"] else "-"
                     for system in report["systems"]]
            lines.append(f"| {scenario} | {' | '.join(rates)} | "
                         f"{found['service_over_empty'] or '-'} |")
    lines += ["", "| system | batch size | reservations/s | calls p50 ms | calls p99 ms "
                  "| tables caught up after (s) |",
              "|---|---:|---:|---:|---:|---:|"]
    for system, measured in report["systems"].items():
        for run in measured.get("batch", []):
            sustained = (f" (sustained {run['options']['duration_s']} s)"
                         if run.get("sustained") else "")
            lines.append(f"| {system} | {run['options']['batch']}{sustained} | "
                         f"{run['operations_ok_per_s']:,.0f} | {run['latency_ms']['p50']} | "
                         f"{run['latency_ms']['p99']} | {run.get('projection_catch_up_s', '')} |")
    for system, measured in report["systems"].items():
        client = measured.get("client")
        if client:
            lines.append(f"| {system} | StockClient coalescing, {client['callers']} callers | "
                         f"{client['reservations_ok_per_s']:,} | {client['latency_ms']['p50']} "
                         f"(per reserve) | {client['latency_ms']['p99']} (per reserve) |")
    write_path = (report.get("write_path") or {}).get("write_path", [])
    if write_path:
        lines += ["", "Write path alone (loadtest/bench_write.py):", "",
                  "| batch size | writers | reservations/s | Python CPU us/res "
                  "| PostgreSQL CPU us/res |", "|---:|---:|---:|---:|---:|"]
        for run in write_path:
            lines.append(f"| {run['batch_size']} | {run['writers']} | "
                         f"{run['reservations_per_s']:,} | "
                         f"{run['python_cpu_us_per_reservation']} | "
                         f"{run['postgres_cpu_us_per_reservation']} |")
    priority = report.get("loop_priority")
    if priority:
        lines += ["", "The service on hot, its event loop thread at each niceness (runs in turn;"
                  " service/loop_priority.py):", "",
                  "| niceness | closed loop calls/s | open-loop rate | p99 ms of each run |",
                  "|---:|---|---:|---|"]
        for nice, runs in priority.items():
            closed = ", ".join(f"{run['calls_ok_per_s']:,.0f}" for run in runs["closed"])
            rate = f"{runs['open'][0]['offered_rate']:,}" if runs["open"] else "-"
            tails = ", ".join(str(run["latency_ms"]["p99"]) for run in runs["open"])
            lines.append(f"| {nice} | {closed} | {rate} | {tails} |")
    expiry = report.get("mass_expiry")
    if expiry:
        lines += ["", "A flash sale's abandoned holds falling due at once, Reserve on hot meanwhile"
                  " (loadtest/mass_expiry.py):", "",
                  "| holds due | calls/s | p50 ms | p99 ms | max ms | all expired in PostgreSQL"
                  " after (s) |", "|---:|---:|---:|---:|---:|---:|"]
        for run in expiry:
            lines.append(f"| {run['holds']:,} | {run['rate']:,} | {run['p50']} | {run['p99']} | "
                         f"{run['max']} | {run['overdue_cleared_s']} |")
    flash = report.get("flash_burst")
    if flash:
        lines += ["", "The worst day: buyers within one second for the units of one SKU"
                  " (loadtest/flash_burst.py):", "",
                  "| system | buyers | units | held | reserved after | answered | p50 ms |"
                  " p99 ms | last answer ms | right |", "|---|---:|---:|---:|---:|---:|---:|"
                  "---:|---:|---|"]
        for system, runs in flash.items():
            for run in runs:
                lines.append(
                    f"| {system} | {run['calls']:,} | {run['units']} | {run['granted']} | "
                    f"{run['reserved']} | {run['answered']:,} | {run['p50_ms']:,.0f} | "
                    f"{run['p99_ms']:,.0f} | {run['max_ms']:,.0f} | "
                    f"{'yes' if run['passed'] else 'NO: ' + '; '.join(run['problems'])} |")
    lines += ["", "| target | measured | goal | met |", "|---|---:|---:|---|"]
    for name, target in report["targets"].items():
        value = "not measured" if target["value"] is None else target["value"]
        if len(target.get("runs", [])) > 1:
            value = f"{value} (median of {', '.join(str(run) for run in target['runs'])})"
        floor = target.get("empty_server_at_the_same_rate")
        if floor is not None:
            value = f"{value}; empty server at the same rate: {floor}"
        lines.append(f"| {name} | {value} | {target['target']} | "
                     f"{'yes' if target['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "loadtest/results/latest.json")
    write_all(json.loads(source.read_text()), source.parent)
