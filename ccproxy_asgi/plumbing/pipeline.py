"""`Pipeline`: assemble layers around an ASGI app, outermost first, checking the order that matters.

    app = (
        Pipeline()
        .add(CorrelationMiddleware)
        .add(ErrorNormalizationMiddleware, max_body_bytes=1 << 20)
        .add(APIKeyAuthMiddleware, keys=["k1"])
        .add(TokenRateLimitMiddleware, limiter=limiter)
        .wrap(endpoint)
    )

`add` is typed like Starlette's `Middleware`: the options are the layer's own keyword arguments, so a
misspelt or mistyped option fails `mypy` (and the layer's constructor at `wrap`).

Order rules (a violation raises `PipelineOrderError` naming both layers and why):
- the correlation layer is outermost, so every response, 500s included, carries the request id;
- the error layer is outside the breaker and the rate limiter, so their answers leave as envelopes
  (they answer correctly without it too, but anything unexpected inside them would not);
- auth is outside the rate limiter, which budgets per client key identity set by auth;
- metrics are outside the breaker and the limiter, so their rejections are measured;
- no layer appears twice.
A layer is recognised by its `kind` class attribute (a `LayerKind`), so a subclass follows the rules of
its base; a layer without one (an application's own) may go anywhere.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ParamSpec, Protocol

from ccproxy_asgi.types import ASGIApp

P = ParamSpec("P")


class LayerKind(enum.Enum):
    """What a layer of this package is, for the order rules (the `kind` class attribute of each layer)."""

    CORRELATION = "correlation"
    TRACING = "tracing"
    METRICS = "metrics"
    ERRORS = "errors"
    AUTH = "auth"
    BREAKER = "breaker"
    UPSTREAM_HEADER = "upstream_header"
    RATE_LIMIT = "rate_limit"
    OBSERVABILITY_ROUTES = "observability_routes"


class LayerFactory(Protocol[P]):
    """A layer: called with the app it wraps and its options, it returns the wrapped app (a middleware
    class, as Starlette's `Middleware` takes)."""

    def __call__(self, app: ASGIApp, /, *args: P.args, **kwargs: P.kwargs) -> ASGIApp: ...


# (outer, inner, why): `outer`, when present with `inner`, must wrap it.
_MUST_WRAP: tuple[tuple[LayerKind, LayerKind, str], ...] = (
    (
        LayerKind.ERRORS,
        LayerKind.BREAKER,
        "the breaker's 529s and anything unexpected inside it must leave as envelopes",
    ),
    (
        LayerKind.ERRORS,
        LayerKind.RATE_LIMIT,
        "the limiter's 429s and anything unexpected inside it must leave as envelopes",
    ),
    (LayerKind.AUTH, LayerKind.RATE_LIMIT, "the limiter budgets per client key, which auth identifies"),
    (LayerKind.METRICS, LayerKind.BREAKER, "the breaker's rejections must be measured"),
    (LayerKind.METRICS, LayerKind.RATE_LIMIT, "the limiter's waits and rejections must be measured"),
)


class PipelineOrderError(ValueError):
    """The layers are in an order that breaks a guarantee of the pipeline."""


def layer_kind(factory: object) -> LayerKind | None:
    """The `kind` class attribute of a layer, None for a layer that has none."""
    kind = getattr(factory, "kind", None)
    return kind if isinstance(kind, LayerKind) else None


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer of a pipeline: its factory and the arguments it is called with after the app."""

    cls: LayerFactory[...]
    args: tuple[Any, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        name = getattr(self.cls, "__name__", None)
        return name if isinstance(name, str) else type(self.cls).__name__

    @property
    def kind(self) -> LayerKind | None:
        return layer_kind(self.cls)

    def build(self, app: ASGIApp) -> ASGIApp:
        """`app` wrapped in this layer."""
        return self.cls(app, *self.args, **self.options)


@dataclass(slots=True)
class Pipeline:
    """Layers in order, outermost first; `wrap` checks the order and builds the app."""

    layers: list[Layer] = field(default_factory=list)

    def add(self, cls: LayerFactory[P], /, *args: P.args, **options: P.kwargs) -> Pipeline:
        """Append a layer inside the ones added before it; `args` and `options` follow the app it wraps."""
        self.layers.append(Layer(cls, tuple(args), dict(options)))
        return self

    def check(self) -> None:
        """Raise `PipelineOrderError` if the order breaks one of the rules above."""
        position: dict[LayerKind, Layer] = {}
        index: dict[LayerKind, int] = {}
        for i, layer in enumerate(self.layers):
            kind = layer.kind
            if kind is None:
                continue
            if kind in position:
                raise PipelineOrderError(f"{layer.name} is in the pipeline twice")
            position[kind] = layer
            index[kind] = i
        if index.get(LayerKind.CORRELATION, 0) != 0:
            correlation = position[LayerKind.CORRELATION].name
            outermost = self.layers[0].name
            raise PipelineOrderError(
                f"{correlation} must be outermost (it is inside {outermost}): responses from the layers "
                "outside it, 500s included, would miss the request id"
            )
        for outer, inner, why in _MUST_WRAP:
            if outer in index and inner in index and index[outer] > index[inner]:
                raise PipelineOrderError(
                    f"{position[outer].name} must be outside {position[inner].name}: {why}"
                )

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """`app` wrapped in every layer, after checking their order."""
        self.check()
        for layer in reversed(self.layers):
            app = layer.build(app)
        return app

    def describe(self) -> list[str]:
        """Layer names, outermost first (for logs and the start-up banner)."""
        return [layer.name for layer in self.layers]


__all__ = ["Layer", "LayerFactory", "LayerKind", "Pipeline", "PipelineOrderError", "layer_kind"]
