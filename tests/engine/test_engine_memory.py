"""prefault_memory: the pages it touches stay resident and the engine's later allocations
reuse them, so growth under load faults no new pages. Each case runs in a fresh interpreter:
the allocator's setting is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from service.engine import LIMITS, LimitExceeded, prefault_memory

PREFAULT_MIB = 128
ITEMS = 300_000
# Allocator activity spread over longer than mimalloc's default purge delay (1 s): memory it
# would give back to the OS is gone by then (checked: without the setting, resident memory
# falls from about 150 to 36 MiB here).
CHURN_ROUNDS = 3
CHURN_PAUSE_S = 0.6

PROBE = """
import json, sys, time
from service.engine import Engine, prefault_memory

def rss_mib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

mib, items, rounds = (int(argument) for argument in sys.argv[1:4])
pause_s = float(sys.argv[4])
rows = [(f"sku-{i:07d}", "", 100, 0, 0) for i in range(items)]
start = rss_mib()
prefault_memory(mib)
for _ in range(rounds):
    time.sleep(pause_s)
    churn = Engine()
    churn.load(rows[:20_000], [], [], 0)
    del churn
prefaulted = rss_mib()
engine = Engine()
engine.load(rows, [], [], 0)
print(json.dumps({"start": start, "prefaulted": prefaulted, "loaded": rss_mib()}))
"""


def probe(mib: int) -> dict[str, float]:
    finished = subprocess.run([sys.executable, "-c", PROBE, str(mib), str(ITEMS), str(CHURN_ROUNDS),
                               str(CHURN_PAUSE_S)],
                              capture_output=True, text=True, check=True, timeout=120)
    return json.loads(finished.stdout)


def test_prefaulted_memory_stays_resident_and_the_engine_grows_into_it():
    plain = probe(0)
    prefaulted = probe(PREFAULT_MIB)
    engine_growth = plain["loaded"] - plain["prefaulted"]
    assert engine_growth > 16, plain  # the load allocates enough for the check to mean something
    # Still resident after allocator activity past its default purge delay...
    assert prefaulted["prefaulted"] - prefaulted["start"] >= 0.9 * PREFAULT_MIB, prefaulted
    # ...and what the engine then allocates comes out of it, not from new pages.
    assert prefaulted["loaded"] - prefaulted["prefaulted"] < engine_growth / 4, (plain,
                                                                                 prefaulted)


@pytest.mark.parametrize("mib", [-1, LIMITS["PREFAULT_MIB_MAX"] + 1, 2**70])
def test_out_of_bounds_sizes_are_refused(mib):
    with pytest.raises(LimitExceeded, match="prefault_mib"):
        prefault_memory(mib)
