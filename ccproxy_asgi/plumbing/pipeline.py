"""`Pipeline`: assemble layers around an ASGI app, outermost first, checking the order that matters.

    app = (
        Pipeline()
        .add(CorrelationMiddleware)
        .add(ErrorNormalizationMiddleware, max_body_bytes=1 << 20)
        .add(APIKeyAuthMiddleware, keys=["k1"])
        .add(TokenRateLimitMiddleware, limiter=limiter)
        .wrap(endpoint)
    )

Order rules (a violation raises `PipelineOrderError` naming both layers and why):
- the correlation layer is outermost, so every response, 500s included, carries the request id;
- the error layer is outside the breaker and the rate limiter, so their answers leave as envelopes
  (they answer correctly without it too, but anything unexpected inside them would not);
- auth is outside the rate limiter, which budgets per client key identity set by auth;
- metrics are outside the breaker and the limiter, so their rejections are measured;
- no layer appears twice.
Layers are recognised by class name along their MRO, so subclasses follow the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ccproxy_asgi.types import ASGIApp

CORRELATION = "CorrelationMiddleware"
ERRORS = "ErrorNormalizationMiddleware"
AUTH = "APIKeyAuthMiddleware"
METRICS = "MetricsMiddleware"
BREAKER = "CircuitBreakerMiddleware"
RATE_LIMIT = "TokenRateLimitMiddleware"

# (outer, inner, why): `outer`, when present with `inner`, must wrap it.
_MUST_WRAP: tuple[tuple[str, str, str], ...] = (
    (ERRORS, BREAKER, "the breaker's 529s and anything unexpected inside it must leave as envelopes"),
    (ERRORS, RATE_LIMIT, "the limiter's 429s and anything unexpected inside it must leave as envelopes"),
    (AUTH, RATE_LIMIT, "the limiter budgets per client key, which auth identifies"),
    (METRICS, BREAKER, "the breaker's rejections must be measured"),
    (METRICS, RATE_LIMIT, "the limiter's waits and rejections must be measured"),
)


class PipelineOrderError(ValueError):
    """The layers are in an order that breaks a guarantee of the pipeline."""


def _kind(layer: type) -> str | None:
    for cls in layer.__mro__:
        if cls.__name__ in (CORRELATION, ERRORS, AUTH, METRICS, BREAKER, RATE_LIMIT):
            return cls.__name__
    return None


@dataclass(frozen=True, slots=True)
class Layer:
    cls: type
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.cls.__name__


@dataclass(slots=True)
class Pipeline:
    """Layers in order, outermost first; `wrap` checks the order and builds the app."""

    layers: list[Layer] = field(default_factory=list)

    def add(self, cls: type, **options: Any) -> Pipeline:
        """Append a layer inside the ones added before it."""
        self.layers.append(Layer(cls, dict(options)))
        return self

    def check(self) -> None:
        """Raise `PipelineOrderError` if the order breaks one of the rules above."""
        kinds = [_kind(layer.cls) for layer in self.layers]
        seen: set[str] = set()
        for layer, kind in zip(self.layers, kinds, strict=True):
            if kind is not None and kind in seen:
                raise PipelineOrderError(f"{layer.name} is in the pipeline twice")
            if kind is not None:
                seen.add(kind)
        if CORRELATION in kinds and kinds.index(CORRELATION) != 0:
            outer = self.layers[0].name
            raise PipelineOrderError(
                f"{CORRELATION} must be outermost (it is inside {outer}): responses from the layers "
                "outside it, 500s included, would miss the request id"
            )
        for outer, inner, why in _MUST_WRAP:
            if outer in kinds and inner in kinds and kinds.index(outer) > kinds.index(inner):
                raise PipelineOrderError(f"{outer} must be outside {inner}: {why}")

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """`app` wrapped in every layer, after checking their order."""
        self.check()
        for layer in reversed(self.layers):
            app = layer.cls(app, **layer.options)
        return app

    def describe(self) -> list[str]:
        """Layer names, outermost first (for logs and the start-up banner)."""
        return [layer.name for layer in self.layers]


__all__ = ["Layer", "Pipeline", "PipelineOrderError"]
