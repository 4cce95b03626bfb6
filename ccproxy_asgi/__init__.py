"""ccproxy-asgi: composable ASGI layers in front of an Anthropic Messages API endpoint backed by an
OpenAI-compatible upstream.

The public names are imported lazily, so `import ccproxy_asgi` (and every `python -m ccproxy_asgi.…`)
stays cheap and pulls in no HTTP library until one is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ccproxy_asgi._version import __version__

if TYPE_CHECKING:
    from ccproxy_asgi.app import create_app
    from ccproxy_asgi.app.settings import Settings
    from ccproxy_asgi.context import RequestContext, get_context
    from ccproxy_asgi.endpoint.dispatch import AnthropicEndpoint
    from ccproxy_asgi.errors import ProxyError

_EXPORTS = {
    "AnthropicEndpoint": "ccproxy_asgi.endpoint.dispatch",
    "ProxyError": "ccproxy_asgi.errors",
    "RequestContext": "ccproxy_asgi.context",
    "Settings": "ccproxy_asgi.app.settings",
    "create_app": "ccproxy_asgi.app",
    "get_context": "ccproxy_asgi.context",
}

__all__ = [
    "AnthropicEndpoint",
    "ProxyError",
    "RequestContext",
    "Settings",
    "__version__",
    "create_app",
    "get_context",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ccproxy_asgi' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
