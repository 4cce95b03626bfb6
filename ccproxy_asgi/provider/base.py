"""The seam between the endpoint and whatever serves chat completions."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from ccproxy_asgi.context import RequestContext
from ccproxy_asgi.upstream.base import UpstreamResponse


class ChatProvider(Protocol):
    """Calls an OpenAI-compatible upstream with an already translated request body.

    Every failure is raised as a `ccproxy_asgi.errors.ProxyError` carrying the Anthropic status and type.
    """

    async def complete(
        self, payload: dict[str, Any], ctx: RequestContext, *, client_key: str | None = None
    ) -> dict[str, Any]:
        """A non-streaming completion: the upstream's JSON body. `client_key`, when given, replaces the
        upstream key (only when the operator configured key forwarding)."""
        ...

    def stream(
        self, payload: dict[str, Any], ctx: RequestContext, *, client_key: str | None = None
    ) -> AbstractAsyncContextManager[UpstreamResponse]:
        """Open a streaming completion; entered only once the upstream answered 200 (retries happen
        inside), so errors before the first byte are raised as real errors."""
        ...

    async def count_tokens(self, body: dict[str, Any], *, upstream_model: str) -> int:
        """Input tokens of an Anthropic request body, as the upstream model would count them."""
        ...

    async def list_models(self) -> list[str]:
        """The upstream's own model ids."""
        ...

    async def aclose(self) -> None: ...


__all__ = ["ChatProvider"]
