"""Breaker keys, and `build_breaker`: the breaker `Settings` describe."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from ccproxy_asgi.breaker.circuit_breaker import CircuitBreaker
from ccproxy_asgi.breaker.values import BreakerPolicy

if TYPE_CHECKING:
    from ccproxy_asgi.app.settings import Settings

# Redis is asked for one decision per request: waiting longer than this means it is not answering.
REDIS_TIMEOUT_SECONDS = 0.5


def upstream_key(base_url: str, model: str | None = None) -> str:
    """The breaker key of an upstream (and optionally one of its models): the base URL without
    credentials, query or fragment, so it can be logged and shown on a health page."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return base if model is None else f"{base}|{model}"


def policy_from_settings(settings: Settings) -> BreakerPolicy:
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
    Redis store (short timeouts, no client-side retries) and the wall clock every process shares."""
    policy = policy_from_settings(settings)
    if settings.state_backend != "redis":
        return CircuitBreaker(policy=policy, clock=time.monotonic)
    from ccproxy_asgi.breaker.redis_store import RedisBreakerStore
    from ccproxy_asgi.redis_client import redis_client_from_settings

    client = redis_client_from_settings(settings, timeout=REDIS_TIMEOUT_SECONDS)
    store = RedisBreakerStore(client, failure_mode=settings.breaker_redis_failure_mode)
    return CircuitBreaker(policy=policy, store=store, clock=time.time)


__all__ = ["build_breaker", "policy_from_settings", "upstream_key"]
