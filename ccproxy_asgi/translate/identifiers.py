"""Small values shared by request and response translation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ccproxy_asgi.ids import random_base62


def new_message_id() -> str:
    """An Anthropic-style message id: `msg_` + 24 random base62 characters."""
    return "msg_" + random_base62(24)


def new_tool_use_id() -> str:
    """An Anthropic-style tool-use id, for upstreams that send a tool call without one."""
    return "toolu_" + random_base62(24)


@dataclass(frozen=True, slots=True)
class ToolNameMap:
    """Tool names as the client knows them and as the upstream was told them.

    OpenAI accepts function names matching `[A-Za-z0-9_-]{1,64}` only; other names are rewritten
    when the request is translated and mapped back when the response is.
    """

    to_upstream: Mapping[str, str] = field(default_factory=dict)
    to_client: Mapping[str, str] = field(default_factory=dict)

    def client_name(self, upstream_name: str) -> str:
        return self.to_client.get(upstream_name, upstream_name)

    def upstream_name(self, client_name: str) -> str:
        return self.to_upstream.get(client_name, client_name)


EMPTY_TOOL_NAME_MAP = ToolNameMap()

__all__ = ["EMPTY_TOOL_NAME_MAP", "ToolNameMap", "new_message_id", "new_tool_use_id"]
