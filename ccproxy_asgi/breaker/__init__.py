"""The circuit breaker core: per-key closed / open / half-open state over a pluggable store.

No ASGI in here. `CircuitBreakerMiddleware` (`ccproxy_asgi.middleware.breaker`) drives it for a single
upstream; `FallbackProvider` (`ccproxy_asgi.provider.fallback`) drives it per upstream when there are
fallbacks. Both use `acquire` before the upstream call and `record` with the classified outcome after it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccproxy_asgi._lazy import lazy_exports
from ccproxy_asgi.breaker.circuit_breaker import (
    BreakerStats,
    CircuitBreaker,
    TransitionListener,
    request_fingerprint,
)
from ccproxy_asgi.breaker.keys import upstream_key
from ccproxy_asgi.breaker.memory_store import MemoryBreakerStore
from ccproxy_asgi.breaker.outcomes import attempt_outcome, request_outcome
from ccproxy_asgi.breaker.store import BreakerStore
from ccproxy_asgi.breaker.values import (
    BreakerPolicy,
    BreakerSnapshot,
    Outcome,
    State,
    Ticket,
    Transition,
)

if TYPE_CHECKING:
    from ccproxy_asgi.breaker.redis_store import RedisBreakerStore, RedisFailureMode

# redis is imported only by deployments that use it.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "RedisBreakerStore": "ccproxy_asgi.breaker.redis_store",
        "RedisFailureMode": "ccproxy_asgi.breaker.redis_store",
    },
)

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
    "request_fingerprint",
    "request_outcome",
    "upstream_key",
]
