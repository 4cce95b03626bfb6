"""The `redis.asyncio` client of the shared state backend (`redis_url`, `redis_cluster`).

Imported only when `state_backend=redis`: it needs the optional `redis` package.
"""

from __future__ import annotations

from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.redis_client import DEFAULT_TIMEOUT_SECONDS, RedisClient, build_redis_client


def redis_client(
    settings: Settings, *, timeout: float = DEFAULT_TIMEOUT_SECONDS, max_connections: int | None = None
) -> RedisClient:
    """`build_redis_client` for `redis_url`, as a cluster client when `redis_cluster` is set."""
    return build_redis_client(
        settings.redis_url.get_secret_value(),
        cluster=settings.redis_cluster,
        timeout=timeout,
        max_connections=max_connections,
    )


__all__ = ["redis_client"]
