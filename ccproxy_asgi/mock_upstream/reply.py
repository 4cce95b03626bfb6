"""What the mock answers: a pure function of the request, so tests can predict every reply.

Rules (all whitespace runs in quoted text are collapsed to one space before cutting):

- Plain text: `Mock reply to: <first 40 chars of the last user message, directives removed>`, then filler
  words (`FILLER_WORDS`, cycling) until the reply has `words` words (default 12); never cut shorter.
  `[[reply:TEXT]]` replaces it with TEXT exactly.
- Answer to tool results (the last message has role `tool`, or is a user message without `[[tool:…]]`
  or `[[reply:…]]` right after tool messages): one line per tool message of that trailing run,
  `Tool NAME returned: <first 60 chars of its content>`, joined by newlines; never a tool call, so an
  agent loop always ends.
- Tool calls, only when the last message is the user's, the request offers tools and `tool_choice` is
  not `"none"`: the `[[tool:…]]` directives naming offered tools, in order; else the configured default
  tool calls that are offered and whose result the conversation does not hold yet; else, if
  `tool_choice` forces a tool (`"required"`: the first offered, or a named function), that tool with
  schema-made arguments. `parallel_tool_calls: false` keeps the first.
  Content before the calls: `[[reply:…]]`, else the `tool_preamble` knob, else `DEFAULT_PREAMBLE` for
  `[[text-then-tool:…]]`, else none. Call ids: `call_` + 24 hex of sha256("<message count>:<index>:
  <name>:<arguments>").
- Reasoning (mode not `none`): `Considering: <first 40 chars of the user text>`.
- `stop`: the content is cut before the earliest stop string (finish `stop`, tool calls dropped);
  then `max_completion_tokens`/`max_tokens` caps reasoning, content and tool calls, in that order, at
  token boundaries (finish `length`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ccproxy_asgi import jsonutil
from ccproxy_asgi.mock_upstream.config import MockConfig, ReasoningMode
from ccproxy_asgi.mock_upstream.directives import Directives, parse_directives
from ccproxy_asgi.mock_upstream.request_settings import Knobs, resolve_knobs
from ccproxy_asgi.tokens.openai_chat import ChatTokenCounter

FILLER_WORDS = (
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
)
DEFAULT_PREAMBLE = "Let me check."
_EMPTY_HEADERS: Mapping[str, str] = {}


@lru_cache(maxsize=64)
def counter_for(model: str) -> ChatTokenCounter:
    """A token counter per model, built once (loading an encoding is not free)."""
    return ChatTokenCounter(model)


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Reply:
    """Everything a response carries, before it is put on the wire."""

    content: str
    reasoning: str
    reasoning_mode: ReasoningMode
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str
    stop_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cached_tokens: int | None
    knobs: Knobs

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def usage(self) -> dict[str, Any]:
        """The `usage` object of the response."""
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens, "audio_tokens": 0}
        if self.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return usage


def squash(text: str) -> str:
    """Collapse whitespace runs to single spaces and trim."""
    return " ".join(text.split())


def message_text(content: Any) -> str:
    """The text of a message `content` (string, or the text parts joined by newlines)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


def default_reply_text(user_text: str, words: int) -> str:
    """The plain reply to a user text (directives already removed)."""
    text = f"Mock reply to: {squash(user_text)[:40]}".rstrip()
    missing = words - len(text.split())
    if missing > 0:
        text += " " + " ".join(FILLER_WORDS[i % len(FILLER_WORDS)] for i in range(missing))
    return text


def schema_arguments(schema: Any) -> dict[str, Any]:
    """Arguments for a tool made from its JSON schema: each required property with a dummy value."""
    value = _dummy(schema, 0)
    return value if isinstance(value, dict) else {}


