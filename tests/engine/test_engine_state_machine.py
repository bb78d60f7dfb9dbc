"""Hypothesis state machine: random operations with time advancing, through the binding,
against a deliberately simple Python reference model (recomputes everything, no indices,
no lazy expiry). After every step all levels and reservation statuses agree."""

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from service.engine import Engine, EngineError

SKUS = ("a", "b", "c")
RESERVATIONS = tuple(f"r{i}" for i in range(5))
# Mostly no request id; a few shared ids so replays and conflicts both happen.
REQUESTS = (None, None, None, None, "q0", "q1")
STOCK_START = 12
START_MS = 1_700_000_000_000

# Round durations make "now == expires_at" frequent: the boundary where a hold stops counting.
ttl_strategy = st.one_of(st.sampled_from([1_000, 2_000]), st.integers(1_000, 5_000))
advance_strategy = st.one_of(st.sampled_from([500, 1_000]), st.integers(0, 3_000))
lines_strategy = st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 5)), min_size=1,
                          max_size=3)


@dataclass
class Hold:
    status: str
    expires_at_ms: int
    lines: dict[str, int]


@dataclass
class Model:
    now_ms: int = START_MS
    on_hand: dict[str, int] = field(default_factory=dict)
    safety_stock: dict[str, int] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    requests: dict[str, tuple[str, object]] = field(default_factory=dict)

    def reserved(self, sku: str) -> int:
        return sum(h.lines.get(sku, 0) for h in self.holds.values()
                   if h.status == "active" and h.expires_at_ms > self.now_ms)

    def status(self, reservation_id: str) -> str | None:
        hold = self.holds.get(reservation_id)
        if hold is None:
            return None
        if hold.status == "active" and hold.expires_at_ms <= self.now_ms:
            return "expired"
        return hold.status

    def available(self, sku: str) -> int:
        """On hand less reserved less the safety stock, never below 0."""
        return max(0, self.on_hand[sku] - self.reserved(sku) - self.safety_stock.get(sku, 0))

    def levels(self, skus) -> list[tuple]:
        return sorted((s, "", self.on_hand[s], self.reserved(s), self.available(s),
                       self.safety_stock.get(s, 0)) for s in skus)

    def remembered(self, request_id, key):
        if request_id is None or request_id not in self.requests:
            return None
        first_key, outcome = self.requests[request_id]
        return outcome if first_key == key else "idempotency_conflict"

    def remember(self, request_id, key, outcome):
        if request_id is not None:
            self.requests[request_id] = (key, outcome)
        return outcome


def summed(lines) -> dict[str, int]:
    total: dict[str, int] = {}
    for sku, quantity in lines:
        total[sku] = total.get(sku, 0) + quantity
    return total


def scoped(kind: str, request_id: str | None) -> str | None:
    """Request ids per operation kind, so that most reuse is a replay, not a conflict."""
    return None if request_id is None else f"{kind}-{request_id}"


def answer(call):
    """What the engine answered, in the model's terms."""
    try:
        view = call()
    except EngineError as error:
        return error.code
    if hasattr(view, "reservation_id"):
        return (view.reservation_id, view.status)
    return sorted(view.levels)


class EngineMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.engine = Engine(reservations_terminal_max=1_000)
        self.model = Model()
        for sku in SKUS[:2]:
            self.engine.set_stock(sku, "", STOCK_START, None, START_MS)
            self.model.on_hand[sku] = STOCK_START

    @rule(ms=advance_strategy)
    def advance(self, ms):
        self.model.now_ms += ms

    @rule(reservation_id=st.sampled_from(RESERVATIONS), lines=lines_strategy,
          ttl_ms=ttl_strategy, request_id=st.sampled_from(REQUESTS))
    def reserve(self, reservation_id, lines, ttl_ms, request_id):
        request_id = scoped("reserve", request_id)
        engine_lines = [(s, "", q) for s, q in lines]
        actual = answer(lambda: self.engine.reserve(reservation_id, "o", engine_lines, ttl_ms,
                                                    self.model.now_ms, request_id))
        assert actual == self.model_reserve(reservation_id, lines, ttl_ms, request_id)

    def model_reserve(self, reservation_id, lines, ttl_ms, request_id):
        model = self.model
        key = ("reserve", tuple(lines), ttl_ms)
        if (replay := model.remembered(request_id, key)) is not None:
            return replay
        if reservation_id in model.holds:
            return "reservation_exists"
        wanted = summed(lines)
        if any(s not in model.on_hand for s in wanted):
            return "unknown_item"
        if any(model.available(s) < q for s, q in wanted.items()):
            return "short_stock"
        model.holds[reservation_id] = Hold("active", model.now_ms + ttl_ms, wanted)
        return model.remember(request_id, key, (reservation_id, "active"))

    @rule(reservation_id=st.sampled_from(RESERVATIONS),
          lines=st.one_of(st.none(), lines_strategy), request_id=st.sampled_from(REQUESTS))
    def commit(self, reservation_id, lines, request_id):
        request_id = scoped("commit", request_id)
        engine_lines = None if lines is None else [(s, "", q) for s, q in lines]
        actual = answer(lambda: self.engine.commit(reservation_id, engine_lines,
                                                   self.model.now_ms, request_id))
        assert actual == self.model_commit(reservation_id, lines, request_id)

    def model_commit(self, reservation_id, lines, request_id):
        model = self.model
        key = ("commit", reservation_id, None if lines is None else tuple(lines))
        if (replay := model.remembered(request_id, key)) is not None:
            return replay
        status = model.status(reservation_id)
        if status is None:
            return "unknown_reservation"
        if status == "committed":
            return (reservation_id, "committed")
        if status != "active":
            return "wrong_state"
        hold = model.holds[reservation_id]
        committed = dict(hold.lines) if lines is None else summed(lines)
        if any(q > hold.lines.get(s, 0) for s, q in committed.items()):
            return "invalid_request"
        for sku, quantity in committed.items():
            model.on_hand[sku] -= quantity
        hold.status = "committed"
        return model.remember(request_id, key, (reservation_id, "committed"))

    @rule(reservation_id=st.sampled_from(RESERVATIONS), request_id=st.sampled_from(REQUESTS))
    def release(self, reservation_id, request_id):
        request_id = scoped("release", request_id)
        actual = answer(lambda: self.engine.release(reservation_id, self.model.now_ms, request_id))
        model = self.model
        key = ("release", reservation_id)
        expected = model.remembered(request_id, key)
        if expected is None:
            status = model.status(reservation_id)
            if status is None:
                expected = "unknown_reservation"
            elif status == "committed":
                expected = "wrong_state"
            elif status != "active":
                expected = (reservation_id, status)
            else:
                model.holds[reservation_id].status = "released"
                expected = model.remember(request_id, key, (reservation_id, "released"))
        assert actual == expected

    @rule(reservation_id=st.sampled_from(RESERVATIONS), ttl_ms=ttl_strategy)
    def extend(self, reservation_id, ttl_ms):
        actual = answer(lambda: self.engine.extend(reservation_id, ttl_ms, self.model.now_ms))
        status = self.model.status(reservation_id)
        if status is None:
            expected = "unknown_reservation"
        elif status != "active":
            expected = "wrong_state"
        else:
            self.model.holds[reservation_id].expires_at_ms = self.model.now_ms + ttl_ms
            expected = (reservation_id, "active")
        assert actual == expected

    @rule(lines=lines_strategy, request_id=st.sampled_from(REQUESTS))
    def decrement(self, lines, request_id):
        request_id = scoped("decrement", request_id)
        engine_lines = [(s, "", q) for s, q in lines]
        actual = answer(lambda: self.engine.decrement(engine_lines, self.model.now_ms,
                                                      request_id=request_id))
        model = self.model
        key = ("decrement", tuple(lines))
        expected = model.remembered(request_id, key)
        if expected is None:
            wanted = summed(lines)
            if any(s not in model.on_hand for s in wanted):
                expected = "unknown_item"
            elif any(model.available(s) < q for s, q in wanted.items()):
                expected = "short_stock"
            else:
                for sku, quantity in wanted.items():
                    model.on_hand[sku] -= quantity
                expected = model.remember(request_id, key, model.levels(wanted))
        assert actual == expected

    @rule(sku=st.sampled_from(SKUS), delta=st.integers(-6, 12).filter(bool),
          request_id=st.sampled_from(REQUESTS))
    def adjust(self, sku, delta, request_id):
        request_id = scoped("adjust", request_id)
        actual = answer(lambda: self.engine.adjust(sku, "", delta, self.model.now_ms,
                                                   request_id=request_id))
        model = self.model
        key = ("adjust", sku, delta)
        expected = model.remembered(request_id, key)
        if expected is None:
            if sku not in model.on_hand and delta < 0:
                expected = "unknown_item"
            elif model.on_hand.get(sku, 0) + delta < model.reserved(sku):
                expected = "on_hand_below_reserved"
            else:
                model.on_hand[sku] = model.on_hand.get(sku, 0) + delta
                expected = model.remember(request_id, key, model.levels([sku]))
        assert actual == expected

    @rule(sku=st.sampled_from(SKUS), on_hand=st.integers(0, 20),
          expected_on_hand=st.one_of(st.none(), st.integers(0, 20)),
          request_id=st.sampled_from(REQUESTS))
    def set_stock(self, sku, on_hand, expected_on_hand, request_id):
        request_id = scoped("set_stock", request_id)
        actual = answer(lambda: self.engine.set_stock(sku, "", on_hand, expected_on_hand,
                                                      self.model.now_ms, request_id=request_id))
        model = self.model
        key = ("set", sku, on_hand, expected_on_hand)
        expected = model.remembered(request_id, key)
        if expected is None:
            if expected_on_hand is not None and expected_on_hand != model.on_hand.get(sku, 0):
                expected = "expected_mismatch"
            elif on_hand < model.reserved(sku):
                expected = "on_hand_below_reserved"
            else:
                model.on_hand[sku] = on_hand
                expected = model.remember(request_id, key, model.levels([sku]))
        assert actual == expected

    @rule(sku=st.sampled_from(SKUS), safety_stock=st.integers(0, 8),
          reason=st.sampled_from(("", "count")), request_id=st.sampled_from(REQUESTS))
    def set_safety_stock(self, sku, safety_stock, reason, request_id):
        """Moves no unit and is never refused for the levels: an unknown item is created
        with nothing on hand; only what a reserve or decrement may take changes."""
        request_id = scoped("safety", request_id)
        actual = answer(lambda: self.engine.set_safety_stock(
            sku, "", safety_stock, self.model.now_ms, reason=reason, request_id=request_id))
        model = self.model
        key = ("safety", sku, safety_stock, reason)
        expected = model.remembered(request_id, key)
        if expected is None:
            model.on_hand.setdefault(sku, 0)
            model.safety_stock[sku] = safety_stock
            expected = model.remember(request_id, key, model.levels([sku]))
        assert actual == expected

    @rule(max_count=st.integers(1, 4))
    def expire_due(self, max_count):
        expired = self.engine.expire_due(self.model.now_ms, max_count)
        assert len(expired) <= max_count
        for reservation_id in expired:
            assert self.model.status(reservation_id) == "expired"

    @invariant()
    def levels_agree(self):
        view = self.engine.get_stock(list(SKUS), "", self.model.now_ms)
        assert sorted(view.levels) == self.model.levels(self.model.on_hand)

    @invariant()
    def statuses_agree(self):
        for reservation_id in RESERVATIONS:
            try:
                status = self.engine.get_reservation(reservation_id, self.model.now_ms).status
            except EngineError as error:
                assert error.code == "unknown_reservation"
                status = None
            assert status == self.model.status(reservation_id)


EngineMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60,
                                           deadline=None)
TestEngineStateMachine = EngineMachine.TestCase
