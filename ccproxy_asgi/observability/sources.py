"""What the metrics read from the other layers, as protocols, and those readings as metric points.

The rate limiter (`ccproxy_asgi.ratelimit.RateLimiter`) and the circuit breaker
(`ccproxy_asgi.breaker.CircuitBreaker`) keep their own counters; the metrics read them when exported
(a Prometheus scrape, an OpenTelemetry collection), so neither layer pays anything per request for being
observed. The protocols name only what is read, so observability imports neither layer and any object
with that shape (a test fake, another limiter) can be watched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from ccproxy_asgi.observability import semconv as sc
from ccproxy_asgi.observability.prometheus import Point

BREAKER_STATES = ("closed", "open", "half_open")


class EffectiveLimitsView(Protocol):
    @property
    def factor(self) -> float: ...
    @property
    def requests(self) -> int | None: ...
    @property
    def tokens(self) -> int | None: ...
    @property
    def input_tokens(self) -> int | None: ...
    @property
    def output_tokens(self) -> int | None: ...
    @property
    def remaining_requests(self) -> int | None: ...
    @property
    def remaining_tokens(self) -> int | None: ...


class LimiterSnapshotView(Protocol):
    @property
    def admitted(self) -> int: ...
    @property
    def waits(self) -> int: ...
    @property
    def wait_seconds_total(self) -> float: ...
    @property
    def queued(self) -> int: ...
    @property
    def rejected_rate_limited(self) -> int: ...
    @property
    def rejected_too_large(self) -> int: ...
    @property
    def rejected_store_unavailable(self) -> int: ...
    @property
    def upstream_rate_limited(self) -> int: ...
    @property
    def effective(self) -> Mapping[str, EffectiveLimitsView]: ...


class LimiterSource(Protocol):
    """`RateLimiter` satisfies it."""

    def snapshot(self) -> LimiterSnapshotView: ...


class BreakerStatsView(Protocol):
    @property
    def state(self) -> str: ...
    @property
    def transitions(self) -> Mapping[str, int]: ...
    @property
    def rejected(self) -> int: ...
    @property
    def successes(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def request_errors(self) -> int: ...
    @property
    def neutral(self) -> int: ...


class BreakerSnapshotView(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def retry_after(self) -> float: ...
    @property
    def degraded(self) -> bool: ...


class BreakerSource(Protocol):
    """`CircuitBreaker` satisfies it: `stats()` is this process's view (cheap, synchronous), `snapshots()`
    the shared store's (what readiness asks)."""

    def stats(self) -> Mapping[str, BreakerStatsView]: ...

    async def snapshots(self) -> Sequence[BreakerSnapshotView]: ...


Points = dict[sc.MetricDef, list[Point]]


def _add(points: Points, definition: sc.MetricDef, labels: tuple[str, ...], value: float | None) -> None:
    if value is not None:
        points.setdefault(definition, []).append(Point(labels, float(value)))


def limiter_points(snapshot: LimiterSnapshotView, points: Points | None = None) -> Points:
    """Counters, the queue gauge and the effective limits per key of one limiter snapshot."""
    points = {} if points is None else points
    _add(points, sc.LIMIT_ADMITTED, (), snapshot.admitted)
    _add(points, sc.LIMIT_WAITS, (), snapshot.waits)
    _add(points, sc.LIMIT_WAIT_TIME, (), snapshot.wait_seconds_total)
    _add(points, sc.LIMIT_REJECTIONS, ("rate_limited",), snapshot.rejected_rate_limited)
    _add(points, sc.LIMIT_REJECTIONS, ("too_large",), snapshot.rejected_too_large)
    _add(points, sc.LIMIT_REJECTIONS, ("store_unavailable",), snapshot.rejected_store_unavailable)
    _add(points, sc.LIMIT_UPSTREAM_429, (), snapshot.upstream_rate_limited)
    _add(points, sc.LIMIT_QUEUED, (), snapshot.queued)
    for key, limits in sorted(snapshot.effective.items()):
        _add(points, sc.LIMIT_FACTOR, (key,), limits.factor)
        _add(points, sc.LIMIT_EFFECTIVE, (key, "requests"), limits.requests)
        _add(points, sc.LIMIT_EFFECTIVE, (key, "tokens"), limits.tokens)
        _add(points, sc.LIMIT_EFFECTIVE, (key, "input_tokens"), limits.input_tokens)
        _add(points, sc.LIMIT_EFFECTIVE, (key, "output_tokens"), limits.output_tokens)
        _add(points, sc.LIMIT_REMAINING, (key, "requests"), limits.remaining_requests)
        _add(points, sc.LIMIT_REMAINING, (key, "tokens"), limits.remaining_tokens)
    return points


def breaker_points(stats: Mapping[str, BreakerStatsView], points: Points | None = None) -> Points:
    """State (one 1 per key), transitions, rejections and outcomes of one breaker's keys."""
    points = {} if points is None else points
    for key, item in sorted(stats.items()):
        state = str(item.state)
        for name in BREAKER_STATES:
            _add(points, sc.BREAKER_STATE_DEF, (key, name), 1 if state == name else 0)
        for change, count in sorted(item.transitions.items()):
            from_state, _, to_state = change.partition("->")
            _add(points, sc.BREAKER_TRANSITIONS, (key, from_state, to_state), count)
        _add(points, sc.BREAKER_REJECTIONS, (key,), item.rejected)
        _add(points, sc.BREAKER_OUTCOMES, (key, "success"), item.successes)
        _add(points, sc.BREAKER_OUTCOMES, (key, "failure"), item.failures)
        _add(points, sc.BREAKER_OUTCOMES, (key, "request_error"), item.request_errors)
        _add(points, sc.BREAKER_OUTCOMES, (key, "neutral"), item.neutral)
    return points


__all__ = [
    "BREAKER_STATES",
    "BreakerSnapshotView",
    "BreakerSource",
    "BreakerStatsView",
    "EffectiveLimitsView",
    "LimiterSnapshotView",
    "LimiterSource",
    "Points",
    "breaker_points",
    "limiter_points",
]
