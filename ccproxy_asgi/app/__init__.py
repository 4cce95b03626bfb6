"""Assembling the proxy: settings, the settings reference, the wiring (settings to objects, and their
lifecycle), `create_app` / `build_proxy`, the CLI.

Nothing in the core packages imports from here; this package imports everything.
"""

from __future__ import annotations

from ccproxy_asgi.app.proxy import Proxy, build_endpoint, build_proxy, create_app, mount_rate_limit
from ccproxy_asgi.app.settings import Settings, load_settings
from ccproxy_asgi.app.wiring import (
    MOCK_UPSTREAM_HINT,
    Observability,
    build_breaker,
    build_observability,
    build_rate_limiter,
    model_mapper,
)

__all__ = [
    "MOCK_UPSTREAM_HINT",
    "Observability",
    "Proxy",
    "Settings",
    "build_breaker",
    "build_endpoint",
    "build_observability",
    "build_proxy",
    "build_rate_limiter",
    "create_app",
    "load_settings",
    "model_mapper",
    "mount_rate_limit",
]
