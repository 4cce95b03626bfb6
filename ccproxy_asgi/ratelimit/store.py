"""The seam between the limiter and where its windows live: `LimiterStore`, with memory and Redis
implementations.

A store makes each decision atomically: prune the key's window, compute whether a request of a given
cost fits its budget (scaled by the key's adaptive factor, minus any debt learned from upstream headers,
and not while admission is paused), and if so record it, all in one step (one Lua script in Redis).
Times inside a store are in the store's own time base (the memory store's clock, the Redis server's
clock); only durations cross the seam.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ccproxy_asgi.ratelimit.adaptive import AdaptivePolicy
from ccproxy_asgi.ratelimit.budget import Budget, Cost, WindowView


class StoreUnavailableError(Exception):
    """The store could not be reached; the limiter applies its failure mode (open or closed)."""


# Ticket and Decision are built on every decision: plain slotted dataclasses, read-only by convention.


@dataclass(slots=True)
class Ticket:
    """A reservation recorded in a store: the handle to reconcile or cancel it later."""

    key: str
    handle: object
    admitted_at: float
    cost: Cost


@dataclass(slots=True)
class Decision:
    """The answer to one `acquire`: a ticket when admitted, else the seconds until the request would fit
    (`math.inf`: not before something else changes, e.g. a debt that shrinks the budget below it)."""

    ticket: Ticket | None
    wait: float
    view: WindowView


@dataclass(frozen=True, slots=True)
class Observation:
    """What one request's upstream attempts said about the account's limits."""

    rate_limited: int = 0
    retry_after: float | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests: float | None = None
    reset_tokens: float | None = None

    @property
    def empty(self) -> bool:
        return self.rate_limited == 0 and self.remaining_requests is None and self.remaining_tokens is None


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a reservation ends: `actual` replaces the reserved cost when known (else the estimate
    stands); `cancel` forgets the request entirely (it never reached the upstream); `extra_requests`
    are retries that did reach it, each charged as one more request; `success` counts towards the
    adaptive growth."""

    actual: Cost | None = None
    cancel: bool = False
    extra_requests: int = 0
    success: bool = False


@dataclass(frozen=True, slots=True)
class FactorChange:
    """The key's adaptive factor after a feedback call, and whether that call changed it."""

    factor: float
    changed: bool


class LimiterStore(Protocol):
    """Where windows and adaptive state live. Implementations: `MemoryStore`, `RedisStore`.

    Every method is one atomic step. A cancelled `acquire` must not leave a reservation behind.
    Failures to reach shared state raise `StoreUnavailableError`. `shared`: whether other processes
    spend the same windows (then budget can be freed where this process cannot see it).
    """

    shared: bool

    async def acquire(
        self, key: str, cost: Cost, budget: Budget, policy: AdaptivePolicy, *, reserve: bool = True
    ) -> Decision:
        """Admit and record a request of `cost` if it fits now; with `reserve=False` only look."""
        ...

    async def settle(
        self, ticket: Ticket, settlement: Settlement, budget: Budget, policy: AdaptivePolicy
    ) -> FactorChange:
        """Reconcile (or cancel) a reservation once its response ended."""
        ...

    async def observe(
        self,
        key: str,
        observation: Observation,
        budget: Budget,
        policy: AdaptivePolicy,
        *,
        admitted_at: float | None = None,
    ) -> FactorChange:
        """Learn from upstream attempts: 429s and rate-limit headers."""
        ...

    async def ping(self) -> bool:
        """Whether the state is reachable now (a shared store logs when it is not)."""
        ...

    async def aclose(self) -> None: ...


__all__ = [
    "Decision",
    "FactorChange",
    "LimiterStore",
    "Observation",
    "Settlement",
    "StoreUnavailableError",
    "Ticket",
]
