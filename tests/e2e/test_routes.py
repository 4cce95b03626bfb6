"""One route rule, end to end: the endpoint and every layer agree on which request is a Messages call.

`POST /v1/messages` is served, guarded by the breaker, priced by the limiter and measured as a chat
operation at the root, under a Starlette `Mount`, and behind a `root_path` (the full path with the prefix
in `root_path`, and the path a front proxy already stripped), with Claude Code's `?beta=true`. `POST
/v1/messages/` (a trailing slash) is a 404 `not_found_error` that no layer touches: before the rule the
breaker guarded it, the limiter skipped it and the endpoint answered 404.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from ccproxy_asgi.app import build_endpoint
from ccproxy_asgi.breaker import CircuitBreaker
from ccproxy_asgi.context import AdmissionMode
from ccproxy_asgi.middleware.breaker import CircuitBreakerMiddleware
from ccproxy_asgi.middleware.correlation import CorrelationMiddleware
from ccproxy_asgi.middleware.error_normalization import ErrorNormalizationMiddleware
from ccproxy_asgi.middleware.metrics import MetricsMiddleware
from ccproxy_asgi.middleware.ratelimit import TokenRateLimitMiddleware
from ccproxy_asgi.observability.collector import MetricsCollector
from ccproxy_asgi.plumbing.lifespan import run_lifespan
from ccproxy_asgi.plumbing.pipeline import Pipeline
from ccproxy_asgi.ratelimit import Budget, RateLimiter
from ccproxy_asgi.types import ASGIApp, Receive, Scope, Send
from tests.support.mock_process import MockUpstreamProcess, mock_upstream_fixture
from tests.support.proxy_server import serve_app
from tests.support.stack import proxy_settings

mock_upstream = mock_upstream_fixture(scope="module")

HELLO = {"model": "claude-sonnet-4-6", "max_tokens": 32, "messages": [{"role": "user", "content": "hello"}]}
PREFIX = "/anthropic"


@dataclass
class Stack:
    app: ASGIApp
    breaker: CircuitBreaker
    collector: MetricsCollector


def stack(mock: MockUpstreamProcess, admission: AdmissionMode) -> Stack:
    settings = proxy_settings(mock)
    breaker = CircuitBreaker()
    collector = MetricsCollector()
    app = (
        Pipeline()
        .add(CorrelationMiddleware, access_log=False)
        .add(MetricsMiddleware, collector=collector, otel=False)
        .add(ErrorNormalizationMiddleware)
        .add(
            CircuitBreakerMiddleware,
            breaker=breaker,
            upstream=str(settings.upstream_base_url),
            admission=admission,
        )
        .add(
            TokenRateLimitMiddleware,
            limiter=RateLimiter(budget=Budget(requests=1000, tokens=10_000_000, window=60.0)),
            admission=admission,
        )
        .wrap(build_endpoint(settings))
    )
    return Stack(app, breaker, collector)


def with_root_path(app: ASGIApp, root_path: str) -> ASGIApp:
    """What `uvicorn --root-path` does: the prefix goes into `root_path`, the path stays as it came."""

    async def rooted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "root_path": root_path}
        await app(scope, receive, send)

    return rooted


def mounted(app: ASGIApp) -> ASGIApp:
    """`app` under `Mount("/anthropic", ...)` in a Starlette parent that drives its lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(parent: Starlette) -> AsyncIterator[None]:
        async with run_lifespan(app):
            yield

    return Starlette(routes=[Mount(PREFIX, app=app)], lifespan=lifespan)


def at_root(app: ASGIApp) -> ASGIApp:
    return app


def behind_root_path(app: ASGIApp) -> ASGIApp:
    return with_root_path(app, PREFIX)


# deployment -> (the app around the stack, the prefix the client puts before /v1/messages)
DEPLOYMENTS: dict[str, tuple[Callable[[ASGIApp], ASGIApp], str]] = {
    "root": (at_root, ""),
    "mount": (mounted, PREFIX),
    "root_path": (behind_root_path, PREFIX),  # the full path, the prefix in root_path
    "root_path_stripped": (behind_root_path, ""),  # a front proxy stripped the prefix already
}


@contextlib.contextmanager
def deployed(
    mock: MockUpstreamProcess, deployment: str, admission: AdmissionMode
) -> Iterator[tuple[str, Stack]]:
    wrap, prefix = DEPLOYMENTS[deployment]
    built = stack(mock, admission)
    with serve_app(wrap(built.app)) as url:
        yield url + prefix, built


def chat_operations(collector: MetricsCollector) -> float:
    text = collector.render_prometheus()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gen_ai_client_operation_duration_seconds_count")
    )


def messages_route_requests(collector: MetricsCollector) -> float:
    text = collector.render_prometheus()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("http_server_request_duration_seconds_count")
        and 'http_route="/v1/messages"' in line
    )


@pytest.mark.parametrize("admission", ["on_arrival", "deferred"])
@pytest.mark.parametrize("deployment", list(DEPLOYMENTS))
def test_every_layer_and_the_endpoint_agree_on_the_messages_route(
    mock_upstream: MockUpstreamProcess, deployment: str, admission: AdmissionMode
) -> None:
    mock_upstream.reset()
    with deployed(mock_upstream, deployment, admission) as (base, built):
        served = httpx.post(
            base + "/v1/messages?beta=true", json=HELLO, headers={"x-api-key": "k"}, timeout=10
        )
        assert served.status_code == 200, served.text
        assert served.json()["type"] == "message"
        assert served.headers["anthropic-ratelimit-requests-limit"] == "1000"  # priced by the limiter

        for path in ("/v1/messages/", "/v1/messages/?beta=true"):
            refused = httpx.post(base + path, json=HELLO, headers={"x-api-key": "k"}, timeout=10)
            assert refused.status_code == 404, (path, refused.text)
            assert refused.json()["error"]["type"] == "not_found_error"
            assert refused.json()["request_id"] == refused.headers["request-id"]
            assert not [name for name in refused.headers if name.startswith("anthropic-ratelimit-")], path

        (stats,) = built.breaker.stats().values()
        assert stats.admitted == 1, "the breaker guarded the Messages call only"
        assert stats.successes == 1
        assert chat_operations(built.collector) == 1, "metrics measured one chat operation"
        assert messages_route_requests(built.collector) == 1
    assert len(mock_upstream.requests()) == 1, "only the Messages call reached the upstream"
