"""The pipeline builder: order rules by layer kind, typed options, and the app it builds."""

from __future__ import annotations

import pytest

from ccproxy_asgi.breaker import CircuitBreaker
from ccproxy_asgi.middleware.auth import APIKeyAuthMiddleware
from ccproxy_asgi.middleware.breaker import CircuitBreakerMiddleware, UpstreamHeaderMiddleware
from ccproxy_asgi.middleware.correlation import CorrelationMiddleware
from ccproxy_asgi.middleware.error_normalization import ErrorNormalizationMiddleware
from ccproxy_asgi.middleware.metrics import MetricsMiddleware
from ccproxy_asgi.middleware.observability import ObservabilityRoutes
from ccproxy_asgi.middleware.ratelimit import TokenRateLimitMiddleware
from ccproxy_asgi.middleware.tracing import TracingMiddleware
from ccproxy_asgi.plumbing.pipeline import LayerKind, Pipeline, PipelineOrderError, layer_kind
from ccproxy_asgi.ratelimit import Budget, RateLimiter
from ccproxy_asgi.types import Receive, Scope, Send

UPSTREAM = "https://api.example.com/v1"


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


def limiter() -> RateLimiter:
    return RateLimiter(budget=Budget(requests=10, tokens=1000, window=60.0))


def test_errors_must_wrap_the_breaker() -> None:
    pipeline = (
        Pipeline()
        .add(CircuitBreakerMiddleware, breaker=CircuitBreaker(), upstream=UPSTREAM)
        .add(ErrorNormalizationMiddleware)
    )
    with pytest.raises(
        PipelineOrderError, match="ErrorNormalizationMiddleware must be outside CircuitBreaker"
    ):
        pipeline.check()


def test_auth_must_wrap_the_rate_limiter() -> None:
    pipeline = (
        Pipeline().add(TokenRateLimitMiddleware, limiter=limiter()).add(APIKeyAuthMiddleware, keys=["k"])
    )
    with pytest.raises(PipelineOrderError, match="APIKeyAuthMiddleware must be outside TokenRateLimit"):
        pipeline.check()


def test_metrics_must_wrap_the_breaker_and_the_limiter() -> None:
    breaker_first = (
        Pipeline()
        .add(CircuitBreakerMiddleware, breaker=CircuitBreaker(), upstream=UPSTREAM)
        .add(MetricsMiddleware, otel=False)
    )
    with pytest.raises(
        PipelineOrderError, match="MetricsMiddleware must be outside CircuitBreakerMiddleware"
    ):
        breaker_first.check()
    limiter_first = (
        Pipeline().add(TokenRateLimitMiddleware, limiter=limiter()).add(MetricsMiddleware, otel=False)
    )
    with pytest.raises(
        PipelineOrderError, match="MetricsMiddleware must be outside TokenRateLimitMiddleware"
    ):
        limiter_first.check()


def test_every_layer_of_the_package_has_its_kind() -> None:
    expected = {
        CorrelationMiddleware: LayerKind.CORRELATION,
        TracingMiddleware: LayerKind.TRACING,
        MetricsMiddleware: LayerKind.METRICS,
        ErrorNormalizationMiddleware: LayerKind.ERRORS,
        APIKeyAuthMiddleware: LayerKind.AUTH,
        CircuitBreakerMiddleware: LayerKind.BREAKER,
        UpstreamHeaderMiddleware: LayerKind.UPSTREAM_HEADER,
        TokenRateLimitMiddleware: LayerKind.RATE_LIMIT,
        ObservabilityRoutes: LayerKind.OBSERVABILITY_ROUTES,
    }
    assert {cls: layer_kind(cls) for cls in expected} == expected
    assert set(expected.values()) == set(LayerKind)
    assert layer_kind(Tagging) is None


def test_a_subclass_follows_the_rules_of_its_base_and_is_named_by_its_own_name() -> None:
    class QuietErrors(ErrorNormalizationMiddleware):
        pass

    assert layer_kind(QuietErrors) is LayerKind.ERRORS
    pipeline = (
        Pipeline().add(CircuitBreakerMiddleware, breaker=CircuitBreaker(), upstream=UPSTREAM).add(QuietErrors)
    )
    with pytest.raises(PipelineOrderError, match="QuietErrors must be outside CircuitBreakerMiddleware"):
        pipeline.check()


def test_a_misspelt_option_fails_type_checking_and_the_build() -> None:
    # The ignore is checked too: were `add` untyped again, mypy would report it as unused.
    pipeline = Pipeline().add(ErrorNormalizationMiddleware, max_body_byte=100)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="max_body_byte"):
        pipeline.wrap(endpoint)


def test_positional_arguments_follow_the_app() -> None:
    class Prefixed:
        def __init__(self, app: object, prefix: str, *, suffix: str = "") -> None:
            self.app = app
            self.label = prefix + suffix

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover
            raise AssertionError

    pipeline = Pipeline().add(Prefixed, "a", suffix="b")
    app = pipeline.wrap(endpoint)
    assert isinstance(app, Prefixed)
    assert (app.app, app.label) == (endpoint, "ab")
    assert pipeline.layers[0].args == ("a",)
    assert pipeline.layers[0].options == {"suffix": "b"}


def test_a_layer_twice_is_refused_subclasses_included() -> None:
    class MyErrors(ErrorNormalizationMiddleware):
        pass

    with pytest.raises(PipelineOrderError, match="twice"):
        Pipeline().add(ErrorNormalizationMiddleware).add(MyErrors).check()


def test_unknown_layers_are_free_to_go_anywhere() -> None:
    Pipeline().add(CorrelationMiddleware).add(Tagging, tag="a").add(ErrorNormalizationMiddleware).check()
    assert Pipeline().add(Tagging, tag="x").describe() == ["Tagging"]
