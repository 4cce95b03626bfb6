"""The public face of the rate limiter: exactly the intended names, and the factory from Settings."""

from __future__ import annotations

import pytest

import ccproxy_asgi.ratelimit as ratelimit
from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.middleware import ratelimit as middleware
from ccproxy_asgi.ratelimit import AdaptivePolicy, Budget, MemoryStore, build_rate_limiter
from ccproxy_asgi.ratelimit.factory import budgets_from_settings
from ccproxy_asgi.ratelimit.redis_store import RedisStore


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_exported_names() -> None:
    assert sorted(ratelimit.__all__) == sorted(
        [
            "AdaptivePolicy", "AdaptiveState", "Budget", "Clock", "Cost", "CostEstimator", "Decision",
            "EffectiveLimits", "FactorChange", "FailureMode", "KeyMode", "LimiterSnapshot", "LimiterStore",
            "MemoryStore", "MonotonicClock", "Observation", "RateLimiter", "Reservation", "Settlement",
            "StoreUnavailableError", "Ticket", "Waiting", "WindowView", "build_rate_limiter",
            "client_identity", "key_for", "observation_from_attempts", "ratelimit_headers", "settlement_for",
        ]
    )  # fmt: skip
    assert all(hasattr(ratelimit, name) for name in ratelimit.__all__)
    assert middleware.__all__ == ["TokenRateLimitMiddleware", "mount_rate_limit"]


def test_no_budget_no_limiter() -> None:
    assert build_rate_limiter(_settings()) is None


def test_limiter_from_settings() -> None:
    limiter = build_rate_limiter(
        _settings(
            rate_limit_rpm=50,
            rate_limit_tpm=40_000,
            rate_limit_output_tpm=8000,
            rate_limit_window_seconds=30,
            rate_limit_max_wait_seconds=5,
            rate_limit_decrease_factor=0.5,
            rate_limit_successes_to_increase=4,
            rate_limit_store_failure_mode="closed",
            rate_limit_window_margin_seconds=0.2,
        )
    )
    assert limiter is not None
    assert limiter.budget == Budget(requests=50, tokens=40_000, output_tokens=8000, window=30)
    assert limiter.policy == AdaptivePolicy(decrease=0.5, successes_to_increase=4)
    assert limiter.max_wait == 5
    assert limiter.failure_mode == "closed"
    assert limiter.window_margin == 0.2
    assert isinstance(limiter.store, MemoryStore)


def test_redis_backend_from_settings() -> None:
    limiter = build_rate_limiter(
        _settings(rate_limit_tpm=1000, state_backend="redis", redis_url="redis://127.0.0.1:1/0")
    )
    assert limiter is not None
    assert isinstance(limiter.store, RedisStore)
    assert limiter.store.prefix == "ccproxy:rl"


def test_per_key_budgets_from_settings() -> None:
    budgets = budgets_from_settings(
        _settings(
            rate_limit_key="model",
            rate_limit_budgets={"gpt-4o": {"rpm": 5, "tpm": 0}, "model:o3": {"tpm": 9}},
        )
    )
    assert budgets == {"model:gpt-4o": Budget(requests=5, window=60), "model:o3": Budget(tokens=9, window=60)}
    with pytest.raises(ValueError, match="unknown field"):
        budgets_from_settings(_settings(rate_limit_budgets={"x": {"rps": 1}}))
