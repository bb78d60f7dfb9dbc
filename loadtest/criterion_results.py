"""Collects criterion's estimates (target/criterion/**/new/estimates.json) into one JSON file.

Run: python -m loadtest.criterion_results target/criterion loadtest/results/cargo_bench.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def collect(criterion_dir: Path) -> dict[str, dict[str, float]]:
    found = {}
    for estimates in sorted(criterion_dir.glob("**/new/estimates.json")):
        name = str(estimates.parent.parent.relative_to(criterion_dir))
        data = json.loads(estimates.read_text())
        found[name] = {"mean_ns": data["mean"]["point_estimate"],
                       "median_ns": data["median"]["point_estimate"]}
    return found


if __name__ == "__main__":
    source, destination = Path(sys.argv[1]), Path(sys.argv[2])
    results = collect(source)
    destination.write_text(json.dumps(results, indent=1))
    print(f"{len(results)} criterion benchmarks collected into {destination}", file=sys.stderr)
