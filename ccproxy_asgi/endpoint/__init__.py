"""The terminal ASGI app: `AnthropicEndpoint` routes `/v1/messages`, `/v1/messages/count_tokens` and
`/v1/models`, reads and translates the request, calls the provider and answers, whole or as a stream."""

from __future__ import annotations

from ccproxy_asgi.endpoint.dispatch import AnthropicEndpoint
from ccproxy_asgi.endpoint.messages import MessagesHandler

__all__ = ["AnthropicEndpoint", "MessagesHandler"]
