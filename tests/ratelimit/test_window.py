"""MemoryStore: the sliding window over requests and tokens, with both lru_ops variants."""

from __future__ import annotations

import math
import os
from types import ModuleType

import pytest

from ccproxy_asgi._cython import load_variant
from ccproxy_asgi.ratelimit import AdaptivePolicy, Budget, Cost, MemoryStore, Observation, Settlement
from tests.support.manual_clock import ManualClock

POLICY = AdaptivePolicy()


def _variant(name: str) -> ModuleType:
    try:
        return load_variant("lru_ops", "compiled" if name == "compiled" else "python")
    except ImportError as exc:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"lru_ops must be compiled in CI: {exc}")
        pytest.skip(f"lru_ops not compiled: {exc}")


@pytest.fixture(params=["python", "compiled"])
def lru(request: pytest.FixtureRequest) -> ModuleType:
    return _variant(request.param)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(clock: ManualClock, lru: ModuleType) -> MemoryStore:
    return MemoryStore(clock=clock, window_log=lru.WindowLog)


def test_budget_validation_and_scaling() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Budget(requests=0)
    with pytest.raises(ValueError, match="window"):
        Budget(window=0)
    budget = Budget(requests=10, tokens=1000, window=60)
    assert budget.scaled(0.5) == Budget(requests=5, tokens=500, window=60)
    assert budget.scaled(0.01).requests == 1  # never below one
    assert Budget().unlimited
    assert not budget.unlimited
    assert budget.refusal(Cost(900, 100)) is None
    reason = budget.refusal(Cost(900, 101))
    assert reason is not None
    assert "1001 tokens" in reason
    assert "900 of prompt + 101 of max_tokens" in reason


def test_requests_per_window_slide(store: MemoryStore, clock: ManualClock) -> None:
    budget = Budget(requests=3, window=10)
    for _ in range(3):
        assert store.decide("k", Cost(1, 1), budget).ticket is not None
        clock.t += 1
    # t=1003: the first request (t=1000) leaves the window at t=1010.
    refused = store.decide("k", Cost(1, 1), budget)
    assert refused.ticket is None
    assert refused.wait == pytest.approx(7.0)
    assert refused.view.remaining_requests == 0
    clock.t += 7.0
    assert store.decide("k", Cost(1, 1), budget).ticket is not None


def test_tokens_per_window_wait_covers_the_excess(store: MemoryStore, clock: ManualClock) -> None:
    budget = Budget(tokens=1000, window=60)
    assert store.decide("k", Cost(300, 100), budget).ticket is not None  # 400 at t=0
    clock.t += 10
    assert store.decide("k", Cost(300, 100), budget).ticket is not None  # 800 at t=10
    clock.t += 10
    decision = store.decide("k", Cost(400, 200), budget)  # needs 600: 400 must leave (t=60 -> wait 40)
    assert decision.ticket is None
    assert decision.wait == pytest.approx(40.0)
    assert decision.view.remaining_tokens == 200
    small = store.decide("k", Cost(100, 100), budget)
    assert small.ticket is not None
    assert small.view.remaining_tokens == 0


def test_reset_after_is_when_the_window_is_empty(store: MemoryStore, clock: ManualClock) -> None:
    budget = Budget(requests=10, window=60)
    store.decide("k", Cost(1, 0), budget)
    clock.t += 15
    view = store.decide("k", Cost(1, 0), budget).view
    assert view.reset_after == pytest.approx(60.0)
    clock.t += 61
    view = store.decide("k", Cost(1, 0), budget, reserve=False).view
    assert view.reset_after == 0.0
    assert view.remaining_requests == 10


def test_peek_does_not_reserve(store: MemoryStore) -> None:
    budget = Budget(requests=1, window=60)
    assert store.decide("k", Cost(1, 1), budget, reserve=False).ticket is None
    assert store.decide("k", Cost(1, 1), budget).ticket is not None


def test_keys_are_independent(store: MemoryStore) -> None:
    budget = Budget(requests=1, window=60)
    assert store.decide("a", Cost(1, 1), budget).ticket is not None
    assert store.decide("b", Cost(1, 1), budget).ticket is not None
    assert store.decide("a", Cost(1, 1), budget).ticket is None


def test_split_input_and_output_budgets(store: MemoryStore, clock: ManualClock) -> None:
    budget = Budget(tokens=10_000, input_tokens=1000, output_tokens=500, window=60)
    assert store.decide("k", Cost(900, 100), budget).ticket is not None
    out_short = store.decide("k", Cost(50, 450), budget)  # output 100 + 450 > 500
    assert out_short.ticket is None
    assert out_short.wait == pytest.approx(60.0)
    assert out_short.view.remaining_output_tokens == 400
    assert out_short.view.remaining_input_tokens == 100
    assert store.decide("k", Cost(100, 400), budget).ticket is not None


