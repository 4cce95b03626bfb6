"""`AdaptiveTimeout`: an upstream read timeout derived from the latency the upstream has shown.

timeout = clamp(multiplier * p(quantile) of recent upstream attempts, min_seconds, max_seconds)

The provider calls it before every attempt and passes the value to `UpstreamClient.send(timeout=...)`,
which makes it the longest *silence* allowed between reads of that response: before the head, and
between body chunks of a stream too. So `min_seconds` must cover the longest pause a healthy generation
makes (a reasoning model thinking before its first token); the default is generous. Below `min_samples`
observations in the window it answers None: the client's static read timeout applies.

Timed-out attempts are fed back as samples of the time they waited, so when the upstream really became
slower the quantile climbs and the timeout follows, instead of cutting every slow answer forever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ccproxy_asgi.observability import semconv as sc
from ccproxy_asgi.observability.percentiles import SlidingPercentiles
from ccproxy_asgi.observability.prometheus import Point
from ccproxy_asgi.observability.sources import Points


@dataclass(frozen=True, slots=True, kw_only=True)
class AdaptiveTimeoutPolicy:
    """How the timeout follows latency; see the module docstring. `refresh_seconds`: how long one
    computed value is reused (computing a quantile sorts the window's samples)."""

    multiplier: float = 3.0
    quantile: float = 0.99
    min_seconds: float = 30.0
    max_seconds: float = 600.0
    min_samples: int = 50
    refresh_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.multiplier <= 0:
            raise ValueError("multiplier must be positive")
        if not 0.0 < self.quantile <= 1.0:
            raise ValueError("quantile must be in (0, 1]")
        if self.min_seconds <= 0 or self.max_seconds < self.min_seconds:
            raise ValueError("min_seconds must be positive and at most max_seconds")
        if self.min_samples < 1:
            raise ValueError("min_samples must be at least 1")
        if self.refresh_seconds < 0:
            raise ValueError("refresh_seconds must not be negative")

    def timeout_for(self, latency: float) -> float:
        return min(max(self.multiplier * latency, self.min_seconds), self.max_seconds)


class AdaptiveTimeout:
    """Callable: the read timeout for the next upstream attempt, or None for the static one."""

    def __init__(
        self,
        window: SlidingPercentiles,
        policy: AdaptiveTimeoutPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.policy = policy or AdaptiveTimeoutPolicy()
        self._clock = clock
        self._value: float | None = None
        self._next = float("-inf")

    def __call__(self) -> float | None:
        # Counting is cheap and decides whether there is a value at all; the quantile (a sort of the
        # window's samples) is what is reused for `refresh_seconds`.
        if self.window.count() < self.policy.min_samples:
            self._value = None
            self._next = float("-inf")
            return None
        now = self._clock()
        if now < self._next and self._value is not None:
            return self._value
        self._next = now + self.policy.refresh_seconds
        self._value = self.compute()
        return self._value

    def compute(self) -> float | None:
        """The timeout from the window as it is now (no caching)."""
        policy = self.policy
        if self.window.count() < policy.min_samples:
            return None
        latency = self.window.quantile(policy.quantile)
        return None if latency is None else policy.timeout_for(latency)

    @property
    def current(self) -> float | None:
        """The value last handed out."""
        return self._value

    def add_points(self, points: Points) -> None:
        """A `MetricsCollector` gauge source: the timeout in force, when one is."""
        value = self.compute()
        if value is not None:
            points[sc.ADAPTIVE_TIMEOUT] = [Point((), value)]


__all__ = ["AdaptiveTimeout", "AdaptiveTimeoutPolicy"]
