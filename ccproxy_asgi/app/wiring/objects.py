"""`wire(settings)`: every object the proxy is made of, built in dependency order, each one that holds a
connection registered with the `Resources` that starts and closes it.

    built (in this order)                         at startup          at shutdown (reverse order)
    token counter, model mapper                   -                   -
    circuit breaker (when breaker_enabled)        -                   aclose(): store, Redis client
    rate limiter (when a budget is set)           ping() the store    aclose(): store, Redis client
    observability (collector, health, tracer)     -                   -
    upstream provider(s) (+ fallbacks)            -                   aclose(): every HTTP client

`build_proxy` puts the ASGI layers around these and hands `resources.running` to the app's lifespan.
"""

from __future__ import annotations

from dataclasses import dataclass

from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.app.wiring.breaker import build_breaker
from ccproxy_asgi.app.wiring.observability import Observability, build_observability
from ccproxy_asgi.app.wiring.providers import build_provider, model_mapper, require_upstream
from ccproxy_asgi.app.wiring.ratelimit import build_rate_limiter
from ccproxy_asgi.app.wiring.resources import Resources
from ccproxy_asgi.breaker.circuit_breaker import CircuitBreaker
from ccproxy_asgi.logs import register_secrets
from ccproxy_asgi.provider.base import ChatProvider
from ccproxy_asgi.ratelimit.limiter import RateLimiter
from ccproxy_asgi.tokens.counter import TokenCounter
from ccproxy_asgi.translate.models import ModelMapper


@dataclass(frozen=True, slots=True)
class Wiring:
    """The objects `settings` describe, shared by the layers and the endpoint, and what closes them."""

    settings: Settings
    counter: TokenCounter
    models: ModelMapper
    breaker: CircuitBreaker | None
    limiter: RateLimiter | None
    observability: Observability
    provider: ChatProvider
    resources: Resources

    @property
    def fallbacks(self) -> bool:
        """Whether the provider picks among several upstreams (then it, not a layer, drives the breaker)."""
        return self.breaker is not None and bool(self.settings.fallback_upstreams)


def wire(settings: Settings) -> Wiring:
    """Build everything `settings` ask for (see the module doc); nothing is opened until
    `resources.running()` is entered."""
    register_secrets(settings.upstream_api_key, *settings.api_keys)
    require_upstream(settings)  # before anything that holds a connection is built
    resources = Resources()
    counter = TokenCounter()
    models = model_mapper(settings)
    breaker = resources.add("circuit breaker", build_breaker(settings)) if settings.breaker_enabled else None
    limiter = build_rate_limiter(settings)
    if limiter is not None:
        # An unreachable shared store is logged at start-up, not at the first request.
        resources.add("rate limiter", limiter, start=limiter.ping)
    obs = build_observability(settings, breaker=breaker, limiter=limiter)
    provider = resources.add(
        "upstream provider", build_provider(settings, counter=counter, breaker=breaker, obs=obs)
    )
    return Wiring(
        settings=settings,
        counter=counter,
        models=models,
        breaker=breaker,
        limiter=limiter,
        observability=obs,
        provider=provider,
        resources=resources,
    )


__all__ = ["Wiring", "wire"]
