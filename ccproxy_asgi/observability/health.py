"""`HealthMonitor`: a health score for liveness, and the readiness verdict.

Score (0 to 1) = 0.5 * success rate + 0.3 * breaker health + 0.2 * latency health, where
- success rate: chat requests in the sliding window that did not fail on the server side (1 with
  fewer than `min_requests`: a quiet proxy is not a sick one);
- breaker health: the mean over breaker keys of closed 1, half-open 0.5, open 0 (1 with no breaker);
- latency health: 1 while the upstream's p99 time to response head stays within
  `latency_target_seconds`, target / p99 beyond it.

Liveness (`GET /health`) always answers 200 while the process serves: restarting a proxy does not heal
its upstream. It carries the score and its parts. Readiness (`GET /health/ready`) answers 503 while a
breaker is open (the proxy would only answer 529s) or a check fails (upstream unreachable, a shared
store down).

Probes come every few seconds for as long as a dependency is down, so what they find is logged as a
condition, not per probe: one line when the set of failing checks changes (at most one per
`log_interval` seconds, with the count of changes in between), naming the checks; the dependencies'
own lines (a store's outage and recovery) say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from ccproxy_asgi.log_throttle import ThrottledLog
from ccproxy_asgi.observability import semconv as sc
from ccproxy_asgi.observability.collector import MetricsCollector
from ccproxy_asgi.observability.prometheus import Point
from ccproxy_asgi.observability.sources import BreakerSource, Points

logger = logging.getLogger("ccproxy_asgi.health")

#: A readiness check: True when the dependency answers.
ReadinessCheck = Callable[[], Awaitable[bool]]

_STATE_HEALTH = {"closed": 1.0, "half_open": 0.5, "open": 0.0}


@dataclass(frozen=True, slots=True)
class HealthScore:
    score: float
    status: str
    success_rate: float | None
    breaker: float
    latency_p99: float | None
    requests: int
    failures: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "score": round(self.score, 4),
            "success_rate": None if self.success_rate is None else round(self.success_rate, 4),
            "breaker_health": round(self.breaker, 4),
            "upstream_latency_p99_seconds": None if self.latency_p99 is None else round(self.latency_p99, 4),
            "window_requests": self.requests,
            "window_failures": self.failures,
        }


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    checks: dict[str, Any]
    breakers: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "unready",
            "checks": self.checks,
            "breakers": self.breakers,
        }


class HealthMonitor:
    """See the module docstring. `breakers` default to the ones the collector watches; `checks` are
    named readiness checks, each bounded by `check_timeout` seconds, their verdicts reused for
    `cache_seconds` so a probe storm does not become a storm on the upstream. A repeating failure
    (a check, reading a breaker's state) is logged at most once per `log_interval` seconds."""

    def __init__(
        self,
        collector: MetricsCollector,
        *,
        breakers: tuple[BreakerSource, ...] | None = None,
        checks: Mapping[str, ReadinessCheck] | None = None,
        latency_target_seconds: float = 10.0,
        min_requests: int = 10,
        degraded_below: float = 0.8,
        unhealthy_below: float = 0.5,
        check_timeout: float = 2.0,
        cache_seconds: float = 1.0,
        log_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if latency_target_seconds <= 0:
            raise ValueError("latency_target_seconds must be positive")
        self.collector = collector
        self._breakers = breakers
        self.checks: dict[str, ReadinessCheck] = dict(checks or {})
        self.latency_target = latency_target_seconds
        self.min_requests = min_requests
        self.degraded_below = degraded_below
        self.unhealthy_below = unhealthy_below
        self.check_timeout = check_timeout
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._cached: dict[str, tuple[float, bool, str | None]] = {}
        self._log = ThrottledLog(logger, interval=log_interval, clock=clock)
        self._failing: tuple[str, ...] = ()

    @property
    def breakers(self) -> tuple[BreakerSource, ...]:
        return self._breakers if self._breakers is not None else tuple(self.collector.breakers)

    def score(self) -> HealthScore:
        requests, failures = self.collector.outcomes.counts()
        rate = None if requests == 0 else (requests - failures) / requests
        success = 1.0 if rate is None or requests < self.min_requests else rate
        states: list[float] = []
        for source in self.breakers:
            try:
                states.extend(_STATE_HEALTH.get(str(s.state), 1.0) for s in source.stats().values())
            except Exception:
                self._log.error("breaker-stats", "reading the circuit breaker's stats failed", exc_info=True)
        breaker = sum(states) / len(states) if states else 1.0
        p99 = self.collector.upstream_latency.quantile(0.99)
        latency = 1.0 if p99 is None or p99 <= self.latency_target else self.latency_target / p99
        score = 0.5 * success + 0.3 * breaker + 0.2 * latency
        status = (
            "ok"
            if score >= self.degraded_below
            else "degraded"
            if score >= self.unhealthy_below
            else "unhealthy"
        )
        return HealthScore(score, status, rate, breaker, p99, requests, failures)

    def liveness(self) -> dict[str, Any]:
        return self.score().as_dict()

    async def _run_check(self, name: str, check: ReadinessCheck) -> tuple[bool, str | None]:
        now = self._clock()
        cached = self._cached.get(name)
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1], cached[2]
        error: str | None = None
        try:
            ok = bool(await asyncio.wait_for(check(), self.check_timeout))
        except TimeoutError:
            ok, error = False, f"no answer within {self.check_timeout:g} s"
        except Exception as exc:  # a check that raises is a failing check
            ok, error = False, type(exc).__name__
        self._cached[name] = (now, ok, error)
        return ok, error

    def _log_checks(self, checks: Mapping[str, Mapping[str, Any]]) -> None:
        """One line when the set of failing checks changes (the probes in between repeat it). Both
        directions are throttled: checks that flap on every probe must not flood either."""
        failing = tuple(name for name, result in checks.items() if not result["ok"])
        if failing == self._failing:
            return
        self._failing = failing
        if failing:
            described = ", ".join(
                name + (f" ({checks[name]['error']})" if "error" in checks[name] else "") for name in failing
            )
            self._log.warning("failing", "not ready: readiness check failing: %s", described)
        else:
            self._log.info("passing", "readiness checks all passing again")

    async def readiness(self) -> Readiness:
        ready = True
        breakers: list[dict[str, Any]] = []
        for source in self.breakers:
            try:
                snapshots = await source.snapshots()
            except Exception as exc:
                ready = False
                breakers.append({"error": type(exc).__name__})
                # The type only: a store's error text can quote its URL, password included.
                self._log.warning(
                    "breaker-snapshots",
                    "reading the circuit breaker's state failed (%s): not ready",
                    type(exc).__name__,
                )
                continue
            for snap in snapshots:
                state = str(snap.state)
                if state == "open":
                    ready = False
                entry: dict[str, Any] = {"key": snap.key, "state": state}
                if state == "open":
                    entry["retry_after_seconds"] = round(snap.retry_after, 3)
                if snap.degraded:
                    entry["degraded"] = True
                breakers.append(entry)
        names = list(self.checks)
        results = await asyncio.gather(*(self._run_check(name, self.checks[name]) for name in names))
        checks: dict[str, Any] = {}
        for name, (ok, error) in zip(names, results, strict=True):
            checks[name] = {"ok": ok} if error is None else {"ok": ok, "error": error}
            ready = ready and ok
        self._log_checks(checks)
        return Readiness(ready, checks, breakers)

    def add_points(self, points: Points) -> None:
        """A `MetricsCollector` gauge source: the current score."""
        points[sc.HEALTH_SCORE] = [Point((), self.score().score)]


class Pingable(Protocol):
    async def ping(self) -> bool: ...


def ping_check(store: Pingable) -> ReadinessCheck:
    """A check that a shared store (the limiter's `RedisStore`) answers its `ping()`."""

    async def check() -> bool:
        return bool(await store.ping())

    return check


def tcp_check(url: str, *, timeout: float = 2.0) -> ReadinessCheck:
    """A check that the host of `url` accepts a TCP connection (no request, no credentials sent)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 80)

    async def check() -> bool:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    return check


__all__ = [
    "HealthMonitor",
    "HealthScore",
    "Pingable",
    "Readiness",
    "ReadinessCheck",
    "ping_check",
    "tcp_check",
]
