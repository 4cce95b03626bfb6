"""Anthropic Messages request → OpenAI Chat Completions request (PROTOCOL.md §1, §2).

`translate_request` walks the body once, with plain type checks instead of a model of the whole
request (this runs on every call, with tens of KB of tools and history), and is therefore also where a
malformed request is refused: any schema violation raises `InvalidRequestError` with the field path,
in the style of Anthropic's own messages (`messages.2.content.0.type: Field required`). No other
exception escapes, whatever the JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ccproxy_asgi import jsonutil
from ccproxy_asgi.errors import InvalidRequestError
from ccproxy_asgi.translate.common import ToolNameMap
from ccproxy_asgi.translate.options import Effort, ModelProfile, TranslationOptions
from ccproxy_asgi.translate.tools import (
    ToolNamer,
    TranslatedTools,
    strict_compatible,
    translate_tool_choice,
    translate_tools,
    upstream_tool_call_id,
)


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


def _fail(message: str) -> NoReturn:
    raise InvalidRequestError(message)


def _bad(path: str, value: Any, expected: str) -> NoReturn:
    """A missing (None) or mistyped value at `path`."""
    _fail(f"{path}: Field required" if value is None else f"{path}: Input should be {expected}")


def _bad_tag(path: str, kind: Any, expected: str) -> NoReturn:
    _fail(
        f"{path}: Input tag {kind!r} found using 'type' does not match any of the expected tags: {expected}"
    )


_SERVER_ARTIFACTS = frozenset(
    {
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "container_upload",
    }
)
_BLOCK_TAGS = ", ".join(
    f"'{t}'"
    for t in (
        "text",
        "image",
        "document",
        "search_result",
        "thinking",
        "redacted_thinking",
        "tool_use",
        "tool_result",
        "mid_conv_system",
        *sorted(_SERVER_ARTIFACTS),
    )
)
_ANTHROPIC_EFFORTS = ("low", "medium", "high", "xhigh", "max")
_THINKING_TAGS = "'enabled', 'disabled', 'adaptive', 'between_tools'"


def _block_type(block: Any, path: str) -> str:
    if not isinstance(block, dict):
        _fail(f"{path}: Input should be a valid dictionary or object")
    kind = block.get("type")
    if isinstance(kind, str):
        return kind
    if kind is None:
        _fail(f"{path}: Unable to extract tag using discriminator 'type'")
    _fail(f"{path}.type: Input should be a valid string")


def _unknown_block(kind: str, path: str) -> NoReturn:
    _bad_tag(path, kind, _BLOCK_TAGS)


def _string(container: dict[str, Any], key: str, path: str) -> str:
    value = container.get(key)
    if isinstance(value, str):
        return value
    _bad(f"{path}.{key}", value, "a valid string")


def _optional_string(container: dict[str, Any], key: str, path: str) -> str | None:
    value = container.get(key)
    if value is None or isinstance(value, str):
        return value
    _fail(f"{path}.{key}: Input should be a valid string")


def _text_blocks(value: Any, path: str) -> list[str]:
    """Text of a string or a list of text blocks (system prompts, system messages, documents)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        _fail(f"{path}: Input should be a valid string or a list of text blocks")
    texts = []
    for i, block in enumerate(value):
        block_path = f"{path}.{i}"
        kind = _block_type(block, block_path)
        if kind != "text":
            _bad_tag(block_path, kind, "'text'")
        texts.append(_string(block, "text", block_path))
    return texts


def _join(texts: list[str]) -> str:
    return "\n\n".join(t for t in texts if t)


# --- content blocks → OpenAI parts ---------------------------------------------------------------------


