"""`AnthropicEndpoint`: the terminal ASGI app serving the Anthropic Messages API.

It routes by the path below its mount point, with the rule every layer uses (`ccproxy_asgi.plumbing.routes`),
so it works at the root, under `Mount("/prefix", ...)` and behind any query string (Claude Code always
sends `?beta=true`); a trailing slash is a 404. It answers every failure with an Anthropic error envelope
by itself, so it is correct with no other layer around it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from ccproxy_asgi import jsonutil
from ccproxy_asgi.context import RequestContext, ensure_request_id, get_context
from ccproxy_asgi.endpoint.messages import MessagesHandler
from ccproxy_asgi.endpoint.models import get_one, list_page
from ccproxy_asgi.errors import (
    ApiError,
    MethodNotAllowedError,
    NotFoundError,
    ProxyError,
)
from ccproxy_asgi.headers import client_key_from
from ccproxy_asgi.plumbing.body import (
    BODY_READ_TIMEOUT_SECONDS,
    ClientDisconnected,
    parse_json_body,
    read_body,
)
from ccproxy_asgi.plumbing.responses import send_error, send_json
from ccproxy_asgi.plumbing.routes import Route, match_route, model_id_of, route_path
from ccproxy_asgi.provider.base import ChatProvider
from ccproxy_asgi.provider.retry import client_retry_count
from ccproxy_asgi.translate import fields
from ccproxy_asgi.translate.models import ModelMapper
from ccproxy_asgi.translate.options import ModelProfile, TranslationOptions
from ccproxy_asgi.types import Receive, Scope, Send

logger = logging.getLogger("ccproxy_asgi.endpoint")

_ROOT_BODY = jsonutil.dumps({"service": "ccproxy-asgi", "status": "ok"})


class AnthropicEndpoint:
    """Routes `/v1/messages`, `/v1/messages/count_tokens`, `/v1/models[/{id}]`, and `/` for pre-connects."""

    def __init__(
        self,
        *,
        provider: ChatProvider,
        models: ModelMapper,
        profile_for: Callable[[str], ModelProfile],
        options: TranslationOptions | None = None,
        ping_interval: float = 10.0,
        max_request_bytes: int = 32 * 1024 * 1024,
        list_upstream_models: bool = False,
        forward_client_key: bool = False,
        body_read_timeout: float | None = BODY_READ_TIMEOUT_SECONDS,
    ) -> None:
        self.provider = provider
        self._models = models
        self._max_request_bytes = max_request_bytes
        self._body_read_timeout = body_read_timeout
        self._list_upstream_models = list_upstream_models
        self._forward_client_key = forward_client_key
        self._messages = MessagesHandler(
            provider=provider,
            models=models,
            profile_for=profile_for,
            options=options or TranslationOptions(),
            ping_interval=ping_interval,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        ctx = get_context(scope)
        request_id = ensure_request_id(ctx)
        try:
            await self._dispatch(scope, receive, send, ctx)
        except ClientDisconnected:
            logger.info("client disconnected before the response was complete")
        except ProxyError as exc:
            if not ctx.response_started:
                await send_error(send, exc, request_id)
        except Exception:
            logger.exception("unhandled error in the endpoint")
            if not ctx.response_started:
                await send_error(send, ApiError("internal error in the proxy"), request_id)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext) -> None:
        path = route_path(scope)
        method = scope["method"]
        route = match_route(path)
        if route is Route.MESSAGES:
            self._require(method, "POST")
            body = await self._json_body(receive, ctx)
            client_key = client_key_from(scope) if self._forward_client_key else None
            ctx.client_retry_count = client_retry_count(scope)
            await self._messages.handle(body, ctx, receive, send, client_key)
        elif route is Route.COUNT_TOKENS:
            self._require(method, "POST")
            body = await self._json_body(receive, ctx)
            await self._count_tokens(body, ctx, send)
        elif route is Route.MODELS:
            self._require(method, "GET", "HEAD")
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            page = list_page(await self._model_ids(), query)
            await send_json(send, 200, jsonutil.dumps(page), request_id=ctx.request_id)
        elif route is Route.MODEL:
            self._require(method, "GET", "HEAD")
            model_id = model_id_of(path)
            assert model_id is not None
            info = get_one(await self._model_ids(), model_id, accepted=self._models.is_mapped(model_id))
            await send_json(send, 200, jsonutil.dumps(info), request_id=ctx.request_id)
        elif route is Route.ROOT:
            self._require(method, "GET", "HEAD")
            await send_json(send, 200, _ROOT_BODY, request_id=ctx.request_id)
        else:
            raise NotFoundError(f"no route for {method} {path}")

    @staticmethod
    def _require(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise MethodNotAllowedError(f"method {method} is not allowed here; use {' or '.join(allowed)}")

    async def _json_body(self, receive: Receive, ctx: RequestContext) -> dict[str, Any]:
        await read_body(receive, ctx, limit=self._max_request_bytes, time_limit=self._body_read_timeout)
        body = parse_json_body(ctx)
        assert isinstance(body, dict)
        return body

    async def _count_tokens(self, body: dict[str, Any], ctx: RequestContext, send: Send) -> None:
        # The same readers as /v1/messages: a malformed body gets the same message on both routes.
        model = fields.read_model(body)
        fields.read_messages(body)
        upstream_model = self._models.resolve(model)
        ctx.requested_model = model
        ctx.upstream_model = upstream_model
        count = await self.provider.count_tokens(body, upstream_model=upstream_model)
        await send_json(send, 200, jsonutil.dumps({"input_tokens": count}), request_id=ctx.request_id)

    async def _model_ids(self) -> list[str]:
        ids = list(self._models.advertised())
        if self._list_upstream_models:
            try:
                for model_id in await self.provider.list_models():
                    if model_id not in ids:
                        ids.append(model_id)
            except ProxyError as exc:
                logger.warning("could not list the upstream's models: %s", exc.message)
        return ids

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.provider.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


__all__ = ["AnthropicEndpoint"]
