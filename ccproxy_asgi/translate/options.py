"""How a request is translated: per-upstream-model profiles and proxy-wide translation options.

A `ModelProfile` says what one upstream model accepts (docs/protocol.md#model-profiles): whether it
is a reasoning model, which field carries the token limit, whether `top_k` and `stop` may be sent.
`default_profile` derives one from the model name; `ProfileResolver` lets configuration override it
with glob patterns. `TranslationOptions` holds the choices that do not depend on the model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Literal

MaxTokensField = Literal["max_completion_tokens", "max_tokens"]
ReasoningEcho = Literal["drop", "reasoning_content", "reasoning"]
ToolCallIdStyle = Literal["openai", "alnum9"]
MidConversationSystem = Literal["system", "user"]
ServerToolPolicy = Literal["reject", "drop"]
ServerToolArtifacts = Literal["text", "drop"]
UserIdField = Literal["user", "safety_identifier", "none"]
Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]

# OpenAI's `reasoning_effort` values from least to most thinking; clamping walks this order.
EFFORT_ORDER: tuple[Effort, ...] = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_EFFORT_RANK = {effort: rank for rank, effort in enumerate(EFFORT_ORDER)}


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """What one upstream model accepts.

    - `reasoning`: send `reasoning_effort`; never send `temperature`, `top_p` or `stop` (GPT-5 and the
      o-series reject non-default sampling values and `stop`).
    - `efforts`: the `reasoning_effort` values the model supports; a requested effort is clamped to the
      nearest supported one at or below it. Empty: never send `reasoning_effort`.
    - `max_tokens_field`: `max_completion_tokens` (OpenAI, required by reasoning models) or `max_tokens`
      (older or self-hosted OpenAI-compatible servers).
    - `forward_top_k`: send Anthropic's `top_k` as the non-standard `top_k` (vLLM, llama.cpp, OpenRouter).
    - `reasoning_echo`: how thinking blocks in the history are sent back: dropped, or as the
      non-standard `reasoning_content` (DeepSeek, older vLLM) / `reasoning` (newer vLLM, OpenRouter).
    - `max_stop_sequences`: how many stop sequences the upstream takes; with more, all of them are
      detected by the proxy instead (OpenAI: 4; reasoning models: 0).
    - `tool_call_ids`: `openai` keeps ids matching `[A-Za-z0-9_-]{1,64}`; `alnum9` rewrites every id to
      exactly nine alphanumerics (Mistral-family templates).
    - `max_tool_description_chars`: for upstreams that reject long function descriptions (OpenAI did,
      with `string_above_max_length` over 1024 characters, until it lifted the limit in 2025; some
      gateways still do): longer ones are cut there and given in full in the system prompt. None: no
      limit. Off by default: the duplicate text costs about 9 % more prompt tokens on Claude Code.
    - `mid_conversation_system`: how system messages after the first message are sent (Claude Code sends
      its agent and skill listings that way): `system` as they are (OpenAI accepts them anywhere), or
      `user` as `<system-reminder>` text folded into the neighbouring user turn, for chat templates that
      refuse a system message that is not first (common in self-hosted models).
    """

    reasoning: bool = False
    efforts: tuple[Effort, ...] = ("low", "medium", "high")
    max_tokens_field: MaxTokensField = "max_tokens"
    forward_top_k: bool = False
    reasoning_echo: ReasoningEcho = "drop"
    max_stop_sequences: int = 4
    tool_call_ids: ToolCallIdStyle = "openai"
    max_tool_description_chars: int | None = None
    mid_conversation_system: MidConversationSystem = "system"

    def clamp_effort(self, wanted: Effort) -> Effort | None:
        """The supported effort closest to `wanted` without exceeding it (the lowest one if none is
        lower), or None when the model takes no `reasoning_effort` at all."""
        if not self.efforts:
            return None
        rank = _EFFORT_RANK[wanted]
        best: Effort | None = None
        for effort in self.efforts:
            if _EFFORT_RANK[effort] <= rank and (best is None or _EFFORT_RANK[effort] > _EFFORT_RANK[best]):
                best = effort
        if best is None:
            return min(self.efforts, key=_EFFORT_RANK.__getitem__)
        return best


@dataclass(frozen=True, slots=True)
class EffortThresholds:
    """Thinking budget (tokens) → effort buckets; LiteLLM's defaults: below `low` is `minimal`."""

    low: int = 1024
    medium: int = 2048
    high: int = 4096

    def effort_for_budget(self, budget_tokens: int) -> Effort:
        """The effort bucket a `thinking.budget_tokens` value falls into."""
        if budget_tokens >= self.high:
            return "high"
        if budget_tokens >= self.medium:
            return "medium"
        if budget_tokens >= self.low:
            return "low"
        return "minimal"


