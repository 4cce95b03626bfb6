"""The token rate limiter's core: budgets and sliding windows per key, reservations reconciled with real
usage, a fair queue with a deadline, an adaptive policy fed by the upstream, and memory/Redis stores.

No ASGI here: `ccproxy_asgi.middleware.ratelimit.TokenRateLimitMiddleware` drives it. `RedisStore`
(`ccproxy_asgi.ratelimit.redis_store`) is exported too, imported on first use: `redis` is an optional
dependency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccproxy_asgi._lazy import lazy_exports
from ccproxy_asgi.ratelimit.adaptive import AdaptivePolicy, AdaptiveState
from ccproxy_asgi.ratelimit.budget import Budget, Cost, WindowView
from ccproxy_asgi.ratelimit.clock import Clock, MonotonicClock
from ccproxy_asgi.ratelimit.cost import CostEstimator
from ccproxy_asgi.ratelimit.feedback import observation_from_attempts, settlement_for
from ccproxy_asgi.ratelimit.keys import KeyMode, client_identity, key_for
from ccproxy_asgi.ratelimit.limiter import FailureMode, RateLimiter, Reservation, Waiting
from ccproxy_asgi.ratelimit.memory_store import MemoryStore
from ccproxy_asgi.ratelimit.response_headers import ratelimit_headers
from ccproxy_asgi.ratelimit.stats import EffectiveLimits, LimiterSnapshot
from ccproxy_asgi.ratelimit.store import (
    Decision,
    FactorChange,
    LimiterStore,
    Observation,
    Settlement,
    StoreUnavailableError,
    Ticket,
)

if TYPE_CHECKING:
    from ccproxy_asgi.ratelimit.redis_store import RedisStore

__getattr__, __dir__ = lazy_exports(__name__, {"RedisStore": "ccproxy_asgi.ratelimit.redis_store"})

__all__ = [
    "AdaptivePolicy",
    "AdaptiveState",
    "Budget",
    "Clock",
    "Cost",
    "CostEstimator",
    "Decision",
    "EffectiveLimits",
    "FactorChange",
    "FailureMode",
    "KeyMode",
    "LimiterSnapshot",
    "LimiterStore",
    "MemoryStore",
    "MonotonicClock",
    "Observation",
    "RateLimiter",
    "RedisStore",
    "Reservation",
    "Settlement",
    "StoreUnavailableError",
    "Ticket",
    "Waiting",
    "WindowView",
    "client_identity",
    "key_for",
    "observation_from_attempts",
    "ratelimit_headers",
    "settlement_for",
]
