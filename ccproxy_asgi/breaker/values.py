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

    FAILURE says the upstream is unreachable or overloaded (no connection, a timeout, 502/503/504/529).
    REQUEST_ERROR says the upstream answered but failed this request (a 500, a body that broke after its
    200): as often as not that is the request's own doing (a template or tool-parser error), so it counts
    toward the failure ratio of the window but never toward a run of consecutive failures, and a probe
    that ends so decides nothing. NEUTRAL means "nothing": the request ended without an upstream verdict
    (client gone, local rejection, a client error the upstream merely echoed). It counts toward neither
    side, but a probe that ends NEUTRAL still gives its slot back.
    """

    SUCCESS = "success"
    FAILURE = "failure"
    REQUEST_ERROR = "request_error"
    NEUTRAL = "neutral"


# Buckets of the rolling failure-ratio window; the Redis script uses the same number.
WINDOW_BUCKETS = 10
# Fingerprints of failed requests remembered per key, at most; the Redis script uses the same number.
MAX_REMEMBERED_FAILURES = 256


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When the breaker opens, how long it stays open, and how it probes its way back.

    Its job is to shed load from an upstream that is down or overloaded, never to refuse healthy traffic
    because some requests fail for reasons of their own (a prompt a model's template rejects, a tool
    parser error): one poisoned request retried by its client must not become everybody's outage.

    What counts: one outcome per client request (retries inside the provider are not evidence), and a
    failing request whose body was already seen failing within `repeat_memory_seconds` counts as nothing
    at all: a client retrying the same request proves nothing new about the upstream.

    When it opens (either rule):
    - `failure_threshold` distinct FAILUREs in a row (request errors neither count nor break the run; a
      success does) — unless the last `window_seconds` hold at least `min_requests` outcomes and fewer
      than `failure_ratio` of them failed (at high traffic a handful of failures in a row among many
      successes is not an outage);
    - at least `min_requests` outcomes in the window and at least `failure_ratio` of them FAILUREs or
      REQUEST_ERRORs (`failure_ratio=0` turns the ratio rules off: the consecutive rule alone decides).

    While open it refuses requests for `recovery_seconds` (times `recovery_growth` per further trip without
    a close between, capped at `max_recovery_seconds`), then half-opens: at most `half_open_max_probes`
    probes in flight, `half_open_successes` successes close it, a failure re-opens it. An upstream that is
    the only way to serve a request (no fallback) is not left alone for the whole recovery time: while
    open it still lets one probe through every `open_probe_interval_seconds`, within the same probe slots,
    so traffic resumes within about a second of the upstream healing. A request known to fail is never
    taken as a probe. A probe gets one upstream attempt; a slot whose holder never reports back (a crashed
    process) is reclaimed after `probe_lease_seconds`.
    """

    failure_threshold: int = 5
    failure_ratio: float = 0.5
    window_seconds: float = 60.0
    min_requests: int = 20
    recovery_seconds: float = 30.0
    recovery_growth: float = 1.0
    max_recovery_seconds: float = 300.0
    half_open_max_probes: int = 1
    half_open_successes: int = 1
    probe_lease_seconds: float = 120.0
    open_probe_interval_seconds: float = 1.0
    repeat_memory_seconds: float = 300.0
    # Seconds a client is told to wait while every probe slot is taken.
    busy_retry_after: float = 1.0
    count_429: bool = False

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if not 0.0 <= self.failure_ratio <= 1.0:
            raise ValueError("failure_ratio must be between 0 and 1 (0 turns it off)")
        positive = ("window_seconds", "recovery_seconds", "probe_lease_seconds", "open_probe_interval_seconds")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.repeat_memory_seconds < 0:
            raise ValueError("repeat_memory_seconds must not be negative (0 turns it off)")
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
    state (a slow request that started before the trip) is ignored. `probe` is the probe slot this
    request holds, if any. `fingerprint` identifies the request's body, so a repeat of a request that
    already failed is not counted twice. `local` marks a ticket issued by the in-process fallback while
    the shared store was unreachable.
    """

    key: str
    allowed: bool
    state: State
    epoch: int
    retry_after: float = 0.0
    probe: str | None = None
    fingerprint: str = ""
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
    "MAX_REMEMBERED_FAILURES",
    "WINDOW_BUCKETS",
    "BreakerPolicy",
    "BreakerSnapshot",
    "Outcome",
    "State",
    "Ticket",
    "Transition",
]