def _image_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        _bad(f"{path}.source", source, "a valid dictionary or object")
    kind = source.get("type")
    if kind == "base64":
        media_type = _string(source, "media_type", f"{path}.source")
        url = f"data:{media_type};base64,{_string(source, 'data', f'{path}.source')}"
    elif kind == "url":
        url = _string(source, "url", f"{path}.source")
    elif kind == "file":
        _fail(
            f"{path}.source: file_id sources (Anthropic Files API) are not supported by this proxy; "
            "send the image as base64 or URL"
        )
    else:
        _bad_tag(f"{path}.source", kind, "'base64', 'url'")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_parts(block: dict[str, Any], path: str) -> list[dict[str, Any]]:
    source = block.get("source")
    if not isinstance(source, dict):
        _bad(f"{path}.source", source, "a valid dictionary or object")
    title = _optional_string(block, "title", path)
    context = _optional_string(block, "context", path)
    kind = source.get("type")
    source_path = f"{path}.source"
    if kind == "base64":
        media_type = _string(source, "media_type", source_path)
        if media_type != "application/pdf":
            _fail(f"{source_path}.media_type: Input should be 'application/pdf'")
        filename = title or "document.pdf"
        if not filename.lower().endswith(".pdf"):
            # OpenAI infers the file type from the name's extension.
            filename += ".pdf"
        data_url = f"data:application/pdf;base64,{_string(source, 'data', source_path)}"
        return [{"type": "file", "file": {"filename": filename, "file_data": data_url}}]
    if kind == "url":
        _fail(
            f"{source_path}: URL PDF documents are not supported: OpenAI Chat Completions only takes PDFs "
            "inline; download the PDF and send it as a base64 source"
        )
    if kind == "file":
        _fail(
            f"{source_path}: file_id sources (Anthropic Files API) are not supported by this proxy; "
            "send the document as base64 or text"
        )
    header = "\n".join(
        line
        for line in (f"Document: {title}" if title else "", f"Context: {context}" if context else "")
        if line
    )
    parts: list[dict[str, Any]] = []
    texts: list[str] = []
    if kind == "text":
        texts.append(_string(source, "data", source_path))
    elif kind == "content":
        content = source.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for i, item in enumerate(content):
                item_path = f"{source_path}.content.{i}"
                item_kind = _block_type(item, item_path)
                if item_kind == "text":
                    texts.append(_string(item, "text", item_path))
                elif item_kind == "image":
                    parts.append(_image_part(item, item_path))
                else:
                    _bad_tag(item_path, item_kind, "'text', 'image'")
        else:
            _bad(f"{source_path}.content", content, "a valid string or list")
    else:
        _bad_tag(source_path, kind, "'base64', 'text', 'content', 'url'")
    text = _join([header, *texts])
    return [{"type": "text", "text": text}, *parts] if text else parts


def _search_result_text(block: dict[str, Any], path: str) -> str:
    title = _optional_string(block, "title", path) or ""
    source = _optional_string(block, "source", path) or ""
    content = block.get("content")
    texts = _text_blocks(content, f"{path}.content") if content is not None else []
    head = "\n".join(
        line
        for line in (
            f"Search result: {title}" if title else "Search result",
            f"Source: {source}" if source else "",
        )
        if line
    )
    return _join([head, *texts])


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def _render_server_block(block: dict[str, Any]) -> str:
    """A text rendering of a server-tool artifact for a model that never saw Anthropic's server tools.

    Tolerant by design: these blocks are history the upstream can only read, so any shape renders to
    something rather than failing the request.
    """
    kind = block.get("type")
    if kind == "server_tool_use":
        try:
            arguments = jsonutil.dumps_str(block.get("input"))
        except (TypeError, ValueError):
            arguments = "{}"
        return f"[server tool call {block.get('name')!s}: {arguments}]"
    if kind == "container_upload":
        return f"[file uploaded to the code-execution container: {block.get('file_id')!s}]"
    content = block.get("content")
    lines = [f"[{kind}]"]
    if isinstance(content, list):
        for item in content:
            title, url = _get(item, "title"), _get(item, "url")
            if isinstance(url, str):
                lines.append(f"- {title} <{url}>" if isinstance(title, str) else f"- <{url}>")
            elif isinstance(_get(item, "tool_name"), str):
                lines.append(f"- tool {_get(item, 'tool_name')}")
    elif isinstance(content, dict):
        for key in ("url", "error_code", "return_code", "stdout", "stderr"):
            value = content.get(key)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
                lines.append(f"{key}: {value}")
        document = content.get("content")
        data = _get(_get(document, "source"), "data")
        if isinstance(data, str) and _get(_get(document, "source"), "type") == "text":
            lines.append(data)
    return "\n".join(lines)


