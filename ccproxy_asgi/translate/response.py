"""OpenAI `ChatCompletion` → Anthropic `Message` (docs/protocol.md#response-message), and the pieces the
stream shares.

Rules where the protocol leaves a choice:
- Blocks come as thinking (from `reasoning_content`, else `reasoning`; signature `""`) → text → one
  `tool_use` per tool call. A refusal becomes the text when there is no content. A message with none of
  these gets one empty text block, as the stream does, because some clients read `content[0]`.
- Tool arguments: `""` → `{}`; a JSON object → itself; anything else (invalid JSON, an array, a number)
  → `{"_raw": "<the string>"}`, so the client's schema validation reports it to the model instead of
  the proxy failing the whole response.
- Stop sequences are matched by the proxy in the text (the upstream may not have been told them). The
  match that completes first in generation order wins (earliest end, then earliest start); the text is
  cut before it. Tool calls are dropped then: OpenAI generates content before tool calls, so they would
  not exist had the upstream stopped at the sequence.
- A vLLM-style `choices[0].stop_reason` string with `finish_reason: "stop"` means the upstream stopped
  on a stop string it was told, and the proxy only ever sends the client's: it becomes `stop_sequence`.
  When `stop_sequences` is non-empty the string must be one of them; when it is empty (the request
  translator sent the sequences upstream instead of leaving them to the proxy) any string counts.
- `finish_reason` → `stop_reason`: `length` → `max_tokens` and `content_filter` → `refusal` even with
  tool calls present (a cut-off tool call must not look runnable); otherwise any tool call → `tool_use`;
  `tool_calls` without any call, `stop`, null and unknown values → `end_turn`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ccproxy_asgi import jsonutil
from ccproxy_asgi.errors import (
    OverloadedError,
    ProxyError,
    RateLimitError,
    UpstreamError,
    UpstreamTimeoutError,
)
from ccproxy_asgi.provider.redaction import redact_error_text
from ccproxy_asgi.translate.identifiers import ToolNameMap, new_message_id, new_tool_use_id

RAW_ARGUMENTS_KEY = "_raw"
_MAX_ERROR_MESSAGE = 1000


def _count(value: Any) -> int:
    # Token counts from third-party servers are not always ints (null, floats, strings): never crash.
    if type(value) is int:
        return max(value, 0)
    if isinstance(value, float) and value >= 0:
        return int(value)
    return 0


def usage_from_openai(usage: dict[str, Any] | None) -> dict[str, Any]:
    """Anthropic usage from OpenAI usage (docs/protocol.md#usage); all four counters always present, zero
    when unknown.

    `input_tokens` excludes cached tokens on the Anthropic side, so cache reads and writes are
    subtracted from `prompt_tokens`. DeepSeek's `prompt_cache_hit_tokens`/`prompt_cache_miss_tokens`
    are used when `prompt_tokens_details.cached_tokens` is absent. `output_tokens_details.thinking_tokens`
    is added only when the upstream reports reasoning tokens.
    """
    if not isinstance(usage, dict):
        return {
            "input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 0,
        }
    prompt = _count(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    if not isinstance(details, dict):
        details = {}
    cache_read = _count(details.get("cached_tokens"))
    cache_write = _count(details.get("cache_write_tokens"))
    if "cached_tokens" not in details and "prompt_cache_hit_tokens" in usage:
        cache_read = _count(usage.get("prompt_cache_hit_tokens"))
        if "prompt_cache_miss_tokens" in usage:
            prompt = _count(usage.get("prompt_cache_miss_tokens")) + cache_read + cache_write
    output = _count(usage.get("completion_tokens"))
    result: dict[str, Any] = {
        "input_tokens": max(prompt - cache_read - cache_write, 0),
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "output_tokens": output,
    }
    out_details = usage.get("completion_tokens_details")
    if isinstance(out_details, dict):
        reasoning = _count(out_details.get("reasoning_tokens"))
        if reasoning:
            result["output_tokens_details"] = {"thinking_tokens": min(reasoning, output)}
    return result


def estimated_usage(input_tokens: int, output_chars: int) -> dict[str, Any]:
    """Usage to report when the upstream sent none: the caller's input estimate, ~4 chars per token."""
    return {
        "input_tokens": max(input_tokens, 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": (output_chars + 3) // 4,
    }


def find_stop_sequence(text: str, stop_sequences: Sequence[str]) -> tuple[int, str] | None:
    """Where generation would have stopped: (start of the match, the sequence), or None.

    The winner is the match that ends first (generation reaches it first); on a tie, the longer one.
    """
    best: tuple[int, int, str] | None = None
    for seq in stop_sequences:
        if not seq:
            continue
        start = text.find(seq)
        if start < 0:
            continue
        end = start + len(seq)
        if best is None or (end, start) < (best[0], best[1]):
            best = (end, start, seq)
    if best is None:
        return None
    return best[1], best[2]


def map_finish_reason(
    finish_reason: Any,
    *,
    has_tool_calls: bool,
    upstream_stop: Any = None,
    stop_sequences: Sequence[str] = (),
) -> tuple[str, str | None]:
    """`(stop_reason, stop_sequence)` for an upstream finish (proxy-side matches are the caller's)."""
    if finish_reason == "length":
        return "max_tokens", None
    if finish_reason == "content_filter":
        return "refusal", None
    if has_tool_calls:
        return "tool_use", None
    if (
        finish_reason == "stop"
        and isinstance(upstream_stop, str)
        and upstream_stop
        and (not stop_sequences or upstream_stop in stop_sequences)
    ):
        return "stop_sequence", upstream_stop
    return "end_turn", None


def upstream_error(error: Any) -> ProxyError:
    """The exception for an error the upstream sent inside a 200 body or stream (`{"error": …}`)."""
    message: Any = error
    code: Any = None
    kind: Any = None
    if isinstance(error, dict):
        message = error.get("message") or jsonutil.dumps_str(error)
        code = error.get("code")
        kind = error.get("type")
    # The text comes from the upstream: it may quote keys, URLs with credentials or a traceback.
    text = redact_error_text(str(message))[:_MAX_ERROR_MESSAGE]
    status = code if type(code) is int else None
    if isinstance(code, str) and code.isdigit():
        status = int(code)
    hint = f"{code} {kind}".lower()
    full = f"upstream error: {text}"
    if status == 429 or "rate_limit" in hint:
        return RateLimitError(full)
    if status in (503, 529) or "overloaded" in hint:
        return OverloadedError(full)
    if status in (408, 504) or "timeout" in hint:
        return UpstreamTimeoutError(full)
    return UpstreamError(full)


def tool_input(arguments: Any) -> dict[str, Any]:
    """A `tool_use.input` object from OpenAI `function.arguments` (see the module rules)."""
    if isinstance(arguments, dict):
        return arguments  # some servers (older Ollama) send the object itself
    if arguments is None:
        return {}
    if not isinstance(arguments, str):
        return {RAW_ARGUMENTS_KEY: jsonutil.dumps_str(arguments)}
    if not arguments.strip():
        return {}
    try:
        value = jsonutil.loads(arguments)
    except jsonutil.JSONDecodeError:
        return {RAW_ARGUMENTS_KEY: arguments}
    if isinstance(value, dict):
        return value
    return {RAW_ARGUMENTS_KEY: arguments}


def _invalid(why: str) -> UpstreamError:
    return UpstreamError(f"invalid upstream response: {why}")


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # A few servers answer with content parts; only their text has an Anthropic counterpart here.
        return "".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    raise _invalid("message.content is neither a string nor null")


def _tool_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    calls = message.get("tool_calls")
    if calls is None:
        legacy = message.get("function_call")
        return [{"function": legacy}] if isinstance(legacy, dict) else []
    if not isinstance(calls, list):
        raise _invalid("message.tool_calls is not a list")
    return calls


def _tool_use_block(call: Any, tool_names: ToolNameMap) -> dict[str, Any]:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise _invalid("tool call without a function object")
    function = call["function"]
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise _invalid("tool call without a function name")
    call_id = call.get("id")
    return {
        "type": "tool_use",
        "id": call_id if isinstance(call_id, str) and call_id else new_tool_use_id(),
        "name": tool_names.client_name(name),
        "input": tool_input(function.get("arguments")),
    }


def translate_response(
    completion: Any,
    *,
    requested_model: str,
    tool_names: ToolNameMap,
    stop_sequences: Sequence[str] = (),
    message_id: str | None = None,
    input_tokens_estimate: int = 0,
) -> dict[str, Any]:
    """The Anthropic `Message` for a non-streaming OpenAI completion.

    `model` echoes `requested_model`. `input_tokens_estimate` is reported only when the upstream sent
    no usage. Raises `UpstreamError` for a body that is not a completion, and the mapped `ProxyError`
    for an `{"error": …}` body.
    """
    if not isinstance(completion, dict):
        raise _invalid("not a JSON object")
    if completion.get("error") is not None:
        raise upstream_error(completion["error"])
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices:
        raise _invalid("no choices")
    choice = choices[0]
    if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
        raise _invalid("choices[0].message is missing")
    message: dict[str, Any] = choice["message"]

    text = _content_text(message.get("content"))
    if not text and isinstance(message.get("refusal"), str):
        text = message["refusal"]
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    calls = _tool_calls(message)
    tool_blocks = [_tool_use_block(call, tool_names) for call in calls]

    matched: str | None = None
    if stop_sequences and text:
        hit = find_stop_sequence(text, stop_sequences)
        if hit is not None:
            text, matched = text[: hit[0]], hit[1]
            tool_blocks = []

    content: list[dict[str, Any]] = []
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    if text:
        content.append({"type": "text", "text": text})
    content.extend(tool_blocks)
    if not content:
        content.append({"type": "text", "text": ""})

    stop_reason: str
    stop_sequence: str | None
    if matched is not None:
        stop_reason, stop_sequence = "stop_sequence", matched
    else:
        stop_reason, stop_sequence = map_finish_reason(
            choice.get("finish_reason"),
            has_tool_calls=bool(tool_blocks),
            upstream_stop=choice.get("stop_reason"),
            stop_sequences=stop_sequences,
        )

    raw_usage = completion.get("usage")
    if isinstance(raw_usage, dict):
        usage = usage_from_openai(raw_usage)
    else:
        chars = len(text) + (len(reasoning) if isinstance(reasoning, str) else 0)
        usage = estimated_usage(input_tokens_estimate, chars)

    return {
        "id": message_id or new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": requested_model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
    }


__all__ = [
    "RAW_ARGUMENTS_KEY",
    "estimated_usage",
    "find_stop_sequence",
    "map_finish_reason",
    "tool_input",
    "translate_response",
    "upstream_error",
    "usage_from_openai",
]
