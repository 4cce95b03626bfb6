"""Small ASGI helpers shared by the endpoint and the layers: body reading, JSON answers, header access."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from ccproxy_asgi import jsonutil
from ccproxy_asgi.context import RequestContext
from ccproxy_asgi.errors import (
    InvalidRequestError,
    ProxyError,
    RequestTimeoutError,
    RequestTooLargeError,
    error_response_parts,
)
from ccproxy_asgi.types import Message, Receive, Scope, Send


class ClientDisconnected(Exception):
    """The client went away before its request body was read."""


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header `name` (lower-case bytes), decoded as latin-1."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def client_key_from(scope: Scope) -> str | None:
    """The key the client presented, `x-api-key` or `Authorization: Bearer`."""
    key = header(scope, b"x-api-key")
    if key:
        return key
    auth = header(scope, b"authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return None


def route_path(scope: Scope) -> str:
    """The path below the mount point, whichever convention the server and router use for root_path."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


#: Default of `read_body`'s `time_limit` (the `body_read_timeout_seconds` setting).
BODY_READ_TIMEOUT_SECONDS = 60.0


async def read_body(
    receive: Receive,
    ctx: RequestContext,
    *,
    limit: int,
    time_limit: float | None = BODY_READ_TIMEOUT_SECONDS,
) -> bytes:
    """The whole request body, read once per request and kept on the context for the other layers.

    `time_limit` bounds the time, in seconds, to receive all of it (None: no bound). ASGI servers bound
    at most the silence between two reads, so a client sending one byte a second (slow loris) would
    otherwise hold the request, and whatever the layers reserved for it, for as long as it likes.
    Past the limit: `RequestTimeoutError` (408).
    """
    if ctx.body is not None:
        return ctx.body
    if time_limit is None:
        return await _read_body(receive, ctx, limit)
    try:
        async with asyncio.timeout(time_limit):
            return await _read_body(receive, ctx, limit)
    except TimeoutError:
        raise RequestTimeoutError(f"the request body was not received within {time_limit:g} s") from None


async def _read_body(receive: Receive, ctx: RequestContext, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise RequestTooLargeError(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    ctx.body = body
    return body


def parse_json_body(ctx: RequestContext) -> object:
    """The body as JSON, parsed once; a client mistake becomes a 400 `invalid_request_error`."""
    if ctx.json is not None:
        return ctx.json
    if ctx.json_error is not None:
        raise InvalidRequestError(ctx.json_error)
    body = ctx.body or b""
    if not body.strip():
        ctx.json_error = "request body is empty; expected a JSON object"
        raise InvalidRequestError(ctx.json_error)
    try:
        value = jsonutil.loads(body)
    except ValueError as exc:
        ctx.json_error = f"request body is not valid JSON: {exc}"
        raise InvalidRequestError(ctx.json_error) from None
    if not isinstance(value, dict):
        ctx.json_error = "request body must be a JSON object"
        raise InvalidRequestError(ctx.json_error)
    ctx.json = value
    return value


def replay_receive(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the already-read body to an inner app, then defers to the real one so
    `http.disconnect` still arrives."""
    sent = False

    async def wrapped() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return wrapped


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    *,
    request_id: str | None = None,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if request_id is not None:
        headers.append((b"request-id", request_id.encode("latin-1")))
    headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: ProxyError, request_id: str | None) -> None:
    status, headers, body = error_response_parts(error, request_id)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = [
    "BODY_READ_TIMEOUT_SECONDS",
    "ClientDisconnected",
    "client_key_from",
    "header",
    "parse_json_body",
    "read_body",
    "replay_receive",
    "route_path",
    "send_error",
    "send_json",
]
