"""The proxy with the circuit breaker (and fallback upstreams) composed around it, for the breaker tests.

`build_proxy` mounts the breaker (or, with fallback upstreams, the fallback provider) from settings:

    app, breaker = breaker_app(settings)        # in-process, e.g. under `serve_app`
    uvicorn --factory tests.support.breaker_app:app_from_env   # a separate process, settings from CCPROXY_*
"""

from __future__ import annotations

from ccproxy_asgi.app import build_proxy
from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.breaker import CircuitBreaker
from ccproxy_asgi.types import ASGIApp


def breaker_app(settings: Settings) -> tuple[ASGIApp, CircuitBreaker]:
    """The proxy for `settings` (breaker on) and its breaker, to read its stats and snapshots."""
    proxy = build_proxy(settings.model_copy(update={"breaker_enabled": True}))
    assert proxy.breaker is not None
    return proxy.app, proxy.breaker


def app_from_env() -> ASGIApp:
    """`uvicorn --factory` entry point: settings from the environment."""
    return breaker_app(Settings())[0]


__all__ = ["app_from_env", "breaker_app"]
