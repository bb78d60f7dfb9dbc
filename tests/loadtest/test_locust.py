"""Short headless Locust runs of each scenario against the real service, invariants included.

Each run starts `python -m service` on a free port with a fresh database (dropped after), its
own Redis prefix and an admin token, runs loadtest/locustfile.py headless and expects exit 0
(no failed call, no violated invariant) and traffic. A run against the empty server, which
never expires holds, must exit 1: the invariant checks can fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from loadtest import processes

USERS = 40
SPAWN_RATE = 40
RUN_TIME = "10s"  # per scenario: the two together stay well under a minute
LOCUST_TIMEOUT_S = 90  # set-up of 10,000 items, the run, the end wait and the database checks

SCENARIOS = {
    "flash": ["FlashSaleBuyer"],
    "orders": ["OrderMixBuyer", "Operator"],
}


def run_locust(target: str, user_classes: list[str], env: dict[str, str],
               run_time: str = RUN_TIME) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless",
               "-u", str(USERS), "-r", str(SPAWN_RATE), "-t", run_time, "--host", target,
               "--only-summary", "--json", *user_classes]
    return subprocess.run(command, cwd=processes.ROOT, env=env, capture_output=True, text=True,
                          timeout=LOCUST_TIMEOUT_S)


def requests_by_name(finished: subprocess.CompletedProcess) -> dict[str, int]:
    return {entry["name"]: entry["num_requests"] for entry in json.loads(finished.stdout)}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario_keeps_every_invariant(scenario, tmp_path):
    token = uuid.uuid4().hex
    listen = f"{processes.HOST}:{processes.free_port()}"
    with processes.fresh_database("loadtest") as database:
        env = processes.service_env(listen, database, token)
        with processes.server(["-m", "service"], env=env, health=True,
                              log_path=tmp_path / "service.log"):
            finished = run_locust(listen, SCENARIOS[scenario], env)
    report = finished.stderr[-4_000:]
    assert finished.returncode == 0, report
    assert "load test invariants: 0 violation(s)" in finished.stderr, report
    counts = requests_by_name(finished)
    assert counts.get("Reserve", 0) > 0, counts
    assert counts.get("Commit", 0) > 0 and counts.get("Release", 0) > 0, counts
    if scenario == "orders":
        assert counts.get("Adjust", 0) > 0 and counts.get("SetSafetyStock", 0) > 0, counts


def test_a_server_that_never_expires_holds_fails_the_run(tmp_path):
    listen = f"{processes.HOST}:{processes.free_port()}"
    env = processes.service_env(listen, database="", admin_token="unused")
    with processes.server(["-m", "loadtest.empty_server", "--listen", listen], env=env,
                          health=False, log_path=tmp_path / "empty.log"):
        finished = run_locust(listen, SCENARIOS["flash"], env, run_time="3s")
    assert finished.returncode == 1, finished.stderr[-4_000:]
    assert "still reserved after every expiry" in finished.stderr
