"""The terminal endpoint behind `TokenRateLimitMiddleware`, built from `CCPROXY_*` settings: the app the
rate-limit end-to-end tests serve, in-process or in separate processes:

    uvicorn --factory tests.support.ratelimit_app:create_limited_app --port 8081

It composes the endpoint itself (not `create_app`), so it tests exactly this one layer whatever else
`create_app` mounts.
"""

from __future__ import annotations

from typing import Any

from ccproxy_asgi.app import build_endpoint, mount_rate_limit
from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.types import ASGIApp


def limited_app(settings: Settings) -> ASGIApp:
    """The endpoint for `settings`, behind the rate limiter when a budget is configured."""
    return mount_rate_limit(build_endpoint(settings), settings)


def create_limited_app() -> ASGIApp:
    """`uvicorn --factory` entry point: settings from the environment."""
    return limited_app(Settings())


def settings_for(base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "upstream_base_url": base_url,
        "upstream_api_key": "sk-test-upstream-0123456789abcdef",
        "retry_max_backoff_seconds": 0.05,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


__all__ = ["create_limited_app", "limited_app", "settings_for"]
