"""The pipeline builder: order rules, and the app it builds."""

from __future__ import annotations

import pytest

from ccproxy_asgi.middleware.auth import APIKeyAuthMiddleware
from ccproxy_asgi.middleware.breaker import CircuitBreakerMiddleware
from ccproxy_asgi.middleware.correlation import CorrelationMiddleware
from ccproxy_asgi.middleware.error_normalization import ErrorNormalizationMiddleware
from ccproxy_asgi.plumbing.pipeline import Pipeline, PipelineOrderError
from ccproxy_asgi.types import Receive, Scope, Send


async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover - never called
    raise AssertionError


class Tagging:
    """A user's own layer: the builder accepts any ASGI middleware class."""

    def __init__(self, app: object, *, tag: str) -> None:
        self.app = app
        self.tag = tag

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover
        raise AssertionError


def test_wrap_builds_outermost_first_with_options() -> None:
    app = (
        Pipeline()
        .add(CorrelationMiddleware)
        .add(ErrorNormalizationMiddleware, max_body_bytes=100)
        .add(Tagging, tag="mine")
        .wrap(endpoint)
    )
    assert isinstance(app, CorrelationMiddleware)
    errors = app.app
    assert isinstance(errors, ErrorNormalizationMiddleware)
    tagging = errors.app
    assert isinstance(tagging, Tagging)
    assert tagging.tag == "mine"
    assert tagging.app is endpoint


def test_correlation_must_be_outermost() -> None:
    pipeline = Pipeline().add(ErrorNormalizationMiddleware).add(CorrelationMiddleware)
    with pytest.raises(PipelineOrderError, match="CorrelationMiddleware must be outermost"):
        pipeline.wrap(endpoint)


def test_errors_must_wrap_the_breaker() -> None:
    pipeline = Pipeline().add(CircuitBreakerMiddleware).add(ErrorNormalizationMiddleware)
    with pytest.raises(PipelineOrderError, match="ErrorNormalizationMiddleware must be outside CircuitBreaker"):
        pipeline.check()


def test_auth_must_wrap_the_rate_limiter() -> None:
    from ccproxy_asgi.middleware.ratelimit import TokenRateLimitMiddleware

    pipeline = Pipeline().add(TokenRateLimitMiddleware).add(APIKeyAuthMiddleware)
    with pytest.raises(PipelineOrderError, match="APIKeyAuthMiddleware must be outside TokenRateLimit"):
        pipeline.check()


def test_a_layer_twice_is_refused_subclasses_included() -> None:
    class MyErrors(ErrorNormalizationMiddleware):
        pass

    with pytest.raises(PipelineOrderError, match="twice"):
        Pipeline().add(ErrorNormalizationMiddleware).add(MyErrors).check()


def test_unknown_layers_are_free_to_go_anywhere() -> None:
    Pipeline().add(CorrelationMiddleware).add(Tagging, tag="a").add(ErrorNormalizationMiddleware).check()
    assert Pipeline().add(Tagging, tag="x").describe() == ["Tagging"]
