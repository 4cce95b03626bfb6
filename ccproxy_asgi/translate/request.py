"""Anthropic Messages request → OpenAI Chat Completions request (docs/protocol.md#request-top-level-fields,
#request-messages).

`translate_request` walks the body once, reading each field through `translate.fields` as it goes
(plain type checks instead of a model of the whole request: this runs on every call, with tens of KB of
tools and history). A malformed request is therefore refused here, with the field path in the message
and the same message the token count gives (`messages.2.content.0.text: Field required`); so are the
rules across fields (tool_use / tool_result pairing, unique tool names) and what the upstream cannot
take. No other exception escapes, whatever the JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ccproxy_asgi.translate._messages import _MessageTranslator, demote_later_system_messages
from ccproxy_asgi.translate._params import _requested_effort, _response_format, _system_text, _user_field
from ccproxy_asgi.translate.fields import (
    read_body,
    read_integer,
    read_max_tokens,
    read_messages,
    read_model,
    read_number,
    read_stop_sequences,
    read_stream,
    read_tool_choice,
)
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
    body = read_body(body)
    model = read_model(body)
    max_tokens = read_max_tokens(body)
    messages = read_messages(body, min_items=1)
    stream = read_stream(body)

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

    temperature = read_number(body, "temperature")
    top_p = read_number(body, "top_p")
    top_k = read_integer(body, "top_k")
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

    stops = read_stop_sequences(body)
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

    tool_choice = body.get("tool_choice")
    if tools.tools:
        payload["tools"] = tools.tools
        choice, parallel = translate_tool_choice(tool_choice, namer=namer, offered=tools.offered)
        if choice is not None:
            payload["tool_choice"] = choice
        if parallel is not None:
            payload["parallel_tool_calls"] = parallel
    elif tool_choice is not None:
        read_tool_choice(tool_choice)  # checked, though without tools there is nothing to choose

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
