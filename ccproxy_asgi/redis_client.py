"""The `redis.asyncio` client of the shared state backend: one Redis server, or a Redis Cluster.

    client = build_redis_client(url, cluster=True)       # Redis, or RedisCluster with cluster=True

Both the limiter's and the breaker's stores make one Lua call per decision whose keys share one hash tag,
so the call runs on the one cluster node that owns that slot; both kinds of client run the same scripts.

Either client gets short timeouts and no retries of its own: a Redis that does not answer must cost a
request milliseconds, and the store's failure mode decides what happens then. A cluster client still
follows MOVED and ASK redirections (a resharding is not an outage), and after a connection error it
refreshes its view of the cluster before the next command, so a failover is picked up on the next call.

`redis_url` names one node of the cluster (a DNS name for several is better): the client learns the
others from it. A cluster has only database 0.

Importing this module needs the optional `redis` package; callers import it only when Redis is used.
"""

from __future__ import annotations

from typing import TypeAlias
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

RedisClient: TypeAlias = Redis | RedisCluster
"""What a store may be given: a single-server client or a cluster client."""

REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError, TimeoutError)
"""What a Redis call can raise when Redis is unreachable or unwell. A cluster client raises
`RedisClusterException` (not a `RedisError`) when it cannot reach any node to learn the cluster from."""

DEFAULT_TIMEOUT_SECONDS = 0.5

# What redis-py's own connection pool allows: no bound of the client's own (see `max_connections`).
_UNBOUNDED = 2**31


def _cluster_database(url: str) -> str:
    path = urlsplit(url).path.strip("/")
    return path or "0"


def build_redis_client(
    url: str,
    *,
    cluster: bool = False,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    connect_timeout: float | None = None,
    max_connections: int | None = None,
) -> RedisClient:
    """A client for `url`: a `RedisCluster` when `cluster`, else a `Redis`.

    `timeout` bounds every socket read and write (and `connect_timeout`, default `timeout`, every
    connect). `max_connections`: with one server, a blocking pool of that many connections where a
    caller waits up to `timeout` for a free one; with a cluster, the bound of each node's pool (a cluster
    client fails instead of waiting, so a caller that needs a bound must keep its own concurrency below
    it, as `RedisStore` does). None: no bound, as redis-py's default pool.
    """
    connect = timeout if connect_timeout is None else connect_timeout
    if cluster:
        if _cluster_database(url) != "0":
            # RedisCluster's own message would do, but its exception is not a ValueError: say it at start-up.
            raise ValueError(
                "redis_url: a Redis Cluster has only database 0 (end the URL with /0 or nothing)"
            )
        return RedisCluster.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=connect,
            retry=Retry(NoBackoff(), 0),
            max_connections=_UNBOUNDED if max_connections is None else max_connections,
        )
    if max_connections is None:
        return Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=connect, retry=Retry(NoBackoff(), 0)
        )
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=connect,
        retry=Retry(NoBackoff(), 0),
    )
    return Redis(connection_pool=pool)


async def close_redis_client(client: RedisClient) -> None:
    """Close `client` and its connections (a single-server client's pool too)."""
    if isinstance(client, RedisCluster):
        await client.aclose()
    else:
        await client.aclose(close_connection_pool=True)


__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "REDIS_ERRORS",
    "RedisClient",
    "build_redis_client",
    "close_redis_client",
]
