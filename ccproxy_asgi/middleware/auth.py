"""Inbound API-key authentication: `x-api-key` or `Authorization: Bearer`, compared in constant time.

The key's identity (a name or a short fingerprint, never the key) goes into the request context as
`client_key_id`, so the rate limiter can budget per client key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import ClassVar

from ccproxy_asgi.context import ensure_request_id, get_context
from ccproxy_asgi.errors import AuthenticationError
from ccproxy_asgi.headers import client_key_from
from ccproxy_asgi.ids import key_fingerprint
from ccproxy_asgi.plumbing.pipeline import LayerKind
from ccproxy_asgi.plumbing.responses import send_error
from ccproxy_asgi.plumbing.routes import route_path
from ccproxy_asgi.types import ASGIApp, Receive, Scope, Send

# A callable check returns the key's identity, or None to refuse it.
KeyVerifier = Callable[[str], Awaitable[str | None]]

# Claude Code pre-connects with `HEAD /` and sends no key there; health probes carry none either.
DEFAULT_PUBLIC_PATHS = frozenset({"/", "/health", "/health/ready"})


class StaticKeyVerifier:
    """Checks a presented key against a fixed set, in constant time per configured key."""

    def __init__(self, keys: Iterable[str] | Mapping[str, str]) -> None:
        # name -> key digest; digests have equal length, so compare_digest does not leak key lengths.
        named = dict(keys) if isinstance(keys, Mapping) else {key_fingerprint(k): k for k in keys}
        self._digests = [(name, hashlib.sha256(key.encode()).digest()) for name, key in named.items() if key]
        if not self._digests:
            raise ValueError("at least one non-empty API key is required")

    def __repr__(self) -> str:
        return f"StaticKeyVerifier(keys={len(self._digests)})"

    async def __call__(self, presented: str) -> str | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found: str | None = None
        for name, expected in self._digests:
            # No early exit: every configured key is compared, whichever matches.
            if hmac.compare_digest(digest, expected):
                found = name
        return found


class APIKeyAuthMiddleware:
    """Answers 401 `authentication_error` unless the request carries an accepted key."""

    kind: ClassVar[LayerKind] = LayerKind.AUTH

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: Iterable[str] | Mapping[str, str] | None = None,
        verify: KeyVerifier | None = None,
        public_paths: Iterable[str] = DEFAULT_PUBLIC_PATHS,
    ) -> None:
        if (keys is None) == (verify is None):
            raise ValueError("give exactly one of `keys` or `verify`")
        self.app = app
        self._verify: KeyVerifier = verify if verify is not None else StaticKeyVerifier(keys or ())
        self._public_paths = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in self._public_paths:
            await self.app(scope, receive, send)
            return
        ctx = get_context(scope)
        presented = client_key_from(scope)
        identity = await self._verify(presented) if presented else None
        if identity is None:
            message = (
                "invalid x-api-key"
                if presented
                else "missing API key: send x-api-key or Authorization: Bearer"
            )
            # A wrong key stays wrong: without this hint Claude Code retried a 401 with backoff (seen: 7
            # attempts in a minute) before telling the user.
            await send_error(send, AuthenticationError(message, should_retry=False), ensure_request_id(ctx))
            return
        ctx.client_key_id = identity
        await self.app(scope, receive, send)


__all__ = [
    "DEFAULT_PUBLIC_PATHS",
    "APIKeyAuthMiddleware",
    "KeyVerifier",
    "StaticKeyVerifier",
    "key_fingerprint",
]
