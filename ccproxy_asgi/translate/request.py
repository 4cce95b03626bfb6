"""Anthropic Messages request → OpenAI Chat Completions request (docs/protocol.md#request-top-level-fields,
#request-messages).

`translate_request` walks the body once, with plain type checks instead of a model of the whole
request (this runs on every call, with tens of KB of tools and history), and is therefore also where a
malformed request is refused: any schema violation raises `InvalidRequestError` with the field path,
in the style of Anthropic's own messages (`messages.2.content.0.type: Field required`). No other
exception escapes, whatever the JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ccproxy_asgi.translate._messages import _MessageTranslator, demote_later_system_messages
from ccproxy_asgi.translate._params import (
    _int_field,
    _number_field,
    _requested_effort,
    _response_format,
    _stop_sequences,
    _system_text,
    _user_field,
)
from ccproxy_asgi.translate._validate import _bad, _fail
from ccproxy_asgi.translate.identifiers import ToolNameMap
from ccproxy_asgi.translate.options import ModelProfile, TranslationOptions
from ccproxy_asgi.translate.tools import ToolNamer, translate_tool_choice, translate_tools


@dataclass(slots=True)
class TranslatedRequest:
    """The upstream request and what the response translation needs to map the answer back.

    `stop_sequences` are the client's stop sequences the proxy must detect itself because they were
    not sent upstream (too many for the model, or a reasoning model); empty when the upstream got them.
    `warnings` name what was dropped or changed, for the log.
    """

    payload: dict[str, Any]
    tool_names: ToolNameMap
    requested_model: str
    stream: bool
    stop_sequences: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)


def translate_request(
    body: dict[str, Any], *, upstream_model: str, profile: ModelProfile, options: TranslationOptions
) -> TranslatedRequest:
    """Translate an Anthropic Messages request body into an OpenAI chat.completions body.

    Raises `InvalidRequestError` for any malformed request (field path in the message), for server
    tools under the `reject` policy, and for inputs the upstream cannot take (URL PDFs, file ids).
    """
    if not isinstance(body, dict):
        _fail("body: Input should be a valid dictionary or object")
    model = body.get("model")
    if not isinstance(model, str):
        _bad("model", model, "a valid string")
    max_tokens = _int_field(body, "max_tokens")
    if max_tokens is None:
        _fail("max_tokens: Field required")
    if max_tokens < 1:
        _fail(
            "max_tokens: Input should be greater than or equal to 1 (max_tokens 0 pre-warms Anthropic's "
            "prompt cache; OpenAI-compatible upstreams cache automatically)"
        )
    messages = body.get("messages")
    if not isinstance(messages, list):
        _bad("messages", messages, "a valid list")
    if not messages:
        _fail("messages: List should have at least 1 item after validation, not 0")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        _fail("stream: Input should be a valid boolean")
    stream = bool(stream)

    warnings: list[str] = []
    namer = ToolNamer()
    tools = translate_tools(body.get("tools"), namer=namer, profile=profile, options=options)
    warnings.extend(tools.warnings)

    out_messages: list[dict[str, Any]] = []
    system = _system_text(body, tools)
    if system:
        out_messages.append({"role": "system", "content": system})
    out_messages.extend(_MessageTranslator(namer, profile, options).translate(messages))
    if profile.mid_conversation_system == "user":
        out_messages = demote_later_system_messages(out_messages)

    payload: dict[str, Any] = {"model": upstream_model, "messages": out_messages}
    payload[profile.max_tokens_field] = max_tokens

    temperature = _number_field(body, "temperature")
    top_p = _number_field(body, "top_p")
    top_k = _int_field(body, "top_k")
    if profile.reasoning:
        dropped = [k for k, v in (("temperature", temperature), ("top_p", top_p)) if v is not None]
        if dropped:
            warnings.append(f"{' and '.join(dropped)} dropped: {upstream_model} is a reasoning model")
    else:
        if temperature is not None:
            payload["temperature"] = temperature
        if top_p is not None:
            payload["top_p"] = top_p
    if top_k is not None:
        if profile.forward_top_k:
            payload["top_k"] = top_k
        else:
            warnings.append(f"top_k dropped: not forwarded to {upstream_model}")

    stops = _stop_sequences(body)
    proxy_stops: tuple[str, ...] = ()
    if stops:
        if len(stops) <= profile.max_stop_sequences and not profile.reasoning:
            payload["stop"] = list(stops)
        else:
            proxy_stops = stops

    effort = _requested_effort(body, profile, options)
    if profile.reasoning and effort is not None:
        clamped = profile.clamp_effort(effort)
        if clamped is not None:
            payload["reasoning_effort"] = clamped

    response_format = _response_format(body, options)
    if response_format is not None:
        payload["response_format"] = response_format

    if tools.tools:
        payload["tools"] = tools.tools
        choice, parallel = translate_tool_choice(body.get("tool_choice"), namer=namer, offered=tools.offered)
        if choice is not None:
            payload["tool_choice"] = choice
        if parallel is not None:
            payload["parallel_tool_calls"] = parallel
    elif body.get("tool_choice") is not None and not isinstance(body.get("tool_choice"), dict):
        _fail("tool_choice: Input should be an object")

    user = _user_field(body)
    if user is not None and options.user_id_field != "none":
        payload[options.user_id_field] = user

    payload["stream"] = stream
    if stream:
        payload["stream_options"] = {"include_usage": True}

    return TranslatedRequest(
        payload=payload,
        tool_names=namer.name_map(),
        requested_model=model,
        stream=stream,
        stop_sequences=proxy_stops,
        warnings=warnings,
    )


__all__ = ["TranslatedRequest", "translate_request"]