def _dummy(schema: Any, depth: int) -> Any:
    if not isinstance(schema, Mapping) or depth > 8:
        return "mock"
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return _dummy(options[0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = schema.get("required")
        names = [n for n in required if isinstance(n, str)] if isinstance(required, list) else []
        return {name: _dummy(properties.get(name, {}), depth + 1) for name in names}
    if kind == "array":
        count = schema.get("minItems", 0)
        return [
            _dummy(schema.get("items", {}), depth + 1) for _ in range(count if isinstance(count, int) else 0)
        ]
    return {"integer": 1, "number": 1, "boolean": True, "null": None}.get(str(kind), "mock")


def _offered_tools(body: Mapping[str, Any]) -> dict[str, Any]:
    tools = body.get("tools")
    offered: dict[str, Any] = {}
    if isinstance(tools, list):
        for tool in tools:
            function = tool.get("function") if isinstance(tool, Mapping) else None
            if isinstance(function, Mapping) and isinstance(function.get("name"), str):
                offered[function["name"]] = function.get("parameters")
    return offered


def _call_id(message_count: int, index: int, name: str, arguments: str) -> str:
    digest = hashlib.sha256(f"{message_count}:{index}:{name}:{arguments}".encode()).hexdigest()
    return "call_" + digest[:24]


def _choose_tool_calls(
    body: Mapping[str, Any], config: MockConfig, directives: Directives, message_count: int
) -> list[ToolCall]:
    offered = _offered_tools(body)
    choice = body.get("tool_choice")
    if not offered or choice == "none":
        return []
    wanted: list[tuple[str, dict[str, Any] | None]] = [
        (d.name, d.arguments) for d in directives.tools if d.name in offered
    ]
    if not wanted:
        # A default call is made once per conversation: after its result, answer in text.
        answered = _answered_tools(body.get("messages") or ())
        wanted = [
            (d.name, d.arguments)
            for d in config.default_tool_calls
            if d.name in offered and d.name not in answered
        ]
    if not wanted:
        forced = None
        if choice == "required":
            forced = next(iter(offered))
        elif isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
            name = choice["function"].get("name")
            forced = name if name in offered else None
        if forced is not None:
            wanted = [(forced, None)]
    if body.get("parallel_tool_calls") is False:
        wanted = wanted[:1]
    calls = []
    for index, (name, arguments) in enumerate(wanted):
        text = jsonutil.dumps_str(arguments if arguments is not None else schema_arguments(offered[name]))
        calls.append(ToolCall(_call_id(message_count, index, name, text), name, text))
    return calls


def _role(message: Any) -> Any:
    return message.get("role") if isinstance(message, Mapping) else None


def _call_names(messages: Sequence[Any]) -> dict[str, str]:
    """Tool-call id → function name, over every assistant message."""
    names: dict[str, str] = {}
    for message in messages:
        if _role(message) == "assistant":
            for call in message.get("tool_calls") or ():
                if isinstance(call, Mapping) and isinstance(call.get("function"), Mapping):
                    names[str(call.get("id"))] = str(call["function"].get("name"))
    return names


def _answered_tools(messages: Sequence[Any]) -> set[str]:
    """Names of the tools whose results the conversation already holds."""
    names = _call_names(messages)
    return {names.get(str(m.get("tool_call_id")), "") for m in messages if _role(m) == "tool"}


def _tool_result_text(messages: Sequence[Any]) -> str:
    names = _call_names(messages)
    lines: list[str] = []
    for message in reversed(messages):
        if not (isinstance(message, Mapping) and message.get("role") == "tool"):
            break
        name = names.get(str(message.get("tool_call_id")), "unknown")
        lines.append(f"Tool {name} returned: {squash(message_text(message.get('content')))[:60]}")
    return "\n".join(reversed(lines))


def _stop_strings(body: Mapping[str, Any]) -> list[str]:
    stop = body.get("stop")
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list):
        return [s for s in stop if isinstance(s, str) and s]
    return []


def _apply_stop(content: str, stops: list[str]) -> tuple[str, str | None]:
    best: tuple[int, str] | None = None
    for stop in stops:
        at = content.find(stop)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, stop)
    return (content, None) if best is None else (content[: best[0]], best[1])


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def last_user_index(messages: Sequence[Any]) -> int:
    """Index of the last `user` message, or -1."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if isinstance(message, Mapping) and message.get("role") == "user":
            return index
    return -1


def plan_reply(
    body: Mapping[str, Any], config: MockConfig, headers: Mapping[str, str] = _EMPTY_HEADERS
) -> Reply:
    """The reply the mock gives to this chat request body (headers: lower-case `x-mock-*` overrides)."""
    raw_messages = body.get("messages")
    messages: Sequence[Any] = raw_messages if isinstance(raw_messages, list) else []
    model = str(body.get("model") or "")
    counter = counter_for(model)
    user_at = last_user_index(messages)
    directives = (
        parse_directives(message_text(messages[user_at].get("content"))) if user_at >= 0 else Directives()
    )
    knobs = resolve_knobs(config, directives, headers)
    # Claude Code appends mid-conversation system messages (agent and skill listings) after the user's
    # turn; the turn being answered is the last non-system message.
    turns = list(messages)
    while turns and _role(turns[-1]) in ("system", "developer"):
        turns.pop()
    last_role = _role(turns[-1]) if turns else None
    # A translated Anthropic turn may put the user's extra text blocks (Claude Code's reminders) in a user
    # message right after the tool results; without a directive of its own, that still answers the tools.
    follows_tools = (
        last_role == "user"
        and len(turns) >= 2
        and _role(turns[-2]) == "tool"
        and not directives.tools
        and "reply" not in directives.values
    )

    tool_calls: list[ToolCall] = []
    if last_role == "tool" or follows_tools:
        content = _tool_result_text(turns if last_role == "tool" else turns[:-1])
    else:
        if last_role == "user":
            tool_calls = _choose_tool_calls(body, config, directives, len(messages))
        reply = directives.values.get("reply")
        if tool_calls:
            preamble = config.tool_preamble or (DEFAULT_PREAMBLE if directives.text_then_tool else "")
            content = reply if reply is not None else preamble
        else:
            content = reply if reply is not None else default_reply_text(directives.text, knobs.words)
    reasoning = "" if knobs.reasoning == "none" else f"Considering: {squash(directives.text)[:40]}".rstrip()

    content, matched_stop = _apply_stop(content, _stop_strings(body))
    if matched_stop is not None:
        tool_calls = []
    finish = "tool_calls" if tool_calls else "stop"

    budget = _max_tokens(body)
    remaining = budget if budget is not None else 1 << 62
    full_reasoning, full_content = reasoning, content
    reasoning, reasoning_tokens = counter.head(reasoning, remaining)
    remaining -= reasoning_tokens
    content, content_tokens = counter.head(content, remaining)
    remaining -= content_tokens
    cut = reasoning != full_reasoning or content != full_content
    kept_calls: list[ToolCall] = []
    for call in tool_calls:
        name_tokens = counter.text(call.name)
        if cut or name_tokens > remaining:
            cut = True
            break
        arguments, argument_tokens = counter.head(call.arguments, remaining - name_tokens)
        remaining -= name_tokens + argument_tokens
        cut = arguments != call.arguments
        kept_calls.append(ToolCall(call.id, call.name, arguments))
    if cut:
        finish = "length"
    prompt_tokens = counter.request(body)
    completion_tokens = (
        reasoning_tokens
        + content_tokens
        + sum(counter.text(c.name) + counter.text(c.arguments) for c in kept_calls)
    )
    return Reply(
        content=content,
        reasoning=reasoning,
        reasoning_mode=knobs.reasoning,
        tool_calls=tuple(kept_calls),
        finish_reason=finish,
        stop_reason=matched_stop if finish == "stop" else None,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        reasoning_tokens=reasoning_tokens,
        cached_tokens=None if knobs.cached_tokens is None else min(knobs.cached_tokens, prompt_tokens),
        knobs=knobs,
    )


__all__ = [
    "DEFAULT_PREAMBLE",
    "FILLER_WORDS",
    "Reply",
    "ToolCall",
    "counter_for",
    "default_reply_text",
    "last_user_index",
    "message_text",
    "plan_reply",
    "schema_arguments",
    "squash",
]