async def test_reconcile_frees_the_unused_reserve(store: MemoryStore) -> None:
    budget = Budget(tokens=1000, window=60)
    first = store.decide("k", Cost(100, 800), budget)
    assert first.ticket is not None
    assert store.decide("k", Cost(100, 200), budget).ticket is None
    await store.settle(first.ticket, Settlement(actual=Cost(100, 50)), budget, POLICY)
    decision = store.decide("k", Cost(100, 200), budget)
    assert decision.ticket is not None
    assert decision.view.remaining_tokens == 1000 - 150 - 300


async def test_reconcile_can_charge_more_than_reserved(store: MemoryStore) -> None:
    budget = Budget(tokens=1000, window=60)
    first = store.decide("k", Cost(100, 100), budget)
    assert first.ticket is not None
    await store.settle(first.ticket, Settlement(actual=Cost(700, 100)), budget, POLICY)
    assert store.decide("k", Cost(100, 150), budget).ticket is None


async def test_cancel_forgets_the_request(store: MemoryStore) -> None:
    budget = Budget(requests=1, tokens=1000, window=60)
    first = store.decide("k", Cost(100, 800), budget)
    assert first.ticket is not None
    await store.settle(first.ticket, Settlement(cancel=True), budget, POLICY)
    assert store.decide("k", Cost(100, 800), budget).ticket is not None


async def test_retries_are_charged_as_requests(store: MemoryStore) -> None:
    budget = Budget(requests=3, window=60)
    first = store.decide("k", Cost(1, 1), budget)
    assert first.ticket is not None
    await store.settle(first.ticket, Settlement(extra_requests=2), budget, POLICY)
    assert store.decide("k", Cost(1, 1), budget).ticket is None


async def test_settling_an_expired_reservation_is_harmless(store: MemoryStore, clock: ManualClock) -> None:
    budget = Budget(tokens=1000, window=10)
    first = store.decide("k", Cost(100, 100), budget)
    assert first.ticket is not None
    clock.t += 11
    await store.settle(first.ticket, Settlement(actual=Cost(900, 0)), budget, POLICY)
    assert store.decide("k", Cost(500, 500), budget).ticket is not None


def test_a_request_above_the_scaled_limit_may_go_alone(store: MemoryStore, clock: ManualClock) -> None:
    budget = Budget(tokens=1000, window=10)
    state = store._state("k", budget)
    state.adaptive.factor = 0.5  # effective 500
    big = Cost(500, 200)
    assert store.decide("k", big, budget).ticket is not None  # window empty: it may go
    refused = store.decide("k", big, budget)
    assert refused.ticket is None
    assert refused.wait == pytest.approx(10.0)


def test_never_fits_is_infinite_wait(store: MemoryStore) -> None:
    decision = store.decide("k", Cost(2000, 0), Budget(tokens=1000, window=10))
    assert decision.ticket is None
    assert math.isinf(decision.wait)


async def test_memory_is_bounded_by_the_window(store: MemoryStore, clock: ManualClock) -> None:
    budget = Budget(requests=100, window=1)
    for _ in range(10_000):
        store.decide("k", Cost(1, 1), budget)
        clock.t += 0.05
    state = store._state("k", budget)
    assert state.log.count <= 21  # 1 s of requests every 50 ms
    # Idle keys are swept.
    for i in range(50):
        store.decide(f"client-{i}", Cost(1, 1), budget)
    clock.t += 5
    assert store.sweep() == 51
    assert len(store) == 0


async def test_header_debt_tightens_until_reset(store: MemoryStore, clock: ManualClock) -> None:
    budget = Budget(tokens=1000, window=60)
    assert store.decide("k", Cost(100, 100), budget).ticket is not None
    # The upstream says only 300 tokens are left (someone else shares the account) for the next 5 s.
    observation = Observation(remaining_tokens=300, reset_tokens=5.0)
    await store.observe("k", observation, budget, POLICY)
    decision = store.decide("k", Cost(200, 200), budget, reserve=False)
    assert decision.ticket is None
    assert decision.wait == pytest.approx(5.0)
    assert decision.view.remaining_tokens == 300
    assert store.decide("k", Cost(200, 100), budget).ticket is not None  # 300 fits the debt
    clock.t += 5.0
    assert store.decide("k", Cost(200, 200), budget).ticket is not None


async def test_header_saying_more_is_left_changes_nothing(store: MemoryStore) -> None:
    budget = Budget(tokens=1000, window=60)
    store.decide("k", Cost(400, 400), budget)
    await store.observe("k", Observation(remaining_tokens=900, reset_tokens=1.0), budget, POLICY)
    assert store.decide("k", Cost(100, 100), budget).ticket is not None
    assert store.decide("k", Cost(1, 0), budget).ticket is None
