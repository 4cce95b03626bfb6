"""The plain values the breaker works with: states, outcomes, the policy, tickets, transitions, snapshots."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Outcome(enum.StrEnum):
    """What one admitted request taught the breaker about its upstream.

    NEUTRAL means "nothing": the request ended without an upstream verdict (client gone, local rejection,
    a client error the upstream merely echoed). It counts toward neither side, but a probe that ends
    NEUTRAL still gives its half-open slot back.
    """

    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"


# Buckets of the rolling failure-ratio window; the Redis script uses the same number.
WINDOW_BUCKETS = 10


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When the breaker opens, how long it stays open, and how it probes its way back.

    It opens on `failure_threshold` consecutive failures, or, when `failure_ratio` is above 0, once the
    failures in the last `window_seconds` reach that fraction of at least `min_requests` outcomes. It stays
    open `recovery_seconds`, multiplied by `recovery_growth` for each further trip without a close in
    between, capped at `max_recovery_seconds`. Half-open, at most `half_open_max_probes` requests are in
    flight at once; `half_open_successes` successes close it, one failure re-opens it. A probe slot whose
    holder never reports back (a crashed process) is reclaimed after `probe_lease_seconds`.
    """

    failure_threshold: int = 5
    failure_ratio: float = 0.0
    window_seconds: float = 60.0
    min_requests: int = 20
    recovery_seconds: float = 30.0
    recovery_growth: float = 1.0
    max_recovery_seconds: float = 300.0
    half_open_max_probes: int = 1
    half_open_successes: int = 1
    probe_lease_seconds: float = 120.0
    # Seconds a client is told to wait while every probe slot is taken.
    busy_retry_after: float = 1.0
    count_429: bool = False

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if not 0.0 <= self.failure_ratio <= 1.0:
            raise ValueError("failure_ratio must be between 0 and 1 (0 turns it off)")
        if self.window_seconds <= 0 or self.recovery_seconds <= 0 or self.probe_lease_seconds <= 0:
            raise ValueError("window_seconds, recovery_seconds and probe_lease_seconds must be positive")
        if self.min_requests < 1 or self.half_open_max_probes < 1 or self.half_open_successes < 1:
            raise ValueError("min_requests, half_open_max_probes and half_open_successes must be at least 1")
        if self.recovery_growth < 1.0:
            raise ValueError("recovery_growth must be at least 1 (1 means no growth)")
        if self.max_recovery_seconds < self.recovery_seconds:
            raise ValueError("max_recovery_seconds must not be below recovery_seconds")

    def recovery_for(self, trips: int) -> float:
        """Seconds open after the `trips`-th trip in a row (1 for the first)."""
        delay = self.recovery_seconds * self.recovery_growth ** max(0, trips - 1)
        return min(delay, self.max_recovery_seconds)


@dataclass(frozen=True, slots=True)
class Ticket:
    """The breaker's answer to one request; hand it back to `CircuitBreaker.record` when the request ends.

    `epoch` counts the breaker's state changes: an outcome from a request admitted under an earlier
    state (a slow request that started before the trip) is ignored. `probe` is the half-open slot this
    request holds, if any. `local` marks a ticket issued by the in-process fallback while the shared
    store was unreachable.
    """

    key: str
    allowed: bool
    state: State
    epoch: int
    retry_after: float = 0.0
    probe: str | None = None
    local: bool = False


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change, as logged and counted."""

    key: str
    from_state: State
    to_state: State
    reason: str
    # Seconds until the next probe, for a change to OPEN.
    retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """The state of one key as a health endpoint or a test sees it (open past its timeout reads half_open)."""

    key: str
    state: State
    retry_after: float = 0.0
    consecutive_failures: int = 0
    window_requests: int = 0
    window_failures: int = 0
    probes_in_flight: int = 0
    half_open_successes: int = 0
    trips: int = 0
    epoch: int = 0
    degraded: bool = False


__all__ = [
    "WINDOW_BUCKETS",
    "BreakerPolicy",
    "BreakerSnapshot",
    "Outcome",
    "State",
    "Ticket",
    "Transition",
]
