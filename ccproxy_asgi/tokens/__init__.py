"""Offline token counting: the input tokens of an Anthropic Messages request as the OpenAI-compatible
upstream will see them (for `count_tokens` and the rate limiter), and of an OpenAI chat request (for the
mock upstream). tiktoken encodings only; nothing is ever downloaded. The counting rules are in the
docstring of `ccproxy_asgi.tokens.counter`.
"""

from __future__ import annotations

from ccproxy_asgi.tokens.counter import (
    AsyncTokenCounterProtocol,
    CacheStats,
    TokenCounter,
    TokenCounterProtocol,
)
from ccproxy_asgi.tokens.encoding import encoding_for_model
from ccproxy_asgi.tokens.openai_chat import ChatTokenCounter
from ccproxy_asgi.tokens.rules import CountingRules

__all__ = [
    "AsyncTokenCounterProtocol",
    "CacheStats",
    "ChatTokenCounter",
    "CountingRules",
    "TokenCounter",
    "TokenCounterProtocol",
    "encoding_for_model",
]
