"""Prints a line per run of the engine's `hold_churn` example (core_rs/examples/hold_churn.rs).

Run: python -m loadtest.hold_churn_summary loadtest/results/hold_churn.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def summary(run: dict) -> str:
    items = f"{run['items']:,} item" + ("" if run["items"] == 1 else "s")
    return (f"hold_churn {run['live']:,} live holds over {items}, "
            f"{2 * run['steps']:,} calls: mean {run['mean_ns']:,} ns, p99 {run['p99_ns']:,} ns, "
            f"max {run['max_ns'] / 1e6:.2f} ms, {run['calls_over_1ms']} calls over 1 ms, "
            f"expiry queue at most {run['expiry_queue_max']:,} entries")


if __name__ == "__main__":
    for line in Path(sys.argv[1]).read_text().splitlines():
        if line.strip():
            print(summary(json.loads(line)))
