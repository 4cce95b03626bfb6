"""The settings one chat request runs with: the config, overridden by prompt directives, then headers.

Headers win over directives because a test that sets a header talks to the mock directly and means it;
directives are what survives a proxy. Header names:

    x-mock-fault  x-mock-latency  x-mock-chunk-delay  x-mock-chunks  x-mock-words
    x-mock-reasoning  x-mock-cached-tokens

Values that do not parse are ignored (the config value stays), except a fault spec, which is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ccproxy_asgi.mock_upstream.config import REASONING_MODES, MockConfig, ReasoningMode
from ccproxy_asgi.mock_upstream.directives import Directives


@dataclass(frozen=True, slots=True)
class Knobs:
    """Resolved per-request settings."""

    words: int
    chunks: int
    tool_arg_chunks: int
    reasoning: ReasoningMode
    cached_tokens: int | None
    latency: float
    chunk_delay: float
    fault: str | None


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


def _pick(header: str | None, directive: str | None) -> float | None:
    value = _number(header)
    return value if value is not None else _number(directive)


def resolve_knobs(config: MockConfig, directives: Directives, headers: Mapping[str, str]) -> Knobs:
    """Merge config, directives and `x-mock-*` headers (header names in lower case)."""
    values = directives.values
    words = _pick(headers.get("x-mock-words"), values.get("words"))
    chunks = _pick(headers.get("x-mock-chunks"), values.get("chunks"))
    cached = _pick(headers.get("x-mock-cached-tokens"), values.get("cached"))
    latency = _pick(headers.get("x-mock-latency"), values.get("latency"))
    chunk_delay = _pick(headers.get("x-mock-chunk-delay"), values.get("chunk-delay"))
    reasoning: ReasoningMode = config.reasoning
    for raw in (values.get("reasoning"), headers.get("x-mock-reasoning")):
        for mode in REASONING_MODES:
            if raw == mode:
                reasoning = mode
    return Knobs(
        words=config.reply_words if words is None else int(words),
        chunks=max(1, config.chunks if chunks is None else int(chunks)),
        tool_arg_chunks=max(1, config.tool_arg_chunks),
        reasoning=reasoning,
        cached_tokens=config.cached_tokens if cached is None else int(cached),
        latency=config.latency if latency is None else latency,
        chunk_delay=config.chunk_delay if chunk_delay is None else chunk_delay,
        fault=headers.get("x-mock-fault") or values.get("fault") or None,
    )


__all__ = ["Knobs", "resolve_knobs"]
