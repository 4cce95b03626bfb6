"""`create_app` mounts the layers the settings ask for, in the checked order, and runs mounted."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from ccproxy_asgi.app import build_proxy, create_app
from ccproxy_asgi.plumbing.lifespan import run_lifespan
from tests.support.mock_process import MockUpstreamProcess, mock_upstream_fixture
from tests.support.proxy_server import serve_app
from tests.support.stack import proxy_settings, running_proxy

mock_upstream = mock_upstream_fixture(scope="module")

HELLO: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 32,
    "messages": [{"role": "user", "content": "hello"}],
}


def test_default_pipeline_order(mock_upstream: MockUpstreamProcess) -> None:
    proxy = build_proxy(proxy_settings(mock_upstream, breaker_enabled=True))
    assert proxy.pipeline.describe() == [
        "CorrelationMiddleware",
        "TracingMiddleware",
        "MetricsMiddleware",
        "ErrorNormalizationMiddleware",
        "CircuitBreakerMiddleware",
    ]
    assert proxy.limiter is None
    full = build_proxy(
        proxy_settings(mock_upstream, breaker_enabled=True, api_keys="k1", rate_limit_rpm=10)
    )
    assert full.pipeline.describe() == [
        "CorrelationMiddleware",
        "TracingMiddleware",
        "MetricsMiddleware",
        "ErrorNormalizationMiddleware",
        "APIKeyAuthMiddleware",
        "CircuitBreakerMiddleware",
        "TokenRateLimitMiddleware",
    ]


def test_api_keys_setting_is_enforced(mock_upstream: MockUpstreamProcess) -> None:
    with running_proxy(mock_upstream, api_keys=["client-key-1", "client-key-2"]) as url:
        with pytest.raises(anthropic.AuthenticationError):
            anthropic.Anthropic(base_url=url, api_key="nope", max_retries=0).messages.create(**HELLO)
        ok = anthropic.Anthropic(base_url=url, auth_token="client-key-2", max_retries=0).messages.create(**HELLO)
        assert ok.type == "message"


def test_rate_limit_settings_are_enforced(mock_upstream: MockUpstreamProcess) -> None:
    mock_upstream.reset()
    settings = {"rate_limit_rpm": 2, "rate_limit_window_seconds": 60, "rate_limit_max_wait_seconds": 0}
    with running_proxy(mock_upstream, **settings) as url:
        client = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
        first = client.messages.with_raw_response.create(**HELLO)
        assert first.headers["anthropic-ratelimit-requests-limit"] == "2"
        client.messages.create(**HELLO)
        with pytest.raises(anthropic.RateLimitError) as refused:
            client.messages.create(**HELLO)
        assert float(refused.value.response.headers["retry-after"]) > 0
        assert refused.value.request_id is not None
    assert len(mock_upstream.requests()) == 2, "the refused request never reached the upstream"


def test_mounted_under_a_prefix_with_the_parents_lifespan(mock_upstream: MockUpstreamProcess) -> None:
    proxy = build_proxy(proxy_settings(mock_upstream))
    closed: list[bool] = []
    original = proxy.endpoint.provider.aclose

    async def tracking_aclose() -> None:
        closed.append(True)
        await original()

    proxy.endpoint.provider.aclose = tracking_aclose  # type: ignore[method-assign]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with run_lifespan(proxy.app):
            yield

    parent = Starlette(routes=[Mount("/anthropic", app=proxy.app)], lifespan=lifespan)
    with serve_app(parent) as url:
        client = anthropic.Anthropic(base_url=url + "/anthropic", api_key="x", max_retries=0)
        assert client.messages.create(**HELLO).type == "message"
        assert httpx.head(url + "/anthropic/").status_code == 200
    assert closed == [True], "the proxy's lifespan shutdown ran and closed the upstream client"


def test_create_app_serves_metrics_and_health_in_front_of_auth(mock_upstream: MockUpstreamProcess) -> None:
    with serve_app(create_app(proxy_settings(mock_upstream, api_keys=["k"]))) as url:
        client = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
        client.messages.create(**HELLO)
        metrics = httpx.get(url + "/metrics")  # no key: probes and scrapes skip auth
        assert metrics.status_code == 200
        assert "gen_ai_client_operation_duration_seconds_count" in metrics.text
        assert httpx.get(url + "/health/ready").json()["status"] == "ready"
        assert httpx.get(url + "/v1/models").status_code == 401
