"""The chat provider: one upstream call with its retries, the mapping of upstream errors to Anthropic
errors, the redaction of upstream text, and fallback between upstreams.

The names are imported on first use: the cores that need one piece (the rate limiter reads
`provider.retry` and `provider.upstream_limits`, the translation `provider.redaction`) do not load the
HTTP provider with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccproxy_asgi._lazy import lazy_exports

if TYPE_CHECKING:
    from ccproxy_asgi.provider.base import ChatProvider
    from ccproxy_asgi.provider.error_mapping import map_upstream_error
    from ccproxy_asgi.provider.fallback import FallbackProvider, UpstreamEntry
    from ccproxy_asgi.provider.openai import OpenAIProvider
    from ccproxy_asgi.provider.redaction import redact_error_text
    from ccproxy_asgi.provider.retry import RetryPolicy
    from ccproxy_asgi.provider.retry_budget import RetryBudget
    from ccproxy_asgi.provider.upstream_limits import anthropic_ratelimit_headers

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ChatProvider": "ccproxy_asgi.provider.base",
        "FallbackProvider": "ccproxy_asgi.provider.fallback",
        "OpenAIProvider": "ccproxy_asgi.provider.openai",
        "RetryBudget": "ccproxy_asgi.provider.retry_budget",
        "RetryPolicy": "ccproxy_asgi.provider.retry",
        "UpstreamEntry": "ccproxy_asgi.provider.fallback",
        "anthropic_ratelimit_headers": "ccproxy_asgi.provider.upstream_limits",
        "map_upstream_error": "ccproxy_asgi.provider.error_mapping",
        "redact_error_text": "ccproxy_asgi.provider.redaction",
    },
)

__all__ = [
    "ChatProvider",
    "FallbackProvider",
    "OpenAIProvider",
    "RetryBudget",
    "RetryPolicy",
    "UpstreamEntry",
    "anthropic_ratelimit_headers",
    "map_upstream_error",
    "redact_error_text",
]
