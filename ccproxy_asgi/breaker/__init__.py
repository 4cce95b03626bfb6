"""The circuit breaker core: per-key closed / open / half-open state over a pluggable store.

No ASGI in here. `CircuitBreakerMiddleware` (`ccproxy_asgi.middleware.breaker`) drives it for a single
upstream; `FallbackProvider` (`ccproxy_asgi.provider.fallback`) drives it per upstream when there are
fallbacks. Both use `acquire` before the upstream call and `record` with the classified outcome after it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccproxy_asgi.breaker._breaker import (
    BreakerStats,
    CircuitBreaker,
    TransitionListener,
    request_fingerprint,
)
from ccproxy_asgi.breaker._classify import attempt_outcome, request_outcome
from ccproxy_asgi.breaker._factory import build_breaker, policy_from_settings, upstream_key
from ccproxy_asgi.breaker._memory import MemoryBreakerStore
from ccproxy_asgi.breaker._model import (
    BreakerPolicy,
    BreakerSnapshot,
    Outcome,
    State,
    Ticket,
    Transition,
)
from ccproxy_asgi.breaker._store import BreakerStore

if TYPE_CHECKING:
    from ccproxy_asgi.breaker._redis import RedisBreakerStore, RedisFailureMode

__all__ = [
    "BreakerPolicy",
    "BreakerSnapshot",
    "BreakerStats",
    "BreakerStore",
    "CircuitBreaker",
    "MemoryBreakerStore",
    "Outcome",
    "RedisBreakerStore",
    "RedisFailureMode",
    "State",
    "Ticket",
    "Transition",
    "TransitionListener",
    "attempt_outcome",
    "build_breaker",
    "policy_from_settings",
    "request_fingerprint",
    "request_outcome",
    "upstream_key",
]


def __getattr__(name: str) -> object:
    # redis is imported only by deployments that use it.
    if name in ("RedisBreakerStore", "RedisFailureMode"):
        from ccproxy_asgi.breaker import _redis

        return getattr(_redis, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
