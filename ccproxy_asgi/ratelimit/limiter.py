"""`RateLimiter`: budgets per key over a `LimiterStore`, a fair queue per key, and the adaptive feedback.

A request is admitted at once when its cost fits. Otherwise it queues behind the requests of its key that
came first (FIFO per key, per process): only the head asks the store, and sleeps until the store says the
window will have room or until a local reservation frees budget earlier. A request still waiting at its deadline
is refused with the honest wait as `retry-after` (429), and sooner when waiting cannot help (the upstream's
pause outlasts the deadline, or nothing in flight could free budget before it); one that can never fit
(cost above the configured budget) is refused at once (413, not retried). A cancelled waiter (the client
left) leaves the queue, having taken nothing.

With a shared store (Redis) the queue orders this process's requests; across processes the atomic
decisions keep the budget, and the head re-checks at least every `poll_interval` seconds to see budget
freed elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from ccproxy_asgi._cython import lru_ops
from ccproxy_asgi.errors import RateLimitError, RequestTooLargeError
from ccproxy_asgi.ratelimit.adaptive import AdaptivePolicy
from ccproxy_asgi.ratelimit.budget import Budget, Cost, WindowView
from ccproxy_asgi.ratelimit.clock import Clock, MonotonicClock
from ccproxy_asgi.ratelimit.memory_store import MemoryStore
from ccproxy_asgi.ratelimit.response_headers import ratelimit_headers
from ccproxy_asgi.ratelimit.stats import EffectiveLimits, LimiterSnapshot, LimiterStats
from ccproxy_asgi.ratelimit.store import (
    Decision,
    LimiterStore,
    Observation,
    Settlement,
    StoreUnavailableError,
    Ticket,
)

logger = logging.getLogger("ccproxy_asgi.ratelimit")

FailureMode = Literal["open", "closed"]

# Woken a little after the store's wait, so float rounding never wakes a waiter just before the entry
# that blocks it expires.
_SLACK = 0.001
_UNAVAILABLE_RETRY_AFTER = 1.0
_VIEWS_KEPT = 1024


@dataclass(slots=True)
class Reservation:
    """An admitted request: what it reserved and where. `ticket` is None when nothing was recorded
    (unlimited budget, or the store was down and the limiter failed open)."""

    key: str
    cost: Cost
    budget: Budget
    ticket: Ticket | None
    view: WindowView | None
    waited: float = 0.0
    settled: bool = False


@dataclass(slots=True)
class Waiting:
    """A request that did not fit at once: what `RateLimiter.wait` needs to queue it."""

    key: str
    cost: Cost
    budget: Budget
    start: float
    limit: float
    first: Decision | None = None


class _Lane:
    """The queue of one key in this process."""

    __slots__ = ("changed", "waiters")

    def __init__(self) -> None:
        self.waiters: deque[asyncio.Event] = deque()
        # Set when a reservation of this key is settled here, so the head re-checks at once.
        self.changed = asyncio.Event()


class RateLimiter:
    """Keeps requests within RPM/TPM budgets per key; see the module docstring.

    `budget`: the default budget of every key; `budgets`: budgets of particular keys. `store`: where the
    windows live (default an in-process `MemoryStore`). `policy`: the adaptive rules. `max_wait`: how
    long a request may queue before a 429. `failure_mode`: when the store is unreachable, admit without
    accounting ("open") or refuse with a 429 ("closed"). `poll_interval`: the longest a queue head sleeps
    without re-checking the store. `clock`: time and timed waits (injected in tests).

    `window_margin` (seconds) lengthens every window as the store sees it: the upstream counts a request
    when it arrives, a little after it was admitted here (a new connection, a busy loop), so an entry
    that leaves the local window at the very moment it leaves the upstream's would let the next request
    arrive while the upstream still counts the old one. The default 0.05 s costs under 0.1 % of a
    one-minute window.
    """

    def __init__(
        self,
        *,
        budget: Budget,
        budgets: Mapping[str, Budget] | None = None,
        store: LimiterStore | None = None,
        policy: AdaptivePolicy | None = None,
        max_wait: float = 30.0,
        failure_mode: FailureMode = "open",
        poll_interval: float = 1.0,
        clock: Clock | None = None,
        window_margin: float = 0.05,
    ) -> None:
        if window_margin < 0:
            raise ValueError("window_margin must be >= 0")
        if max_wait < 0:
            raise ValueError("max_wait must be >= 0")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0")
        if failure_mode not in ("open", "closed"):
            raise ValueError("failure_mode must be 'open' or 'closed'")
        self.budget = budget
        self.budgets: dict[str, Budget] = dict(budgets or {})
        self.store: LimiterStore = store if store is not None else MemoryStore()
        self.policy = policy if policy is not None else AdaptivePolicy()
        self.max_wait = max_wait
        self.failure_mode: FailureMode = failure_mode
        self._poll_interval = poll_interval
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self.window_margin = window_margin
        self._store_budgets: dict[Budget, Budget] = {}
        self._lanes: dict[str, _Lane] = {}
        # Unsettled reservations per key admitted by this limiter.
        self._in_flight: dict[str, int] = {}
        self._stats = LimiterStats()
        self._views: lru_ops.LRUCache[str, WindowView] = lru_ops.LRUCache(_VIEWS_KEPT)

    def __repr__(self) -> str:
        return f"RateLimiter(budget={self.budget!r}, store={type(self.store).__name__})"

    def budget_for(self, key: str) -> Budget:
        """The configured budget of `key`."""
        return self.budgets.get(key, self.budget)

    def _store_budget(self, key: str) -> Budget:
        budget = self.budgets.get(key, self.budget)
        stored = self._store_budgets.get(budget)
        if stored is None:
            stored = (
                replace(budget, window=budget.window + self.window_margin) if self.window_margin else budget
            )
            if len(self._store_budgets) < 256:
                self._store_budgets[budget] = stored
        return stored

    def queued(self, key: str | None = None) -> int:
        """Requests waiting in this process (for `key`, or in all)."""
        if key is not None:
            lane = self._lanes.get(key)
            return 0 if lane is None else len(lane.waiters)
        return sum(len(lane.waiters) for lane in self._lanes.values())

    def snapshot(self) -> LimiterSnapshot:
        """Counters and gauges for metrics: hits, waits, rejections, effective limits per key."""
        snap = self._stats.snapshot(self.queued())
        keys = self._views.keys()
        for key in keys:
            view = self._views.get(key)
            if view is not None:
                snap.effective[key] = EffectiveLimits.from_view(view)
        return snap

    # ----- admission -----------------------------------------------------------------------------------

    async def acquire(self, key: str, cost: Cost, *, max_wait: float | None = None) -> Reservation:
        """Admit a request of `cost` under `key`, waiting in line up to `max_wait` (default the
        limiter's). Raises `RequestTooLargeError` (never fits) or `RateLimitError` (not in time)."""
        result = await self.try_acquire(key, cost, max_wait=max_wait)
        if isinstance(result, Reservation):
            return result
        return await self.wait(result)

    async def try_acquire(
        self, key: str, cost: Cost, *, max_wait: float | None = None
    ) -> Reservation | Waiting:
        """Admit at once if the request fits now and nobody of its key is waiting; else a `Waiting` to
        pass to `wait` (the request joins the line only then). Raises like `acquire`."""
        stats = self._stats
        stats.checked += 1
        budget = self._store_budget(key)
        if budget.unlimited:
            stats.admitted += 1
            return Reservation(key, cost, budget, None, None)
        refusal = self.budget_for(key).refusal(cost)
        if refusal is not None:
            stats.rejected_too_large += 1
            raise RequestTooLargeError(refusal, should_retry=False)
        limit = self.max_wait if max_wait is None else max_wait
        start = self._clock.now()
        lane = self._lanes.get(key)
        first: Decision | None = None
        if lane is None or not lane.waiters:
            first = await self._decide(key, cost, budget, reserve=True)
            if first is None:
                return self._unavailable(key, cost, budget)
            if first.ticket is not None:
                return self._admit(key, cost, budget, first, 0.0)
            if self._hopeless(key, first, limit):
                self._reject(first, limit, budget)
        return Waiting(key, cost, budget, start, limit, first)

    async def wait(self, waiting: Waiting) -> Reservation:
        """Wait in line for budget; see `acquire`. Cancelling it leaves the line, having taken nothing."""
        key, cost, budget, start, limit = (
            waiting.key,
            waiting.cost,
            waiting.budget,
            waiting.start,
            waiting.limit,
        )
        first, waiting.first = waiting.first, None
        deadline = start + limit
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        turn = asyncio.Event()
        lane.waiters.append(turn)
        if lane.waiters[0] is turn:
            turn.set()
        else:
            first = None  # others queued meanwhile: the decision is stale by the time this one leads
        try:
            while True:
                if not turn.is_set():
                    if not await self._clock.wait(turn, deadline - self._clock.now()):
                        peek = await self._decide(key, cost, budget, reserve=False)
                        if peek is None:
                            return self._unavailable(key, cost, budget)
                        self._reject(peek, limit, budget)
                    continue
                decision = first
                first = None
                if decision is None:
                    lane.changed.clear()
                    decision = await self._decide(key, cost, budget, reserve=True)
                    if decision is None:
                        return self._unavailable(key, cost, budget)
                now = self._clock.now()
                if decision.ticket is not None:
                    return self._admit(key, cost, budget, decision, now - start)
                remaining = deadline - now
                if remaining <= 0 or self._hopeless(key, decision, remaining):
                    self._reject(decision, limit, budget)
                nap = min(decision.wait + _SLACK, self._poll_interval, remaining)
                await self._clock.wait(lane.changed, nap)
        except asyncio.CancelledError:
            self._stats.left_queue_cancelled += 1
            raise
        finally:
            self._stats.record_wait(self._clock.now() - start)
            was_head = lane.waiters[0] is turn
            lane.waiters.remove(turn)
            if lane.waiters:
                if was_head:
                    lane.waiters[0].set()
            elif self._lanes.get(key) is lane:
                del self._lanes[key]

    async def _decide(self, key: str, cost: Cost, budget: Budget, *, reserve: bool) -> Decision | None:
        try:
            decision = await self.store.acquire(key, cost, budget, self.policy, reserve=reserve)
        except StoreUnavailableError:
            self._stats.store_errors += 1
            return None
        self._views.put(key, decision.view)
        return decision

    def _hopeless(self, key: str, decision: Decision, remaining: float) -> bool:
        """Whether waiting `remaining` seconds cannot help: refuse now rather than at the deadline.

        Settling a reservation in flight (its `max_tokens` reserve mostly unused) frees budget before
        the window slides, so while one is, or might be (a shared store), the request waits its turn.
        """
        if decision.wait <= remaining:
            return False
        if decision.view.paused_for > remaining:
            return True
        return not self.store.shared and not self._in_flight.get(key)

    def _admit(self, key: str, cost: Cost, budget: Budget, decision: Decision, waited: float) -> Reservation:
        stats = self._stats
        stats.admitted += 1
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        if waited > 0:
            stats.admitted_after_wait += 1
        return Reservation(key, cost, budget, decision.ticket, decision.view, waited)

    def _reject(self, decision: Decision, limit: float, budget: Budget) -> None:
        self._stats.rejected_rate_limited += 1
        view = decision.view
        wait = decision.wait
        if view.paused_for > 0 and view.paused_for >= wait:
            message = (
                f"rate limited: the upstream asked to pause for {view.paused_for:.1f} s, "
                f"longer than the {limit:g} s a request may wait"
            )
        else:
            spent = []
            if view.limit_requests is not None and view.remaining_requests == 0:
                spent.append(f"{view.limit_requests} requests")
            if view.limit_tokens is not None:
                spent.append(f"{view.limit_tokens} tokens")
            what = " / ".join(spent) or "budget"
            when = "later" if wait == float("inf") else f"in {wait:.2f} s"
            message = (
                f"rate limited: the budget of {what} per {budget.window - self.window_margin:g} s is spent; "
                f"this request fits "
                f"again {when}, beyond the {limit:g} s a request may wait"
            )
        retry_after = budget.window if wait == float("inf") else max(wait, _SLACK)
        raise RateLimitError(message, retry_after=retry_after, headers=ratelimit_headers(view))

    def _unavailable(self, key: str, cost: Cost, budget: Budget) -> Reservation:
        if self.failure_mode == "open":
            self._stats.failed_open += 1
            self._stats.admitted += 1
            return Reservation(key, cost, budget, None, None)
        self._stats.rejected_store_unavailable += 1
        raise RateLimitError(
            "rate limiter unavailable: its shared state cannot be reached and it is set to fail closed",
            retry_after=_UNAVAILABLE_RETRY_AFTER,
        )

    # ----- feedback ------------------------------------------------------------------------------------

    async def observe(self, reservation: Reservation, observation: Observation) -> None:
        """Learn from the upstream attempts made for `reservation` (429s, rate-limit headers)."""
        if observation.empty or reservation.budget.unlimited:
            return
        self._stats.upstream_rate_limited += observation.rate_limited
        ticket = reservation.ticket
        try:
            change = await self.store.observe(
                reservation.key,
                observation,
                reservation.budget,
                self.policy,
                admitted_at=None if ticket is None else ticket.admitted_at,
            )
        except StoreUnavailableError:
            self._stats.store_errors += 1
            return
        if change.changed:
            self._stats.limit_decreases += 1
            logger.warning(
                "upstream rate limited key %r: limits now %.0f%% of the configured budget",
                reservation.key,
                change.factor * 100,
            )

    async def settle(self, reservation: Reservation, settlement: Settlement) -> None:
        """End `reservation`: reconcile it with real usage, or cancel it. Idempotent."""
        if reservation.settled:
            return
        reservation.settled = True
        ticket = reservation.ticket
        if ticket is None:
            return
        left = self._in_flight.get(reservation.key, 0) - 1
        if left > 0:
            self._in_flight[reservation.key] = left
        else:
            self._in_flight.pop(reservation.key, None)
        try:
            change = await self.store.settle(ticket, settlement, reservation.budget, self.policy)
        except StoreUnavailableError:
            self._stats.store_errors += 1
            return
        stats = self._stats
        stats.settled += 1
        if settlement.actual is not None and not settlement.cancel:
            stats.reconciled_token_delta += settlement.actual.tokens - ticket.cost.tokens
        if change.changed:
            stats.limit_increases += 1
        lane = self._lanes.get(reservation.key)
        if lane is not None:
            lane.changed.set()

    async def ping(self) -> bool:
        """Whether the store is reachable; never raises."""
        try:
            return await self.store.ping()
        except Exception:
            logger.exception("rate-limit store check failed")
            return False

    async def aclose(self) -> None:
        await self.store.aclose()


__all__ = ["FailureMode", "RateLimiter", "Reservation", "Waiting"]