# --- messages ------------------------------------------------------------------------------------------


class _MessageTranslator:
    """Builds the OpenAI `messages` list; one instance per request.

    Tool pairing: the tool_use ids of an assistant turn stay `pending` until the following user turn
    answers them. Its tool results become `role:"tool"` messages emitted first (OpenAI wants them right
    after the assistant's `tool_calls`), then any system message that arrived in between, then images
    and PDFs that were inside tool results (tool messages carry text only), then the user's own content.
    """

    __slots__ = ("_call_id", "_deferred", "_echo", "_namer", "_options", "_out", "_pending", "_pending_at")

    def __init__(self, namer: ToolNamer, profile: ModelProfile, options: TranslationOptions) -> None:
        self._namer = namer
        self._options = options
        self._echo = profile.reasoning_echo
        style = profile.tool_call_ids
        self._call_id: Callable[[str], str] = lambda client_id: upstream_tool_call_id(client_id, style)
        self._out: list[dict[str, Any]] = []
        self._pending: dict[str, str] = {}
        self._pending_at = 0
        self._deferred: list[dict[str, Any]] = []

    def translate(self, messages: list[Any]) -> list[dict[str, Any]]:
        roles = []
        for k, message in enumerate(messages):
            if not isinstance(message, dict):
                _fail(f"messages.{k}: Input should be a valid dictionary or object")
            role = message.get("role")
            if role not in ("user", "assistant", "system"):
                _bad(f"messages.{k}.role", role, "'user', 'assistant' or 'system'")
            if "content" not in message:
                _fail(f"messages.{k}.content: Field required")
            roles.append(role)
        k, n = 0, len(messages)
        while k < n:
            role = roles[k]
            if role == "system":
                self._system_message(messages[k], k)
                k += 1
                continue
            # A system message inside a run of user messages stays in place but does not end the run:
            # tool results after it still answer the assistant turn before it.
            same = ("user", "system") if role == "user" else ("assistant",)
            end = k + 1
            while end < n and roles[end] in same:
                end += 1
            if role == "assistant":
                self._assistant_turn(messages, k, end)
            else:
                self._user_turn(messages, k, end)
            k = end
        self._require_no_pending()
        self._out.extend(self._deferred)
        return self._out

    def _require_no_pending(self) -> None:
        if self._pending:
            ids = ", ".join(self._pending)
            _fail(
                f"messages.{self._pending_at}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {ids}. Each `tool_use` block must have a corresponding `tool_result` "
                "block in the next message."
            )

    def _system_message(self, message: dict[str, Any], k: int) -> None:
        text = _join(_text_blocks(message["content"], f"messages.{k}.content"))
        if text:
            self._emit_system(text)

    def _emit_system(self, text: str) -> None:
        # Between an assistant's tool calls and their results a system message would separate them,
        # which OpenAI refuses; it waits until the results are out.
        target = self._deferred if self._pending else self._out
        target.append({"role": "system", "content": text})

    # assistant ------------------------------------------------------------------------------------

    def _assistant_turn(self, messages: list[Any], start: int, end: int) -> None:
        self._require_no_pending()
        pending: dict[str, str] = {}
        converted = [self._assistant_message(messages[k], k, pending) for k in range(start, end)]
        if any(m.get("tool_calls") for m in converted[:-1]):
            # OpenAI needs the results right after the message with the calls, and the next assistant
            # message would come between them; Anthropic merges consecutive same-role turns anyway.
            converted = [_merge_assistant(converted)]
        # A turn left with nothing to say (only thinking that is not echoed, an empty prefill) is skipped.
        self._out.extend(m for m in converted if len(m) > 2 or m["content"])
        self._pending = pending
        self._pending_at = start

    def _assistant_message(self, message: dict[str, Any], k: int, pending: dict[str, str]) -> dict[str, Any]:
        content = message["content"]
        if isinstance(content, str):
            return {"role": "assistant", "content": content}
        if not isinstance(content, list):
            _fail(f"messages.{k}.content: Input should be a valid string or list")
        texts: list[str] = []
        reasoning: list[str] = []
        calls: list[dict[str, Any]] = []
        render = self._options.server_tool_artifacts == "text"
        for b, block in enumerate(content):
            path = f"messages.{k}.content.{b}"
            kind = _block_type(block, path)
            if kind == "text":
                texts.append(_string(block, "text", path))
            elif kind == "tool_use":
                calls.append(self._tool_call(block, path, pending))
            elif kind == "thinking":
                thinking = _string(block, "thinking", path)
                if self._echo != "drop":
                    reasoning.append(thinking)
            elif kind == "redacted_thinking":
                continue
            elif kind in _SERVER_ARTIFACTS:
                if render:
                    texts.append(_render_server_block(block))
            elif kind in ("image", "document", "tool_result", "search_result", "mid_conv_system"):
                _fail(f"{path}: '{kind}' blocks are not allowed in assistant messages")
            else:
                _unknown_block(kind, path)
        text = _join(texts)
        # OpenAI: content may be null only when tool_calls are present.
        out: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            out["tool_calls"] = calls
        joined_reasoning = _join(reasoning)
        if joined_reasoning and self._echo != "drop":
            out[self._echo] = joined_reasoning
        return out

    def _tool_call(self, block: dict[str, Any], path: str, pending: dict[str, str]) -> dict[str, Any]:
        client_id = _string(block, "id", path)
        name = _string(block, "name", path)
        if not client_id:
            _fail(f"{path}.id: String should have at least 1 character")
        if not name:
            _fail(f"{path}.name: String should have at least 1 character")
        arguments = block.get("input")
        if not isinstance(arguments, dict):
            _bad(f"{path}.input", arguments, "a valid dictionary")
        if client_id in pending:
            _fail(f"{path}.id: `tool_use` ids must be unique (duplicate: {client_id})")
        try:
            arguments_json = jsonutil.dumps_str(arguments)
        except (TypeError, ValueError) as exc:
            _fail(f"{path}.input: cannot be encoded as JSON ({exc})")
        upstream_id = self._call_id(client_id)
        pending[client_id] = upstream_id
        return {
            "id": upstream_id,
            "type": "function",
            "function": {"name": self._namer.upstream(name), "arguments": arguments_json},
        }

    # user -----------------------------------------------------------------------------------------

    def _user_turn(self, messages: list[Any], start: int, end: int) -> None:
        results: list[dict[str, Any]] = []
        attachments: list[dict[str, Any]] = []
        after: list[dict[str, Any]] = []
        render = self._options.server_tool_artifacts == "text"
        for k in range(start, end):
            message = messages[k]
            content = message["content"]
            if message["role"] == "system":
                text = _join(_text_blocks(content, f"messages.{k}.content"))
                if text:
                    after.append({"role": "system", "content": text})
                continue
            if isinstance(content, str):
                after.append({"role": "user", "content": content})
                continue
            if not isinstance(content, list):
                _fail(f"messages.{k}.content: Input should be a valid string or list")
            parts: list[dict[str, Any]] = []
            for b, block in enumerate(content):
                path = f"messages.{k}.content.{b}"
                kind = _block_type(block, path)
                if kind == "text":
                    parts.append({"type": "text", "text": _string(block, "text", path)})
                elif kind == "tool_result":
                    results.append(self._tool_result(block, path, attachments))
                elif kind == "image":
                    parts.append(_image_part(block, path))
                elif kind == "document":
                    parts.extend(_document_parts(block, path))
                elif kind == "search_result":
                    parts.append({"type": "text", "text": _search_result_text(block, path)})
                elif kind == "mid_conv_system":
                    _flush_user(parts, after)
                    text = _join(_text_blocks(block.get("content"), f"{path}.content"))
                    if text:
                        after.append({"role": "system", "content": text})
                elif kind in ("thinking", "redacted_thinking"):
                    continue
                elif kind in _SERVER_ARTIFACTS:
                    if render:
                        parts.append({"type": "text", "text": _render_server_block(block)})
                elif kind == "tool_use":
                    _fail(f"{path}: 'tool_use' blocks are only allowed in assistant messages")
                else:
                    _unknown_block(kind, path)
            _flush_user(parts, after)
        self._require_no_pending()
        self._out.extend(results)
        self._out.extend(self._deferred)
        self._deferred.clear()
        if attachments:
            self._out.append({"role": "user", "content": attachments})
        self._out.extend(after)

    def _tool_result(
        self, block: dict[str, Any], path: str, attachments: list[dict[str, Any]]
    ) -> dict[str, Any]:
        client_id = _string(block, "tool_use_id", path)
        upstream_id = self._pending.pop(client_id, None)
        if upstream_id is None:
            _fail(
                f"{path}: unexpected `tool_use_id` found in `tool_result` blocks: {client_id}. Each "
                "`tool_result` block must have a corresponding `tool_use` block in the previous message."
            )
        is_error = block.get("is_error")
        if is_error is not None and not isinstance(is_error, bool):
            _fail(f"{path}.is_error: Input should be a valid boolean")
        content = block.get("content")
        texts: list[str] = []
        media: list[dict[str, Any]] = []
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for i, item in enumerate(content):
                item_path = f"{path}.content.{i}"
                kind = _block_type(item, item_path)
                if kind == "text":
                    texts.append(_string(item, "text", item_path))
                elif kind == "image":
                    media.append(_image_part(item, item_path))
                elif kind == "document":
                    for part in _document_parts(item, item_path):
                        if part["type"] == "text":
                            texts.append(part["text"])
                        else:
                            media.append(part)
                elif kind == "search_result":
                    texts.append(_search_result_text(item, item_path))
                elif kind == "tool_reference":
                    texts.append(f"[tool reference: {_string(item, 'tool_name', item_path)}]")
                else:
                    _bad_tag(
                        item_path, kind, "'text', 'image', 'document', 'search_result', 'tool_reference'"
                    )
        elif content is not None:
            _fail(f"{path}.content: Input should be a valid string or list")
        if media:
            noun = "attachment follows" if len(media) == 1 else f"{len(media)} attachments follow"
            texts.append(f"[{noun} in the next user message]")
            note = f"Attachments from the result of tool call {upstream_id}:"
            attachments.append({"type": "text", "text": note})
            attachments.extend(media)
        text = _join(texts)
        if is_error:
            text = self._options.tool_error_prefix + text
        return {"role": "tool", "tool_call_id": upstream_id, "content": text}


