"""ASGI plumbing shared by the layers and the endpoint: the pipeline, lifespans, reading and replaying
request bodies, sending responses, and the one rule for which route a request is.

What you need to compose the layers yourself (`Pipeline`, `run_lifespan`) or to write a layer of your
own that shares the request body and answers in the Anthropic shape.
"""

from __future__ import annotations

from ccproxy_asgi.plumbing.body import ClientDisconnected, parse_json_body, read_body, replay_receive
from ccproxy_asgi.plumbing.lifespan import LifespanContext, LifespanError, LifespanHooks, run_lifespan
from ccproxy_asgi.plumbing.pipeline import (
    Layer,
    LayerFactory,
    LayerKind,
    Pipeline,
    PipelineOrderError,
    layer_kind,
)
from ccproxy_asgi.plumbing.responses import send_error, send_json
from ccproxy_asgi.plumbing.routes import Route, is_messages_call, match_route, route_path

__all__ = [
    "ClientDisconnected",
    "Layer",
    "LayerFactory",
    "LayerKind",
    "LifespanContext",
    "LifespanError",
    "LifespanHooks",
    "Pipeline",
    "PipelineOrderError",
    "Route",
    "is_messages_call",
    "layer_kind",
    "match_route",
    "parse_json_body",
    "read_body",
    "replay_receive",
    "route_path",
    "run_lifespan",
    "send_error",
    "send_json",
]
