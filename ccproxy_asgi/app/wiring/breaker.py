"""The circuit breaker `Settings` describe: its `BreakerPolicy`, its store and its clock."""

from __future__ import annotations

import time

from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.breaker.circuit_breaker import CircuitBreaker
from ccproxy_asgi.breaker.values import BreakerPolicy

# Redis is asked for one decision per request: waiting longer than this means it is not answering.
REDIS_TIMEOUT_SECONDS = 0.5


def breaker_policy(settings: Settings) -> BreakerPolicy:
    """The `CCPROXY_BREAKER_*` settings as the breaker's value object."""
    return BreakerPolicy(
        failure_threshold=settings.breaker_failure_threshold,
        failure_ratio=settings.breaker_failure_ratio,
        window_seconds=settings.breaker_window_seconds,
        min_requests=settings.breaker_min_requests,
        recovery_seconds=settings.breaker_recovery_seconds,
        recovery_growth=settings.breaker_recovery_growth,
        max_recovery_seconds=max(settings.breaker_max_recovery_seconds, settings.breaker_recovery_seconds),
        half_open_max_probes=settings.breaker_half_open_probes,
        half_open_successes=settings.breaker_half_open_successes,
        probe_lease_seconds=settings.breaker_probe_lease_seconds,
        open_probe_interval_seconds=settings.breaker_open_probe_interval_seconds,
        repeat_memory_seconds=settings.breaker_repeat_memory_seconds,
        count_429=settings.breaker_count_429,
    )


def build_breaker(settings: Settings) -> CircuitBreaker:
    """The breaker for `settings`: memory store and monotonic clock, or, with `state_backend=redis`, the
    Redis store (short timeouts, no client-side retries) and the wall clock every process shares.
    Close it with `aclose()` (it closes its store and the store's Redis client)."""
    policy = breaker_policy(settings)
    if settings.state_backend != "redis":
        return CircuitBreaker(policy=policy, clock=time.monotonic)
    from ccproxy_asgi.app.wiring.redis_clients import redis_client
    from ccproxy_asgi.breaker.redis_store import RedisBreakerStore

    client = redis_client(settings, timeout=REDIS_TIMEOUT_SECONDS)
    store = RedisBreakerStore(client, failure_mode=settings.breaker_redis_failure_mode)
    return CircuitBreaker(policy=policy, store=store, clock=time.time)


__all__ = ["REDIS_TIMEOUT_SECONDS", "breaker_policy", "build_breaker"]