@dataclass(frozen=True, slots=True)
class TranslationOptions:
    """Proxy-wide translation choices (not per model).

    - `server_tools`: Anthropic server tools (web_search, web_fetch, code_execution, tool_search, and
      any versioned tool type the proxy cannot offer) are refused with a 400 (`reject`) or removed
      with a logged warning (`drop`).
    - `server_tool_artifacts`: server-tool blocks in the history (server_tool_use,
      web_search_tool_result, …) are rendered as text or dropped.
    - `effort_thresholds`: budget → effort mapping for `thinking.type: "enabled"`.
    - `adaptive_effort`: effort for `thinking.type: "adaptive"` without `output_config.effort`;
      `medium` is OpenAI's own default, so "let the model decide" costs what an unconfigured call does.
    - `user_id_field`: where `metadata.user_id` goes (`user` is understood by every compatible server;
      `safety_identifier` is OpenAI's newer name); ids over 64 characters are hashed.
    - `tool_error_prefix`: prepended to a tool result's text when `is_error` is true (OpenAI has no flag).
    - `response_format_name`: the `json_schema.name` sent for `output_config.format`.
    """

    server_tools: ServerToolPolicy = "reject"
    server_tool_artifacts: ServerToolArtifacts = "text"
    effort_thresholds: EffortThresholds = field(default_factory=EffortThresholds)
    adaptive_effort: Effort = "medium"
    user_id_field: UserIdField = "user"
    tool_error_prefix: str = "[tool error] "
    response_format_name: str = "response"


# Provider prefixes such as OpenRouter's `openai/gpt-5` or LiteLLM's `azure/o3` say nothing about the
# model itself; only the last path segment is looked at.
_O_SERIES = re.compile(r"o[1-9](?![0-9])")
_GPT5_MINOR = re.compile(r"gpt-5\.\d")
_OPENAI_CHAT = ("gpt-4", "gpt-3.5", "chatgpt-")

_NON_REASONING_OPENAI = ModelProfile(
    reasoning=False,
    efforts=(),
    max_tokens_field="max_completion_tokens",
    max_stop_sequences=4,
)
_REASONING_OPENAI = ModelProfile(
    reasoning=True,
    efforts=("low", "medium", "high"),
    max_tokens_field="max_completion_tokens",
    max_stop_sequences=0,
)
# Self-hosted engines (vLLM, llama.cpp, Ollama, TGI) and gateways in front of them: `max_tokens` is the
# field every one of them knows, and `top_k` is a sampling extension they implement. The OpenAI API
# itself rejects `top_k`, but it is recognized by name above and never gets this profile.
_SELF_HOSTED = ModelProfile(
    reasoning=False,
    efforts=(),
    max_tokens_field="max_tokens",
    forward_top_k=True,
    max_stop_sequences=4,
    mid_conversation_system="user",
)


