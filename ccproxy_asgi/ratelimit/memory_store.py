"""`MemoryStore`: windows in process memory, one `lru_ops.WindowLog` per key (three with separate
input/output budgets). Each decision prunes the expired head and checks the running sums: O(1)
amortized, and memory bounded by the requests still in the window. Limits are per process: with several
workers or replicas use `RedisStore`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from ccproxy_asgi._cython import lru_ops
from ccproxy_asgi.ratelimit.adaptive import AdaptivePolicy, AdaptiveState
from ccproxy_asgi.ratelimit.budget import Budget, Cost, WindowView
from ccproxy_asgi.ratelimit.store import Decision, FactorChange, Observation, Settlement, Ticket

# Every this many decisions, keys whose window is empty and whose adaptive state is neutral are dropped,
# so a store keyed per client does not keep every client it ever saw.
_SWEEP_EVERY = 1024


class _KeyState:
    __slots__ = ("adaptive", "inp", "log", "newest", "out", "window")

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.log = factory()
        self.inp: Any = None
        self.out: Any = None
        self.adaptive = AdaptiveState()
        self.newest = -math.inf
        self.window = 0.0

    def prune(self, cutoff: float) -> None:
        self.log.prune(cutoff)
        if self.inp is not None:
            self.inp.prune(cutoff)
            self.out.prune(cutoff)


class MemoryStore:
    """The in-process `LimiterStore`. `clock` is the store's time base (monotonic by default);
    `window_log` builds the per-key history (the compiled `lru_ops.WindowLog` by default)."""

    shared = False

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        window_log: Callable[[], Any] | None = None,
    ) -> None:
        self._clock = clock
        self._factory: Callable[[], Any] = window_log or lru_ops.WindowLog
        self._keys: dict[str, _KeyState] = {}
        self._decisions = 0

    def __len__(self) -> int:
        """Keys currently tracked."""
        return len(self._keys)

    def _state(self, key: str, budget: Budget) -> _KeyState:
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState(self._factory)
        if budget.split and state.inp is None:
            state.inp = self._factory()
            state.out = self._factory()
        state.window = budget.window
        return state

    async def acquire(
        self, key: str, cost: Cost, budget: Budget, policy: AdaptivePolicy, *, reserve: bool = True
    ) -> Decision:
        return self.decide(key, cost, budget, reserve=reserve)

    def decide(self, key: str, cost: Cost, budget: Budget, *, reserve: bool = True) -> Decision:
        """`acquire` without the coroutine: the whole decision, synchronously."""
        self._decisions += 1
        if self._decisions % _SWEEP_EVERY == 0:
            self.sweep()
        now = self._clock()
        state = self._state(key, budget)
        window = budget.window
        state.prune(now - window)
        adaptive = state.adaptive
        effective = budget if adaptive.factor >= 1.0 else budget.scaled(adaptive.factor)
        need = cost.tokens
        limit_requests = effective.requests
        limit_tokens = _lone(effective.tokens, budget.tokens, need)
        limit_in = _lone(effective.input_tokens, budget.input_tokens, cost.input_tokens)
        limit_out = _lone(effective.output_tokens, budget.output_tokens, cost.output_tokens)
        debt_requests = adaptive.debt_requests if now < adaptive.debt_requests_until else 0
        debt_tokens = adaptive.debt_tokens if now < adaptive.debt_tokens_until else 0

        wait = self._wait(state, now, window, cost, limit_requests, limit_tokens, limit_in, limit_out)
        if debt_requests or debt_tokens:
            # Either the request fits with the debt counted, or it waits for the debt to lapse.
            indebted = self._wait(
                state,
                now,
                window,
                cost,
                None if limit_requests is None else limit_requests - debt_requests,
                None if limit_tokens is None else limit_tokens - debt_tokens,
                limit_in,
                limit_out,
            )
            expiry = -math.inf
            if debt_requests:
                expiry = adaptive.debt_requests_until
            if debt_tokens:
                expiry = max(expiry, adaptive.debt_tokens_until)
            wait = min(indebted, max(wait, expiry - now))
        paused_for = adaptive.pause_until - now
        if paused_for > 0.0:
            wait = max(wait, paused_for)
        else:
            paused_for = 0.0

        ticket = None
        if wait == 0.0 and reserve:
            handle = (
                state.log.add(now, need),
                None if state.inp is None else state.inp.add(now, cost.input_tokens),
                None if state.out is None else state.out.add(now, cost.output_tokens),
            )
            state.newest = now
            ticket = Ticket(key, handle, now, cost)
        log = state.log
        view = WindowView(
            limit_requests=effective.requests,
            remaining_requests=_left(effective.requests, log.count + debt_requests),
            limit_tokens=effective.tokens,
            remaining_tokens=_left(effective.tokens, log.tokens + debt_tokens),
            limit_input_tokens=effective.input_tokens,
            remaining_input_tokens=None
            if state.inp is None
            else _left(effective.input_tokens, state.inp.tokens),
            limit_output_tokens=effective.output_tokens,
            remaining_output_tokens=None
            if state.out is None
            else _left(effective.output_tokens, state.out.tokens),
            reset_after=max(0.0, state.newest + window - now) if log.count else 0.0,
            factor=adaptive.factor,
            paused_for=paused_for,
        )
        return Decision(ticket, wait, view)

    @staticmethod
    def _wait(
        state: _KeyState,
        now: float,
        window: float,
        cost: Cost,
        limit_requests: int | None,
        limit_tokens: int | None,
        limit_in: int | None,
        limit_out: int | None,
    ) -> float:
        if limit_requests is not None and limit_requests < 1:
            return math.inf
        if limit_tokens is not None and limit_tokens < 0:
            return math.inf
        wait: float = state.log.time_until_fits(now, window, limit_requests, limit_tokens, cost.tokens)
        if state.inp is not None:
            if limit_in is not None:
                wait = max(wait, state.inp.time_until_fits(now, window, None, limit_in, cost.input_tokens))
            if limit_out is not None:
                wait = max(wait, state.out.time_until_fits(now, window, None, limit_out, cost.output_tokens))
        return wait

    async def settle(
        self, ticket: Ticket, settlement: Settlement, budget: Budget, policy: AdaptivePolicy
    ) -> FactorChange:
        now = self._clock()
        state = self._state(ticket.key, budget)
        state.prune(now - budget.window)
        handle = ticket.handle
        assert isinstance(handle, tuple)
        main, inp, out = handle
        logs = ((state.log, main), (state.inp, inp), (state.out, out))
        if settlement.cancel:
            for log, entry in logs:
                if log is not None and entry is not None:
                    log.cancel(entry)
        elif settlement.actual is not None:
            reserved, actual = ticket.cost, settlement.actual
            deltas = (
                actual.tokens - reserved.tokens,
                actual.input_tokens - reserved.input_tokens,
                actual.output_tokens - reserved.output_tokens,
            )
            for (log, entry), delta in zip(logs, deltas, strict=True):
                if log is not None and entry is not None and delta:
                    log.adjust(entry, delta)
        for _ in range(settlement.extra_requests):
            state.log.add(now, 0)
            state.newest = now
        changed = settlement.success and policy.on_success(state.adaptive)
        return FactorChange(state.adaptive.factor, changed)

    async def observe(
        self,
        key: str,
        observation: Observation,
        budget: Budget,
        policy: AdaptivePolicy,
        *,
        admitted_at: float | None = None,
    ) -> FactorChange:
        now = self._clock()
        state = self._state(key, budget)
        state.prune(now - budget.window)
        adaptive = state.adaptive
        changed = False
        if observation.rate_limited:
            changed = policy.on_rate_limited(adaptive, now, observation.retry_after, admitted_at)
        effective = budget if adaptive.factor >= 1.0 else budget.scaled(adaptive.factor)
        policy.on_remaining(
            adaptive,
            now,
            window=budget.window,
            limit_requests=effective.requests,
            used_requests=state.log.count,
            remaining_requests=observation.remaining_requests,
            reset_requests=observation.reset_requests,
            limit_tokens=effective.tokens,
            used_tokens=state.log.tokens,
            remaining_tokens=observation.remaining_tokens,
            reset_tokens=observation.reset_tokens,
        )
        return FactorChange(adaptive.factor, changed)

    def sweep(self) -> int:
        """Drop keys with an empty window and a neutral adaptive state; returns how many."""
        now = self._clock()
        idle = []
        for key, state in self._keys.items():
            state.prune(now - state.window)
            if state.log.count == 0 and state.adaptive.neutral(now):
                idle.append(key)
        for key in idle:
            del self._keys[key]
        return len(idle)

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._keys.clear()


def _lone(effective: int | None, configured: int | None, need: int) -> int | None:
    # A request above the scaled-down limit but within the configured one may still go alone, into an
    # otherwise empty window: the factor only grows on successes, so it would otherwise wait forever.
    if effective is not None and configured is not None and effective < need <= configured:
        return need
    return effective


def _left(limit: int | None, used: int) -> int | None:
    return None if limit is None else max(0, limit - used)


__all__ = ["MemoryStore"]
