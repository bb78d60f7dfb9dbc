"""Locust load tests of the stock gRPC API, with invariants checked at the end of every run.

Scenarios are picked by user class (names on the command line) or by tag (--tags flash):
  flash sale   FlashSaleBuyer (tag `flash`): one hot SKU with a few hundred units, many buyers;
               each hold is committed, released or abandoned to expire (ttl 1-2 s).
  order mix    OrderMixBuyer + Operator (tag `orders`): 10,000 SKUs, multi-line orders with
               full or partial commits, releases and abandoned holds; the operator restocks
               with Adjust (admin token).

    locust -f loadtest/locustfile.py --headless -u 200 -r 50 -t 30s \
        --host 127.0.0.1:50051 FlashSaleBuyer

Environment: STOCK_ADMIN_TOKEN (operator calls), STOCK_DATABASE_URL (the service's database,
checked directly at the end), STOCK_SWEEP_INTERVAL_MS (the service's, for the expiry allowance),
LOADTEST_SKUS, LOADTEST_HOT_STOCK.

Before the run starts (Locust's init event, so that seeding does not eat into the run time)
the stock is created with SetStock under a fresh prefix, so runs never share items. At test
stop: the outcome of every uncertain operation is settled by replaying it with its request id,
the run waits until every hold is due, then checks through the API and in PostgreSQL; any
violation sets the exit code to 1.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

from grpc.experimental import gevent as grpc_gevent

grpc_gevent.init_gevent()  # before any channel: blocking gRPC calls must yield to greenlets

import gevent  # noqa: E402
import gevent.pool  # noqa: E402
import grpc  # noqa: E402
from locust import User, between, events, tag, task  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtest.locust_grpc import Caller  # noqa: E402
from loadtest.run_state import RunState, now_ms  # noqa: E402
from service.gen.stock.v1 import stock_pb2  # noqa: E402

HOT_STOCK = int(os.environ.get("LOADTEST_HOT_STOCK", "300"))
ORDER_SKUS = int(os.environ.get("LOADTEST_SKUS", "10000"))
ORDER_SKU_STOCK = 20  # small, so that orders meet short stock and restocks matter
ORDER_LINES_MAX = 4
TTL_MS_RANGE = (1_000, 2_000)  # the API's minimum: expiries happen within a short run
THINK_S_RANGE = (0.05, 0.4)  # between reserve and commit/release: well inside the ttl
RESTOCK_UNITS_RANGE = (5, 20)
# The operator keeps back up to this many units of an order-mix SKU as safety stock.
SAFETY_UNITS_MAX = 5
# Calls that need the operator token.
OPERATOR_CALLS = ("Adjust", "SetSafetyStock")
SAMPLE_INTERVAL_S = 0.25
SAMPLE_SKUS = 100
SEED_CALLS_IN_FLIGHT_MAX = 256
GET_STOCK_SKUS_MAX = 1_000
SWEEP_INTERVAL_MS = int(os.environ.get("STOCK_SWEEP_INTERVAL_MS", "250"))
EXPIRY_GRACE_MS = 1_500  # a sweep may be running late under load
END_WAIT_S_MAX = 10.0
SETTLE_ATTEMPTS_MAX = 5
DB_CHECK_ATTEMPTS = 2

EXPECTED_REFUSALS = (grpc.StatusCode.FAILED_PRECONDITION,)
# A commit can meet a hold that expired during a slow think: answered, not a failure.
COMMIT_REFUSALS = (grpc.StatusCode.FAILED_PRECONDITION,)

STATE: RunState | None = None


def target_of(environment) -> str:
    host = environment.host or os.environ.get("STOCK_TARGET", "127.0.0.1:50051")
    return host.removeprefix("grpc://").removeprefix("http://").rstrip("/")


def caller_of(environment) -> Caller:
    return Caller(environment, target_of(environment), os.environ.get("STOCK_ADMIN_TOKEN", ""))


class StockUser(User):
    abstract = True
    scenario = ""  # the tag of the scenario this user belongs to

    def on_start(self) -> None:
        self.caller = caller_of(self.environment)

    def reserve(self, lines: list[stock_pb2.Line]):
        request_id = uuid.uuid4().hex
        request = stock_pb2.ReserveRequest(
            request_id=request_id, order_id=f"{STATE.order_prefix}{request_id}", lines=lines,
            ttl_ms=random.randint(*TTL_MS_RANGE))
        reservation, _ = self.caller.call("Reserve", request, refusals=EXPECTED_REFUSALS)
        if reservation is not None:
            STATE.hold_started(reservation)
        return reservation

    def finish(self, reservation, commit_lines=None) -> None:
        """Commits (all, or `commit_lines`), releases or abandons the hold, at random."""
        gevent.sleep(random.uniform(*THINK_S_RANGE))
        roll = random.random()
        if roll < 0.5 or commit_lines:
            self.commit(reservation.reservation_id, commit_lines or [])
        elif roll < 0.75:
            STATE.hold_ending(reservation.reservation_id)
            request = stock_pb2.ReleaseRequest(reservation_id=reservation.reservation_id,
                                               request_id=uuid.uuid4().hex)
            _, error = self.caller.call("Release", request, refusals=EXPECTED_REFUSALS)
            if error is not None and error.code() not in EXPECTED_REFUSALS:
                STATE.uncertain.append(("Release", request))
        # else: abandoned, the hold must expire by itself

    def commit(self, reservation_id: str, lines: list[stock_pb2.Line]) -> None:
        STATE.hold_ending(reservation_id)
        request = stock_pb2.CommitRequest(reservation_id=reservation_id,
                                          request_id=uuid.uuid4().hex, lines=lines)
        committed = self.tracked("Commit", request, refusals=COMMIT_REFUSALS)
        if committed is not None:
            STATE.committed_lines(committed)

    def tracked(self, name: str, request, *, refusals=()):
        """A call the run's books depend on: in flight while it runs, and uncertain (replayed
        with its request id at the stop, `settle_uncertain`) when its answer is lost. Returns
        the response, or None."""
        STATE.in_flight[request.request_id] = (name, request)
        response, error = self.caller.call(name, request, operator=name in OPERATOR_CALLS,
                                           refusals=refusals)
        del STATE.in_flight[request.request_id]
        if response is None and error.code() not in refusals:
            STATE.uncertain.append((name, request))
        return response


class FlashSaleBuyer(StockUser):
    """Thousands of buyers, one hot SKU."""

    scenario = "flash"
    wait_time = between(0.01, 0.1)

    @tag("flash")
    @task
    def buy(self) -> None:
        quantity = random.choice((1, 1, 1, 2))
        line = stock_pb2.Line(sku=STATE.hot_sku, quantity=quantity)
        reservation = self.reserve([line])
        if reservation is not None:
            self.finish(reservation)


def order_sku(index: int) -> str:
    return f"{STATE.sku_prefix}{index:05d}"


class OrderMixBuyer(StockUser):
    """Multi-line orders over 10,000 SKUs, with full and partial commits."""

    scenario = "orders"
    wait_time = between(0.01, 0.1)

    @tag("orders")
    @task(10)
    def order(self) -> None:
        count = random.randint(1, ORDER_LINES_MAX)
        lines = [stock_pb2.Line(sku=order_sku(i), quantity=random.randint(1, 3))
                 for i in random.sample(range(ORDER_SKUS), count)]
        reservation = self.reserve(lines)
        if reservation is None:
            return
        partial = None
        if random.random() < 0.3:  # commit part of each line, and nothing of the others
            partial = [stock_pb2.Line(sku=x.sku, quantity=random.randint(1, x.quantity))
                       for x in reservation.lines[: max(1, len(reservation.lines) - 1)]]
        self.finish(reservation, partial)

    @tag("orders")
    @task(1)
    def look(self) -> None:
        skus = [order_sku(i) for i in random.sample(range(ORDER_SKUS), 20)]
        response, _ = self.caller.call("GetStock", stock_pb2.GetStockRequest(skus=skus))
        if response is not None:
            STATE.check_levels(response.levels, "GetStock")


class Operator(StockUser):
    """Restocks order-mix SKUs with Adjust, as a warehouse receiving goods would, and now
    and then changes how many units of one are kept back as safety stock."""

    scenario = "orders"
    wait_time = between(0.2, 0.5)

    @tag("orders")
    @task(3)
    def restock(self) -> None:
        sku = order_sku(random.randrange(ORDER_SKUS))
        delta = random.randint(*RESTOCK_UNITS_RANGE)
        request = stock_pb2.AdjustRequest(request_id=uuid.uuid4().hex, sku=sku, delta=delta,
                                          reason="restock")
        if self.tracked("Adjust", request) is not None:
            STATE.received[sku] += delta

    @tag("orders")
    @task(1)
    def keep_back(self) -> None:
        sku = order_sku(random.randrange(ORDER_SKUS))
        request = stock_pb2.SetSafetyStockRequest(
            request_id=uuid.uuid4().hex, sku=sku, safety_stock=random.randint(0, SAFETY_UNITS_MAX),
            reason="safety stock")
        response = self.tracked("SetSafetyStock", request)
        if response is not None:
            STATE.check_levels([response.level], "SetSafetyStock")


def scenarios_of(environment) -> set[str]:
    """The scenarios chosen by tag (--tags flash) or by user class; all when neither is."""
    tags = set(getattr(environment.parsed_options, "tags", None) or ())
    if tags:
        # Users whose tasks were all filtered out would fail to run: keep only the chosen ones.
        environment.user_classes[:] = [
            user for user in environment.user_classes if getattr(user, "scenario", "") in tags]
    chosen = {getattr(user, "scenario", "") for user in environment.user_classes} - {""}
    return chosen or {"flash", "orders"}


def seed(caller: Caller, stock: dict[str, int]) -> None:
    """Creates every item with SetStock, many calls at once (greenlets share one channel)."""
    pool = gevent.pool.Pool(SEED_CALLS_IN_FLIGHT_MAX)
    failures = []

    def set_stock(sku: str, on_hand: int) -> None:
        request = stock_pb2.SetStockRequest(request_id=uuid.uuid4().hex, sku=sku,
                                            on_hand=on_hand, reason="load test seed")
        response, error = caller.call("SetStock", request, operator=True)
        if response is None:
            failures.append(f"{sku}: {error.code().name} {error.details()}")

    for sku, on_hand in stock.items():
        pool.spawn(set_stock, sku, on_hand)
    pool.join()
    if failures:
        raise RuntimeError(f"seeding failed for {len(failures)} items, e.g. {failures[0]}")


def sample_levels(caller: Caller, state: RunState) -> None:
    """Samples levels during the run: available must never be seen negative."""
    while True:
        skus = [state.hot_sku] if state.hot_sku else []
        order_skus = [sku for sku in state.initial if sku != state.hot_sku]
        skus += random.sample(order_skus, min(SAMPLE_SKUS, len(order_skus)))
        response, _ = caller.call("GetStock", stock_pb2.GetStockRequest(skus=skus))
        if response is not None:
            state.check_levels(response.levels, "sample")
        gevent.sleep(SAMPLE_INTERVAL_S)


_sampler = None


@events.init.add_listener
def on_init(environment, **_kwargs) -> None:
    """Creates the run's stock before the run starts: Locust's run-time clock starts with
    test_start, and seeding 10,000 items must not eat into it. One Locust process, one run."""
    global STATE
    run_id = f"lt{int(time.time() * 1000):x}{random.randrange(1 << 16):04x}"
    STATE = RunState(sku_prefix=f"{run_id}-", order_prefix=f"{run_id}-order-")
    chosen = scenarios_of(environment)
    stock: dict[str, int] = {}
    if "flash" in chosen:
        STATE.hot_sku = f"{STATE.sku_prefix}hot"
        stock[STATE.hot_sku] = HOT_STOCK
    if "orders" in chosen:
        stock.update({order_sku(i): ORDER_SKU_STOCK for i in range(ORDER_SKUS)})
    started = time.monotonic()
    try:
        seed(caller_of(environment), stock)
    except RuntimeError as error:
        STATE.violation(f"set-up: {error}")
        return
    STATE.initial = stock
    print(f"load test {run_id}: {sorted(chosen)}, {len(stock)} items seeded in "
          f"{time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)


@events.test_start.add_listener
def on_test_start(environment, **_kwargs) -> None:
    global _sampler
    if not STATE.initial:  # set-up failed: nothing to test, and the run must fail
        environment.process_exit_code = 1
        print(f"load test set-up failed: {STATE.violations}", file=sys.stderr, flush=True)
        gevent.spawn(environment.runner.quit)
        return
    _sampler = gevent.spawn(sample_levels, caller_of(environment), STATE)


@events.test_stop.add_listener
def on_test_stop(environment, **_kwargs) -> None:
    if _sampler is not None:
        _sampler.kill()
    if STATE is None or not STATE.initial:
        return
    caller = caller_of(environment)
    # Users stopped in the middle of a call never saw its answer: settle those too.
    STATE.uncertain.extend(STATE.in_flight.values())
    STATE.in_flight.clear()
    settle_uncertain(caller, STATE)
    wait_until_every_hold_is_due(STATE)
    check_final_levels(caller, STATE)
    check_database(STATE)
    report(environment, STATE)


def settle_uncertain(caller: Caller, state: RunState) -> None:
    """Replays each operation whose answer was lost, with its request id: the service either
    returns the remembered outcome or applies it now; either way the books become exact."""
    for name, request in state.uncertain:
        for _ in range(SETTLE_ATTEMPTS_MAX):
            response, error = caller.call(name, request, operator=(name in OPERATOR_CALLS),
                                          refusals=EXPECTED_REFUSALS)
            if response is not None:
                if name == "Commit":
                    state.committed_lines(response)
                elif name == "Adjust":
                    state.received[request.sku] += request.delta
                break
            if error.code() in EXPECTED_REFUSALS:
                break
            gevent.sleep(0.2)
        else:
            state.violation(f"{name} {request.request_id}: outcome never settled")


def wait_until_every_hold_is_due(state: RunState) -> None:
    """A Reserve cut off at the stop may have made a hold we never saw, with the longest ttl."""
    allowance_ms = SWEEP_INTERVAL_MS + EXPIRY_GRACE_MS
    latest_ms = max(state.expires_at_ms_max, now_ms() + TTL_MS_RANGE[1])
    wait_s = (latest_ms + allowance_ms - now_ms()) / 1000.0
    gevent.sleep(min(max(wait_s, 0.0), END_WAIT_S_MAX))


def check_final_levels(caller: Caller, state: RunState) -> None:
    skus = list(state.initial)
    levels = []
    for start in range(0, len(skus), GET_STOCK_SKUS_MAX):
        chunk = skus[start: start + GET_STOCK_SKUS_MAX]
        response, error = caller.call("GetStock", stock_pb2.GetStockRequest(skus=chunk))
        if response is None:
            state.violation(f"final GetStock failed: {error.code().name}")
            return
        levels.extend(response.levels)
    state.check_final_levels(levels)
    if state.hot_sku is not None and state.committed[state.hot_sku] > state.initial[state.hot_sku]:
        state.violation(f"hot SKU sold {state.committed[state.hot_sku]} units of "
                        f"{state.initial[state.hot_sku]}")


def check_database(state: RunState) -> None:
    database_url = os.environ.get("STOCK_DATABASE_URL", "")
    if not database_url:
        print("load test: STOCK_DATABASE_URL unset, PostgreSQL checks skipped",
              file=sys.stderr, flush=True)
        return
    command = [sys.executable, "-m", "loadtest.db_check", "--database-url", database_url,
               "--sku-prefix", state.sku_prefix, "--order-prefix", state.order_prefix,
               "--overdue-allowance-ms", str(SWEEP_INTERVAL_MS + EXPIRY_GRACE_MS)]
    root = Path(__file__).resolve().parents[1]
    for attempt in range(1, DB_CHECK_ATTEMPTS + 1):
        finished = subprocess.run(command, cwd=root, capture_output=True, text=True,
                                  timeout=120)
        if finished.returncode == 0:
            state.check_database(json.loads(finished.stdout))
            return
        # Seen once in a few hundred runs: the child forked from this gevent + gRPC process
        # died before running any Python (only a gRPC poller error on its stderr). The check
        # only reads, so it is run again; a real failure fails every attempt.
        print(f"load test: database check attempt {attempt} exited {finished.returncode}: "
              f"{finished.stderr.strip()[-2_000:]}", file=sys.stderr, flush=True)
    state.violation(f"database check failed {DB_CHECK_ATTEMPTS} times (exit "
                    f"{finished.returncode}): {finished.stderr.strip()[-2_000:]}")


def report(environment, state: RunState) -> None:
    hot = state.hot_sku
    hot_text = f"; hot SKU sold {state.committed[hot]} of {state.initial[hot]}" if hot else ""
    print(f"load test invariants: {state.violation_count} violation(s); {state.samples} level "
          f"samples; {len(state.uncertain)} uncertain operations settled; units committed "
          f"{sum(state.committed.values())}, received {sum(state.received.values())}{hot_text}",
          file=sys.stderr, flush=True)
    for message in state.violations:
        print(f"INVARIANT VIOLATED: {message}", file=sys.stderr, flush=True)
    if state.violation_count:
        environment.process_exit_code = 1
