"""The public face of the rate limiter: exactly the intended names (the limiter built from `Settings` is
tested with the wiring, tests/app/test_wiring.py)."""

from __future__ import annotations

import ccproxy_asgi.ratelimit as ratelimit
from ccproxy_asgi.middleware import ratelimit as middleware


def test_exported_names() -> None:
    assert sorted(ratelimit.__all__) == sorted(
        [
            "AdaptivePolicy", "AdaptiveState", "Budget", "Clock", "Cost", "CostEstimator", "Decision",
            "EffectiveLimits", "FactorChange", "FailureMode", "KeyMode", "LimiterSnapshot", "LimiterStore",
            "MemoryStore", "MonotonicClock", "Observation", "RateLimiter", "RedisStore", "Reservation",
            "Settlement", "StoreUnavailableError", "Ticket", "Waiting", "WindowView", "client_identity",
            "key_for", "observation_from_attempts", "ratelimit_headers", "settlement_for",
        ]
    )  # fmt: skip
    assert all(hasattr(ratelimit, name) for name in ratelimit.__all__)
    assert middleware.__all__ == ["TokenRateLimitMiddleware"]
