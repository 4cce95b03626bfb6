"""Which budget a request spends: the limiter key, from a configurable mode or function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from ccproxy_asgi.context import RequestContext
from ccproxy_asgi.ids import key_fingerprint

KeyMode = Literal["global", "model", "client", "client_model"]
KEY_MODES: tuple[KeyMode, ...] = ("global", "model", "client", "client_model")

KeyFunction = Callable[[RequestContext, str | None], str]
"""`(context, presented client key or None) -> limiter key`."""


def client_identity(ctx: RequestContext, presented_key: str | None) -> str:
    """Who the client is, never its secret: the auth layer's key id when set, else the fingerprint of
    the key it presented (the same one auth uses for unnamed keys), else `anonymous`."""
    if ctx.client_key_id:
        return ctx.client_key_id
    if presented_key:
        return key_fingerprint(presented_key)
    return "anonymous"


def key_for(mode: KeyMode, ctx: RequestContext, presented_key: str | None) -> str:
    """The limiter key of a request: `global`, `model:<upstream model>`, `client:<identity>`, or
    `client:<identity>|model:<upstream model>`."""
    if mode == "global":
        return "global"
    model = ctx.upstream_model or ctx.requested_model or "unknown"
    if mode == "model":
        return f"model:{model}"
    client = client_identity(ctx, presented_key)
    if mode == "client":
        return f"client:{client}"
    if mode == "client_model":
        return f"client:{client}|model:{model}"
    raise ValueError(f"unknown rate-limit key mode {mode!r}; use one of {', '.join(KEY_MODES)}")


def key_function(mode: KeyMode) -> KeyFunction:
    """`key_for` bound to `mode` (checked now, not at the first request)."""
    if mode not in KEY_MODES:
        raise ValueError(f"unknown rate-limit key mode {mode!r}; use one of {', '.join(KEY_MODES)}")

    def function(ctx: RequestContext, presented_key: str | None) -> str:
        return key_for(mode, ctx, presented_key)

    return function


__all__ = ["KEY_MODES", "KeyFunction", "KeyMode", "client_identity", "key_for", "key_function"]
