"""Whole responses a layer or the endpoint answers by itself: JSON bodies and Anthropic error envelopes.

`send_error` is the one way an error leaves as a response: its status, type, retry hints and headers come
from the `ProxyError` (`ccproxy_asgi.errors.error_response_parts`), so every layer answers the same
envelope with or without the error normalization layer around it.
"""

from __future__ import annotations

from collections.abc import Iterable

from ccproxy_asgi.errors import ProxyError, error_response_parts
from ccproxy_asgi.types import Message, Send


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    *,
    request_id: str | None = None,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """A complete `application/json` response; `body` is already encoded."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if request_id is not None:
        headers.append((b"request-id", request_id.encode("latin-1")))
    headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_messages(error: ProxyError, request_id: str | None) -> tuple[Message, Message]:
    """The `http.response.start` and `http.response.body` messages answering `error`."""
    status, headers, body = error_response_parts(error, request_id)
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body},
    )


async def send_error(send: Send, error: ProxyError, request_id: str | None) -> None:
    """Answer `error` as its Anthropic error envelope, with its status and retry headers."""
    start, body = error_messages(error, request_id)
    await send(start)
    await send(body)


__all__ = ["error_messages", "send_error", "send_json"]
