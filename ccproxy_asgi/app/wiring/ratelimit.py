"""The token rate limiter `Settings` describe: its budgets, adaptive policy and store, or None when no
budget is set."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.ratelimit.adaptive import AdaptivePolicy
from ccproxy_asgi.ratelimit.budget import Budget
from ccproxy_asgi.ratelimit.limiter import RateLimiter
from ccproxy_asgi.ratelimit.memory_store import MemoryStore
from ccproxy_asgi.ratelimit.store import LimiterStore

logger = logging.getLogger("ccproxy_asgi.ratelimit")

_BUDGET_FIELDS = {
    "rpm": "requests",
    "tpm": "tokens",
    "input_tpm": "input_tokens",
    "output_tpm": "output_tokens",
}


def _limit(value: int) -> int | None:
    return value if value > 0 else None


def rate_limit_budget(settings: Settings) -> Budget:
    """The default budget of every key."""
    return Budget(
        requests=_limit(settings.rate_limit_rpm),
        tokens=_limit(settings.rate_limit_tpm),
        input_tokens=_limit(settings.rate_limit_input_tpm),
        output_tokens=_limit(settings.rate_limit_output_tpm),
        window=settings.rate_limit_window_seconds,
    )


def rate_limit_budgets(settings: Settings) -> dict[str, Budget]:
    """Per-key budgets of `rate_limit_budgets`; unknown fields are a configuration error."""
    budgets: dict[str, Budget] = {}
    for key, fields in settings.rate_limit_budgets.items():
        unknown = set(fields) - set(_BUDGET_FIELDS)
        if unknown:
            raise ValueError(
                f"rate_limit_budgets[{key!r}]: unknown field(s) {', '.join(sorted(unknown))}; "
                f"use {', '.join(_BUDGET_FIELDS)}"
            )
        name = key
        if settings.rate_limit_key == "model" and not key.startswith("model:"):
            name = "model:" + key
        values: Mapping[str, int | None] = {_BUDGET_FIELDS[f]: _limit(v) for f, v in fields.items()}
        budgets[name] = Budget(window=settings.rate_limit_window_seconds, **values)
    return budgets


def adaptive_policy(settings: Settings) -> AdaptivePolicy:
    """How the limits follow the upstream's own (`CCPROXY_RATE_LIMIT_ADAPTIVE` and its factors)."""
    return AdaptivePolicy(
        enabled=settings.rate_limit_adaptive,
        decrease=settings.rate_limit_decrease_factor,
        min_factor=settings.rate_limit_min_factor,
        increase=settings.rate_limit_increase_factor,
        successes_to_increase=settings.rate_limit_successes_to_increase,
    )


def limiter_store(settings: Settings) -> LimiterStore:
    """A `RedisStore` for `state_backend=redis` (on a Redis Cluster with `redis_cluster`), else a
    `MemoryStore`."""
    if settings.state_backend == "redis":
        from ccproxy_asgi.ratelimit.redis_store import RedisStore

        return RedisStore.from_url(
            settings.redis_url.get_secret_value(),
            prefix=settings.rate_limit_redis_prefix,
            cluster=settings.redis_cluster,
        )
    return MemoryStore()


def build_rate_limiter(settings: Settings) -> RateLimiter | None:
    """The rate limiter described by `settings`, or None when no budget is configured at all.
    Close it with `aclose()` (it closes its store)."""
    budget = rate_limit_budget(settings)
    budgets = rate_limit_budgets(settings)
    if budget.unlimited and all(b.unlimited for b in budgets.values()):
        return None
    shared = settings.state_backend == "redis"
    if not shared:
        logger.info("rate limits are kept in process memory: each worker process enforces them alone")
    return RateLimiter(
        budget=budget,
        budgets=budgets,
        store=limiter_store(settings),
        policy=adaptive_policy(settings),
        max_wait=settings.rate_limit_max_wait_seconds,
        failure_mode=settings.rate_limit_store_failure_mode,
        # Budget freed by another process is seen only by asking the shared store again.
        poll_interval=0.1 if shared else 1.0,
        window_margin=settings.rate_limit_window_margin_seconds,
    )


__all__ = [
    "adaptive_policy",
    "build_rate_limiter",
    "limiter_store",
    "rate_limit_budget",
    "rate_limit_budgets",
]
