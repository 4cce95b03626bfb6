"""The knobs of the mock upstream, as one frozen value object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ccproxy_asgi import jsonutil

ReasoningMode = Literal["none", "reasoning_content", "reasoning"]
ErrorShape = Literal["openai", "vllm"]

REASONING_MODES: tuple[ReasoningMode, ...] = ("none", "reasoning_content", "reasoning")
ERROR_SHAPES: tuple[ErrorShape, ...] = ("openai", "vllm")
DEFAULT_MODELS: tuple[str, ...] = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-5", "gpt-5-mini", "o3-mini")


@dataclass(frozen=True, slots=True)
class DefaultToolCall:
    """A tool call made whenever the request offers tool `name` and nothing more specific applies."""

    name: str
    arguments: dict[str, Any] | None = None

    @classmethod
    def parse(cls, spec: str) -> DefaultToolCall:
        """Parse `NAME` or `NAME={json object}` (the `--tool-call` flag)."""
        name, sep, raw = spec.partition("=")
        name = name.strip()
        if not name:
            raise ValueError(f"tool call spec {spec!r} has no tool name")
        if not sep or not raw.strip():
            return cls(name)
        try:
            arguments = jsonutil.loads(raw)
        except jsonutil.JSONDecodeError as exc:
            raise ValueError(f"tool call arguments in {spec!r} are not valid JSON: {exc}") from None
        if not isinstance(arguments, dict):
            raise ValueError(f"tool call arguments in {spec!r} must be a JSON object")
        return cls(name, arguments)


@dataclass(frozen=True, slots=True)
class MockConfig:
    """Everything the mock upstream can be told at start-up. Per-request overrides come on top."""

    models: tuple[str, ...] = DEFAULT_MODELS
    #: Answer 404 `model_not_found` for a chat request whose model is not in `models`.
    strict_models: bool = False
    #: When set, requests must carry `Authorization: Bearer <api_key>` or get a 401.
    api_key: str | None = None

    #: Plain replies are padded with filler words up to this many words.
    reply_words: int = 12
    #: Stream pieces the content (and, separately, the reasoning) is split into.
    chunks: int = 5
    #: Stream pieces each tool call's arguments are split into, after the opening fragment.
    tool_arg_chunks: int = 3
    #: `reasoning_content` (DeepSeek) or `reasoning` (vLLM/OpenRouter) field before the content.
    reasoning: ReasoningMode = "none"
    #: Tool calls made whenever their tool is offered and no directive says otherwise.
    default_tool_calls: tuple[DefaultToolCall, ...] = ()
    #: Text emitted before every tool call (the "Checking both." then tools shape); None: no text.
    tool_preamble: str | None = None
    #: Adds `prompt_tokens_details.cached_tokens` = min(this, prompt_tokens); None leaves details out.
    cached_tokens: int | None = None
    #: Echo vLLM's `choices[].stop_reason` (the matched stop string, else null).
    echo_stop_reason: bool = False

    #: Seconds before the first byte (response headers) of every chat response.
    latency: float = 0.0
    #: Seconds between stream frames; 0 writes the whole stream at once.
    chunk_delay: float = 0.0

    # Faults applied to every chat request (or a fraction of them); a spec string as in `parse_fault`.
    fault: str | None = None
    fault_rate: float = 1.0
    seed: int | None = None
    error_shape: ErrorShape = "openai"

    # Simulated account limits over a sliding window; 0 means unlimited.
    rpm_limit: int = 0
    tpm_limit: int = 0
    limit_window: float = 60.0
    # Values advertised in x-ratelimit-* headers when no account limit is set.
    advertised_rpm: int = 10_000
    advertised_tpm: int = 30_000_000

    #: How many chat requests `GET /mock/requests` keeps (oldest dropped first); 0 disables recording.
    record_limit: int = 1000


__all__ = [
    "DEFAULT_MODELS",
    "ERROR_SHAPES",
    "REASONING_MODES",
    "DefaultToolCall",
    "ErrorShape",
    "MockConfig",
    "ReasoningMode",
]