def _merge_assistant(messages: list[dict[str, Any]]) -> dict[str, Any]:
    text = _join([m["content"] for m in messages if m.get("content")])
    calls = [call for m in messages for call in m.get("tool_calls", ())]
    merged: dict[str, Any] = {"role": "assistant", "content": text or None, "tool_calls": calls}
    for key in ("reasoning_content", "reasoning"):
        reasoning = _join([m[key] for m in messages if m.get(key)])
        if reasoning:
            merged[key] = reasoning
    return merged


def _flush_user(parts: list[dict[str, Any]], into: list[dict[str, Any]]) -> None:
    if not parts:
        return
    if len(parts) == 1 and parts[0]["type"] == "text":
        into.append({"role": "user", "content": parts[0]["text"]})
    else:
        into.append({"role": "user", "content": list(parts)})
    parts.clear()


# --- top-level fields ----------------------------------------------------------------------------------


def _int_field(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(f"{key}: Input should be a valid integer")
    return value


def _number_field(body: dict[str, Any], key: str) -> float | int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(f"{key}: Input should be a valid number")
    return value


def _object_field(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None or isinstance(value, dict):
        return value
    _fail(f"{key}: Input should be a valid dictionary or object")


def _stop_sequences(body: dict[str, Any]) -> tuple[str, ...]:
    value = body.get("stop_sequences")
    if value is None:
        return ()
    if not isinstance(value, list):
        _fail("stop_sequences: Input should be a valid list")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            _fail(f"stop_sequences.{i}: Input should be a valid string")
        if not item:
            _fail(f"stop_sequences.{i}: String should have at least 1 character")
    return tuple(dict.fromkeys(value))


def _requested_effort(
    body: dict[str, Any], profile: ModelProfile, options: TranslationOptions
) -> Effort | None:
    output_config = _object_field(body, "output_config") or {}
    effort: Effort | None = output_config.get("effort")
    if effort is not None and effort not in _ANTHROPIC_EFFORTS:
        _fail("output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")
    thinking = _object_field(body, "thinking")
    if thinking is None:
        return effort
    kind = thinking.get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int):
            _bad("thinking.enabled.budget_tokens", budget, "a valid integer")
        # An explicit effort says what the client wants more directly than a token budget does.
        return effort or options.effort_thresholds.effort_for_budget(budget)
    if kind in ("adaptive", "between_tools"):
        return effort or options.adaptive_effort
    if kind == "disabled":
        # "none" only where the model can switch reasoning off; else the upstream's default applies.
        return "none" if "none" in profile.efforts else None
    if kind is None:
        _fail("thinking: Unable to extract tag using discriminator 'type'")
    _bad_tag("thinking", kind, _THINKING_TAGS)


def _response_format(body: dict[str, Any], options: TranslationOptions) -> dict[str, Any] | None:
    output_config = body.get("output_config")
    fmt = output_config.get("format") if isinstance(output_config, dict) else None
    path = "output_config.format"
    if fmt is None:
        # The structured-outputs beta used a top-level `output_format` before `output_config` existed.
        fmt, path = body.get("output_format"), "output_format"
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        _fail(f"{path}: Input should be a valid dictionary or object")
    if fmt.get("type") != "json_schema":
        _fail(f"{path}.type: Input should be 'json_schema'")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        _bad(f"{path}.schema", schema, "a valid dictionary")
    strict = strict_compatible(schema)
    return {
        "type": "json_schema",
        "json_schema": {"name": options.response_format_name, "schema": schema, "strict": strict},
    }


def _user_field(body: dict[str, Any]) -> str | None:
    metadata = _object_field(body, "metadata")
    if metadata is None:
        return None
    user_id = metadata.get("user_id")
    if user_id is None or user_id == "":
        return None
    if not isinstance(user_id, str):
        _fail("metadata.user_id: Input should be a valid string")
    if len(user_id) <= 64:
        return user_id
    # OpenAI takes at most 64 characters. Claude Code sends a JSON document whose `session_id` changes
    # every session: only the parts that identify the user (device, account) go into the hash, so it
    # stays stable per user, which is all the field is for.
    identity = user_id
    if user_id.startswith("{"):
        try:
            parsed = jsonutil.loads(user_id)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and ("device_id" in parsed or "account_uuid" in parsed):
            identity = f"{parsed.get('account_uuid') or ''}|{parsed.get('device_id') or ''}"
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()


# Claude Code opens its system prompt with an Anthropic billing line whose suffix changes with every
# conversation; it means nothing to another provider and would defeat the upstream's prefix caching.
_BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"


def _system_text(body: dict[str, Any], tools: TranslatedTools) -> str:
    system = body.get("system")
    blocks = _text_blocks(system, "system") if system is not None else []
    text = _join([block for block in blocks if not block.startswith(_BILLING_HEADER_PREFIX)])
    if tools.long_descriptions:
        sections = [f"## Tool {name}\n{description}" for name, description in tools.long_descriptions]
        appendix = (
            "# Full tool descriptions\nThese tools' descriptions were shortened in the tool list; "
            "here they are in full.\n\n" + "\n\n".join(sections)
        )
        text = _join([text, appendix])
    return text


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
