"""The wiring: `Settings` to objects (limiter, breaker, fallbacks, value objects), and one lifecycle for
them: started in order at startup, closed in reverse at shutdown, by the app's lifespan only."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ccproxy_asgi.app import build_proxy
from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.app.wiring import (
    MOCK_UPSTREAM_HINT,
    Resources,
    ShutdownError,
    breaker_policy,
    build_breaker,
    build_rate_limiter,
    fallback_entries,
    http_client_config,
    rate_limit_budgets,
    retry_policy,
    wire,
)
from ccproxy_asgi.breaker import BreakerPolicy, MemoryBreakerStore
from ccproxy_asgi.plumbing.lifespan import LifespanContext, LifespanError, run_lifespan
from ccproxy_asgi.provider.fallback import FallbackProvider
from ccproxy_asgi.ratelimit import AdaptivePolicy, Budget, MemoryStore
from ccproxy_asgi.ratelimit.redis_store import RedisStore
from ccproxy_asgi.types import Receive, Scope, Send

UPSTREAM = "http://127.0.0.1:9/v1"  # never called: nothing here sends a request


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# --- settings to objects ---------------------------------------------------------------------------


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
    budgets = rate_limit_budgets(
        _settings(
            rate_limit_key="model",
            rate_limit_budgets={"gpt-4o": {"rpm": 5, "tpm": 0}, "model:o3": {"tpm": 9}},
        )
    )
    assert budgets == {"model:gpt-4o": Budget(requests=5, window=60), "model:o3": Budget(tokens=9, window=60)}
    with pytest.raises(ValueError, match="unknown field"):
        rate_limit_budgets(_settings(rate_limit_budgets={"x": {"rps": 1}}))


def test_value_objects_from_settings() -> None:
    settings = _settings(
        breaker_recovery_seconds=400,  # above the default cap: the cap follows
        breaker_half_open_probes=3,
        http_max_connections=7,
        http_connect_timeout_seconds=2,
        retry_max_attempts=5,
    )
    policy = breaker_policy(settings)
    assert policy.recovery_seconds == policy.max_recovery_seconds == 400
    assert policy.half_open_max_probes == 3
    assert breaker_policy(_settings()) == BreakerPolicy()
    config = http_client_config(settings)
    assert (config.max_connections, config.connect_timeout) == (7, 2)
    assert retry_policy(settings).max_attempts == 5
    assert retry_policy(settings).budget is not retry_policy(settings).budget, "one retry budget per provider"
    memory = build_breaker(_settings())
    assert isinstance(memory.store, MemoryBreakerStore)


class _Named:
    def __init__(self, url: str) -> None:
        self.url = url

    async def aclose(self) -> None:
        pass


def test_fallback_entries_from_settings() -> None:
    settings = _settings(
        upstream_base_url="https://api.example.com/v1",
        upstream_name="openai",
        fallback_upstreams=[
            {"name": "local", "base_url": "http://127.0.0.1:8000/v1/", "api_key": "k", "big_model": "qwen"},
            {"name": "gateway", "base_url": "https://gw.example.com/v1"},
        ],
    )
    built: list[tuple[str, Any]] = []

    def make_provider(url: str, key: Any) -> Any:
        built.append((url, key.get_secret_value() if key else None))
        return _Named(url)

    primary: Any = _Named("https://api.example.com/v1")
    entries = fallback_entries(settings, primary=primary, make_provider=make_provider)
    assert [(e.name, e.base_url) for e in entries] == [
        ("openai", "https://api.example.com/v1"),
        ("local", "http://127.0.0.1:8000/v1"),
        ("gateway", "https://gw.example.com/v1"),
    ]
    assert built == [("http://127.0.0.1:8000/v1", "k"), ("https://gw.example.com/v1", None)]
    assert entries[0].provider is primary
    assert entries[0].resolve_model is None
    assert entries[1].resolve_model is not None
    assert entries[1].resolve_model("claude-opus-4") == "qwen"
    assert entries[2].resolve_model is None
    duplicate = settings.model_copy(update={"upstream_name": "local"})
    with pytest.raises(ValueError, match="unique"):
        fallback_entries(duplicate, primary=primary, make_provider=make_provider)


def test_wire_builds_what_the_settings_ask_for_in_dependency_order() -> None:
    wired = wire(_settings(upstream_base_url=UPSTREAM, breaker_enabled=True, rate_limit_rpm=10))
    assert wired.resources.names == ("circuit breaker", "rate limiter", "upstream provider")
    assert wired.breaker is not None
    assert wired.limiter is not None
    assert not wired.fallbacks
    bare = wire(_settings(upstream_base_url=UPSTREAM, breaker_enabled=False))
    assert bare.resources.names == ("upstream provider",)
    assert (bare.breaker, bare.limiter) == (None, None)
    with_fallbacks = wire(
        _settings(
            upstream_base_url=UPSTREAM,
            breaker_enabled=True,
            fallback_upstreams=[{"name": "spare", "base_url": "http://127.0.0.1:10/v1"}],
        )
    )
    assert with_fallbacks.fallbacks
    assert isinstance(with_fallbacks.provider, FallbackProvider)


def test_no_upstream_is_refused_before_anything_is_built() -> None:
    with pytest.raises(ValueError, match="no upstream configured") as refused:
        wire(_settings(upstream_base_url=None, breaker_enabled=True, rate_limit_rpm=1))
    assert MOCK_UPSTREAM_HINT in str(refused.value)


# --- one lifecycle ---------------------------------------------------------------------------------


class _Resource:
    def __init__(self, name: str, log: list[str], *, fail_close: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail_close = fail_close

    async def start(self) -> None:
        self.log.append(f"start {self.name}")

    async def aclose(self) -> None:
        self.log.append(f"close {self.name}")
        if self.fail_close:
            raise RuntimeError(f"{self.name} would not close")


async def test_resources_start_in_order_and_close_in_reverse() -> None:
    log: list[str] = []
    resources = Resources()
    for name in ("a", "b", "c"):
        resource = _Resource(name, log)
        resources.add(name, resource, start=resource.start if name != "b" else None)
    async with resources.running():
        assert log == ["start a", "start c"]
    assert log == ["start a", "start c", "close c", "close b", "close a"]


async def test_a_failing_close_does_not_keep_the_others_open(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    resources = Resources()
    resources.add("a", _Resource("a", log))
    resources.add("b", _Resource("b", log, fail_close=True))
    resources.add("c", _Resource("c", log))
    with caplog.at_level(logging.ERROR, logger="ccproxy_asgi.app"), pytest.raises(ShutdownError, match="b"):
        await resources.aclose()
    assert log == ["close c", "close b", "close a"]
    assert "closing the b failed" in caplog.text


async def test_a_failed_start_closes_everything() -> None:
    log: list[str] = []
    resources = Resources()
    resources.add("a", _Resource("a", log))

    async def refuse() -> None:
        raise OSError("store unreachable")

    resources.add("b", _Resource("b", log), start=refuse)
    with pytest.raises(OSError, match="unreachable"):
        async with resources.running():
            pytest.fail("not reached")
    assert log == ["close b", "close a"]


async def test_lifespan_context_answers_startup_and_shutdown_failures() -> None:
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the inner app never sees the lifespan")

    log: list[str] = []
    resources = Resources()
    resources.add("x", _Resource("x", log, fail_close=True))
    with pytest.raises(LifespanError, match="shutdown failed"):
        async with run_lifespan(LifespanContext(inner, resources.running)):
            pass
    assert log == ["close x"]

    async def refuse() -> None:
        raise OSError("nope")

    failing = Resources()
    failing.add("y", _Resource("y", log), start=refuse)
    with pytest.raises(LifespanError, match="startup failed"):
        async with run_lifespan(LifespanContext(inner, failing.running)):
            pass


async def test_the_apps_lifespan_closes_provider_limiter_breaker_in_that_order() -> None:
    proxy = build_proxy(_settings(upstream_base_url=UPSTREAM, breaker_enabled=True, rate_limit_rpm=10))
    assert proxy.breaker is not None
    assert proxy.limiter is not None
    events: list[str] = []

    def track(name: str, obj: Any, method: str) -> None:
        original = getattr(obj, method)

        async def tracked() -> Any:
            events.append(f"{method} {name}")
            return await original()

        setattr(obj, method, tracked)

    track("provider", proxy.endpoint.provider, "aclose")
    track("limiter", proxy.limiter, "aclose")
    track("limiter store", proxy.limiter.store, "ping")
    track("breaker", proxy.breaker, "aclose")
    async with run_lifespan(proxy.app):
        assert events == ["ping limiter store"], "the limiter's store is checked at startup"
    # Each exactly once: the layers (the limiter's, the endpoint's) do not close what the wiring owns.
    assert events == ["ping limiter store", "aclose provider", "aclose limiter", "aclose breaker"]
