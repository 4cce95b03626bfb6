"""`RedisStore`: windows and adaptive state shared by every process through Redis.

Each decision, settlement and observation is one Lua script (`_lua.py` documents the data): one round
trip, atomic, no read-modify-write from Python. Times are the Redis server's (with Redis Cluster, the
clock of the master that holds the key), so processes on different hosts agree on the window. When Redis
cannot be reached the store raises `StoreUnavailableError` (the limiter then fails open or closed), logs
the outage once as an error (then at most a reminder every 30 s, with the count of failed calls, however
many requests and readiness probes meet it), stops trying for `retry_interval` seconds at a time so
requests are not held up by connect timeouts, and logs the recovery once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from ccproxy_asgi.log_throttle import ThrottledLog
from ccproxy_asgi.ratelimit import redis_script as _lua
from ccproxy_asgi.ratelimit.adaptive import AdaptivePolicy
from ccproxy_asgi.ratelimit.budget import Budget, Cost, WindowView
from ccproxy_asgi.ratelimit.store import (
    Decision,
    FactorChange,
    Observation,
    Settlement,
    StoreUnavailableError,
    Ticket,
)
from ccproxy_asgi.redis_client import REDIS_ERRORS, RedisClient, build_redis_client, close_redis_client

logger = logging.getLogger("ccproxy_asgi.ratelimit.redis")

_REMIND_EVERY = 30.0
_OUTAGE = "outage"
_RECOVERED = "recovered"


def _arg(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _opt(value: Any) -> int | None:
    number = int(value)
    return None if number < 0 else number


class RedisStore:
    """The shared `LimiterStore`. `client`: a `redis.asyncio.Redis` or `RedisCluster` (the keys of one
    limiter key share a hash tag, so each script runs on the one node that owns them). `prefix`:
    namespace of the keys. `clock`: a time base to use instead of the server's (tests).
    `retry_interval`: seconds between attempts while Redis is down. `max_concurrency`: at most this many
    calls in flight, the others waiting up to `wait_timeout` seconds (for a cluster client, which fails
    instead of waiting when a node's pool is full); None: no bound of the store's own."""

    shared = True

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = "ccproxy:rl",
        clock: Callable[[], float] | None = None,
        retry_interval: float = 1.0,
        owns_client: bool = False,
        max_concurrency: int | None = None,
        wait_timeout: float = 0.5,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self._clock = clock
        self._retry_interval = retry_interval
        self._owns_client = owns_client
        self._gate = None if max_concurrency is None else asyncio.Semaphore(max_concurrency)
        self._wait_timeout = wait_timeout
        self._acquire = client.register_script(_lua.PRELUDE + _lua.ACQUIRE)
        self._settle = client.register_script(_lua.PRELUDE + _lua.SETTLE)
        self._observe = client.register_script(_lua.PRELUDE + _lua.OBSERVE)
        self._key_cache: dict[str, tuple[str, str, str]] = {}
        self._down_since: float | None = None
        self._retry_at = 0.0
        # Until Redis first answers, a failure is "unavailable at start-up"; after, an outage.
        self._answered_once = False
        self._outage_log = ThrottledLog(logger, interval=_REMIND_EVERY)
        self._background: set[asyncio.Task[Any]] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "ccproxy:rl",
        socket_timeout: float = 0.5,
        connect_timeout: float = 0.5,
        retry_interval: float = 1.0,
        max_connections: int = 64,
        clock: Callable[[], float] | None = None,
        cluster: bool = False,
    ) -> RedisStore:
        """A store with its own client for `url` (a `RedisCluster` when `cluster`). Short timeouts and no
        client-side retries: an outage must cost a request milliseconds, and the failure mode decides
        what happens then. Past `max_connections` concurrent calls, callers wait for a free connection
        (up to the socket timeout) instead of failing."""
        client = build_redis_client(
            url,
            cluster=cluster,
            timeout=socket_timeout,
            connect_timeout=connect_timeout,
            # One server: a blocking pool bounds the calls. A cluster client cannot wait for a connection,
            # so the store bounds its calls itself and the nodes' pools are left unbounded.
            max_connections=None if cluster else max_connections,
        )
        return cls(
            client,
            prefix=prefix,
            clock=clock,
            retry_interval=retry_interval,
            owns_client=True,
            max_concurrency=max_connections if cluster else None,
            wait_timeout=socket_timeout,
        )

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r})"

    @property
    def available(self) -> bool:
        """False while the store considers Redis down."""
        return self._down_since is None

    def keys_for(self, key: str) -> tuple[str, str, str]:
        """The Redis keys of limiter key `key`: log, cost and state, under one hash tag."""
        keys = self._key_cache.get(key)
        if keys is None:
            safe = key.replace("{", "(").replace("}", ")")
            tag = "{" + self.prefix + ":" + safe + "}"
            keys = (tag + ":log", tag + ":cost", tag + ":st")
            if len(self._key_cache) >= 4096:
                self._key_cache.clear()
            self._key_cache[key] = keys
        return keys

    def _now_arg(self) -> str:
        return "-1" if self._clock is None else repr(float(self._clock()))

    @staticmethod
    def _ttl_ms(budget: Budget, policy: AdaptivePolicy) -> str:
        return str(math.ceil((2 * budget.window + policy.max_pause + 60.0) * 1000))

    async def _run(self, script: Callable[..., Awaitable[Any]], key: str, args: Sequence[str]) -> Any:
        now = time.monotonic()
        if self._down_since is not None and now < self._retry_at:
            self._remind(now)
            raise StoreUnavailableError("redis is unavailable")
        try:
            if self._gate is None:
                result = await script(keys=self.keys_for(key), args=list(args))
            else:
                result = await self._gated(script, key, args)
        except REDIS_ERRORS as exc:
            self._went_down(exc)
            raise StoreUnavailableError(f"redis is unavailable: {exc}") from exc
        self._answered()
        return result

    # Requests and readiness probes meet the same outage: one state, one first line, throttled reminders.
    # Neither line is ever un-throttled (no `reset`): a Redis that flaps (timeouts under load) would
    # otherwise write an outage and a recovery per flap.
    def _went_down(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._retry_at = now + self._retry_interval
        if self._down_since is not None:
            self._remind(now)
            return
        self._down_since = now
        self._outage_log.error(
            _OUTAGE,
            "rate-limit store unavailable%s (%s: %s); limits are not shared until it answers",
            "" if self._answered_once else " at start-up",
            type(exc).__name__,
            exc,
        )

    def _remind(self, now: float) -> None:
        assert self._down_since is not None
        self._outage_log.error(
            _OUTAGE,
            "rate-limit store still unavailable after %.0f s; limits are not shared meanwhile",
            now - self._down_since,
        )

    def _answered(self) -> None:
        self._answered_once = True
        if self._down_since is not None:
            self._outage_log.warning(
                _RECOVERED,
                "rate-limit store reachable again after %.1f s",
                time.monotonic() - self._down_since,
            )
            self._down_since = None

    async def _gated(self, script: Callable[..., Awaitable[Any]], key: str, args: Sequence[str]) -> Any:
        gate = self._gate
        assert gate is not None
        try:
            async with asyncio.timeout(self._wait_timeout):
                await gate.acquire()
        except TimeoutError:
            raise RedisConnectionError(f"no connection free within {self._wait_timeout:g} s") from None
        try:
            return await script(keys=self.keys_for(key), args=list(args))
        finally:
            gate.release()

    async def _shielded(self, work: Awaitable[Any]) -> Any:
        # A write must not be half-done by a cancellation: let it finish in the background.
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return await asyncio.shield(task)

    # ----- LimiterStore --------------------------------------------------------------------------------

    async def acquire(
        self, key: str, cost: Cost, budget: Budget, policy: AdaptivePolicy, *, reserve: bool = True
    ) -> Decision:
        args = (
            self._now_arg(),
            _arg(budget.window),
            _arg(budget.requests),
            _arg(budget.tokens),
            _arg(budget.input_tokens),
            _arg(budget.output_tokens),
            str(cost.input_tokens),
            str(cost.output_tokens),
            "1" if reserve else "0",
            self._ttl_ms(budget, policy),
        )
        work = self._run(self._acquire, key, args)
        if not reserve:
            raw = await work
        else:
            task = asyncio.ensure_future(work)
            try:
                raw = await asyncio.shield(task)
            except asyncio.CancelledError:
                task.add_done_callback(lambda done: self._release_orphan(done, key, cost, budget, policy))
                raise
        return self._decision(raw, key, cost, budget)

    def _release_orphan(
        self, done: asyncio.Future[Any], key: str, cost: Cost, budget: Budget, policy: AdaptivePolicy
    ) -> None:
        # The caller was cancelled while its decision was in flight: a reservation it got is given back.
        if done.cancelled() or done.exception() is not None:
            return
        decision = self._decision(done.result(), key, cost, budget)
        if decision.ticket is not None:
            task = asyncio.ensure_future(
                self.settle(decision.ticket, Settlement(cancel=True), budget, policy)
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    @staticmethod
    def _decision(raw: Sequence[Any], key: str, cost: Cost, budget: Budget) -> Decision:
        admitted = int(raw[0]) == 1
        wait = float(raw[2])
        now = float(raw[3])
        count, tokens, inp, out = int(raw[4]), int(raw[5]), int(raw[6]), int(raw[7])
        limit_requests, limit_tokens = _opt(raw[8]), _opt(raw[9])
        limit_in, limit_out = _opt(raw[10]), _opt(raw[11])
        debt_requests, debt_tokens = int(raw[15]), int(raw[16])
        view = WindowView(
            limit_requests=limit_requests,
            remaining_requests=None
            if limit_requests is None
            else max(0, limit_requests - count - debt_requests),
            limit_tokens=limit_tokens,
            remaining_tokens=None if limit_tokens is None else max(0, limit_tokens - tokens - debt_tokens),
            limit_input_tokens=limit_in,
            remaining_input_tokens=None if limit_in is None else max(0, limit_in - inp),
            limit_output_tokens=limit_out,
            remaining_output_tokens=None if limit_out is None else max(0, limit_out - out),
            reset_after=float(raw[13]),
            factor=float(raw[12]),
            paused_for=float(raw[14]),
        )
        ticket = None
        if admitted:
            entry = raw[1].decode() if isinstance(raw[1], bytes) else str(raw[1])
            ticket = Ticket(key, entry, now, cost)
        return Decision(ticket, math.inf if wait < 0 else wait, view)

    async def settle(
        self, ticket: Ticket, settlement: Settlement, budget: Budget, policy: AdaptivePolicy
    ) -> FactorChange:
        actual = settlement.actual
        args = (
            self._now_arg(),
            _arg(budget.window),
            str(ticket.handle),
            "1" if settlement.cancel else "0",
            "" if actual is None else str(actual.input_tokens),
            "" if actual is None else str(actual.output_tokens),
            str(settlement.extra_requests),
            "1" if settlement.success and policy.enabled else "0",
            str(policy.successes_to_increase),
            repr(policy.increase),
            self._ttl_ms(budget, policy),
        )
        raw = await self._shielded(self._run(self._settle, ticket.key, args))
        return FactorChange(float(raw[0]), int(raw[1]) == 1)

    async def observe(
        self,
        key: str,
        observation: Observation,
        budget: Budget,
        policy: AdaptivePolicy,
        *,
        admitted_at: float | None = None,
    ) -> FactorChange:
        if not policy.enabled:
            return FactorChange(1.0, False)
        args = (
            self._now_arg(),
            _arg(budget.window),
            _arg(budget.requests),
            _arg(budget.tokens),
            str(observation.rate_limited),
            _arg(observation.retry_after),
            _arg(admitted_at),
            repr(policy.decrease),
            repr(policy.min_factor),
            repr(policy.default_pause),
            repr(policy.max_pause),
            _arg(observation.remaining_requests),
            _arg(observation.remaining_tokens),
            _arg(observation.reset_requests),
            _arg(observation.reset_tokens),
            "1" if policy.use_headers else "0",
            self._ttl_ms(budget, policy),
        )
        raw = await self._shielded(self._run(self._observe, key, args))
        return FactorChange(float(raw[0]), int(raw[1]) == 1)

    async def ping(self) -> bool:
        """Whether Redis answers now. Always tries (it is how start-up and readiness probes find out), and
        shares the outage state of the other calls: a failed ping marks the store down for requests too,
        and an answer ends the outage at once."""
        try:
            await self.client.ping()
        except REDIS_ERRORS as exc:
            self._went_down(exc)
            return False
        self._answered()
        return True

    async def aclose(self) -> None:
        if self._background:
            await asyncio.wait(set(self._background), timeout=1.0)
        if self._owns_client:
            await close_redis_client(self.client)


__all__ = ["RedisStore"]
