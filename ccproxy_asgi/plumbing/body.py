"""The request body: read once per request (bounded in size and time), parsed once, replayed to inner apps.

Whichever layer needs the body first reads it into the request context; the others, and the endpoint,
take it from there, and an inner app gets it replayed through its `receive`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ccproxy_asgi import jsonutil
from ccproxy_asgi.context import RequestContext
from ccproxy_asgi.errors import InvalidRequestError, RequestTimeoutError, RequestTooLargeError
from ccproxy_asgi.types import Message, Receive


class ClientDisconnected(Exception):
    """The client went away before its request body was read."""


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


def replay_receive(body: bytes, receive: Receive, pending: Sequence[Message] = ()) -> Receive:
    """A `receive` that hands the already-read body to an inner app, then `pending` (messages a layer took
    from `receive` meanwhile), then defers to the real one so `http.disconnect` still arrives."""
    queue: list[Message] = [{"type": "http.request", "body": body, "more_body": False}, *pending]

    async def replayed() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed


__all__ = [
    "BODY_READ_TIMEOUT_SECONDS",
    "ClientDisconnected",
    "parse_json_body",
    "read_body",
    "replay_receive",
]
