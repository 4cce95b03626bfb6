"""Assembling the proxy: settings, the settings reference, `create_app` / `build_proxy`, the CLI.

Nothing in the core packages imports from here; this package imports everything.
"""

from __future__ import annotations

from ccproxy_asgi.app.proxy import (
    MOCK_UPSTREAM_HINT,
    Proxy,
    build_endpoint,
    build_proxy,
    create_app,
    model_mapper,
)

__all__ = ["MOCK_UPSTREAM_HINT", "Proxy", "build_endpoint", "build_proxy", "create_app", "model_mapper"]