def default_profile(model: str) -> ModelProfile:
    """A sensible profile from the upstream model's name alone.

    - `o1*`/`o3*`/`o4*`: reasoning, `max_completion_tokens`, efforts low/medium/high (`o1-mini` and
      `o1-preview` take no `reasoning_effort`).
    - `gpt-5*`: reasoning, `max_completion_tokens`; `gpt-5` adds `minimal`, `gpt-5.N` adds `none`;
      `*-chat*` variants are not reasoning models.
    - `gpt-4*`, `gpt-3.5*`, `chatgpt-*`: not reasoning, `max_completion_tokens`, no `top_k`.
    - anything else (self-hosted vLLM/llama.cpp/Ollama, Azure deployment names): not reasoning,
      `max_tokens`, `top_k` forwarded, up to 4 stop sequences.
    """
    name = model.rsplit("/", 1)[-1].lower()
    if _O_SERIES.match(name):
        if name.startswith(("o1-mini", "o1-preview")):
            return replace(_REASONING_OPENAI, efforts=())
        return _REASONING_OPENAI
    if name.startswith("gpt-5"):
        if "-chat" in name:
            return _NON_REASONING_OPENAI
        if "codex" in name:
            return _REASONING_OPENAI
        if _GPT5_MINOR.match(name):
            return replace(_REASONING_OPENAI, efforts=("none", "low", "medium", "high"))
        return replace(_REASONING_OPENAI, efforts=("minimal", "low", "medium", "high"))
    if name.startswith(_OPENAI_CHAT):
        return _NON_REASONING_OPENAI
    return _SELF_HOSTED


@dataclass(frozen=True, slots=True)
class ProfileResolver:
    """Upstream model name → `ModelProfile`: the first matching glob of `overrides` (case-insensitive,
    in order) wins, else `default_profile`. Call it like a function."""

    overrides: tuple[tuple[str, ModelProfile], ...] = ()

    def __call__(self, model: str) -> ModelProfile:
        lowered = model.lower()
        for pattern, profile in self.overrides:
            if fnmatchcase(lowered, pattern.lower()):
                return profile
        return default_profile(model)

    @classmethod
    def from_settings(
        cls,
        *,
        reasoning_globs: Iterable[str] = (),
        max_tokens_field: Literal["auto", "max_tokens", "max_completion_tokens"] = "auto",
        forward_top_k: bool | None = None,
        max_tool_description_chars: int | None = None,
        mid_conversation_system: MidConversationSystem | None = None,
        overrides: Sequence[tuple[str, ModelProfile]] = (),
    ) -> ProfileResolver:
        """A resolver from flat settings: `reasoning_globs` mark more models as reasoning models;
        `max_tokens_field` other than `auto`, `forward_top_k` and `max_tool_description_chars` other
        than None apply to every model; explicit `overrides` come first and are taken as they are."""
        return _SettingsResolver(
            overrides=tuple(overrides),
            reasoning_globs=tuple(g.lower() for g in reasoning_globs),
            max_tokens_field=max_tokens_field,
            forward_top_k=forward_top_k,
            max_tool_description_chars=max_tool_description_chars,
            mid_conversation_system=mid_conversation_system,
        )


@dataclass(frozen=True, slots=True)
class _SettingsResolver(ProfileResolver):
    reasoning_globs: tuple[str, ...] = ()
    max_tokens_field: Literal["auto", "max_tokens", "max_completion_tokens"] = "auto"
    forward_top_k: bool | None = None
    max_tool_description_chars: int | None = None
    mid_conversation_system: MidConversationSystem | None = None

    def __call__(self, model: str) -> ModelProfile:
        lowered = model.lower()
        for pattern, profile in self.overrides:
            if fnmatchcase(lowered, pattern.lower()):
                return profile
        profile = default_profile(model)
        if not profile.reasoning and any(fnmatchcase(lowered, g) for g in self.reasoning_globs):
            profile = replace(
                profile,
                reasoning=True,
                efforts=profile.efforts or ("low", "medium", "high"),
                max_stop_sequences=0,
                forward_top_k=False,
            )
        if self.max_tokens_field != "auto":
            profile = replace(profile, max_tokens_field=self.max_tokens_field)
        if self.forward_top_k is not None:
            profile = replace(profile, forward_top_k=self.forward_top_k and not profile.reasoning)
        if self.max_tool_description_chars is not None:
            profile = replace(profile, max_tool_description_chars=self.max_tool_description_chars)
        if self.mid_conversation_system is not None:
            profile = replace(profile, mid_conversation_system=self.mid_conversation_system)
        return profile


__all__ = [
    "EFFORT_ORDER",
    "Effort",
    "EffortThresholds",
    "MaxTokensField",
    "ModelProfile",
    "ProfileResolver",
    "ReasoningEcho",
    "ServerToolArtifacts",
    "ServerToolPolicy",
    "ToolCallIdStyle",
    "TranslationOptions",
    "UserIdField",
    "default_profile",
]
