"""The Anthropic `messages` list → the OpenAI `messages` list (roles, tool_use/tool_result pairing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ccproxy_asgi.translate._content import (
    _document_parts,
    _image_part,
    _render_server_block,
    _search_result_text,
    join_texts,
)
from ccproxy_asgi.translate.fields import (
    Role,
    encode_json,
    fail,
    read_assistant_block_type,
    read_message,
    read_mid_conv_system,
    read_redacted_thinking,
    read_text,
    read_text_blocks,
    read_thinking_block,
    read_tool_reference,
    read_tool_result,
    read_tool_result_item_type,
    read_tool_use,
    read_user_block_type,
)
from ccproxy_asgi.translate.options import ModelProfile, TranslationOptions
from ccproxy_asgi.translate.tools import ToolNamer, upstream_tool_call_id

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
        roles: list[Role] = []
        contents: list[Any] = []
        for k, message in enumerate(messages):
            role, content = read_message(message, f"messages.{k}")
            roles.append(role)
            contents.append(content)
        k, n = 0, len(messages)
        while k < n:
            role = roles[k]
            if role == "system":
                self._system_message(contents[k], k)
                k += 1
                continue
            # A system message inside a run of user messages stays in place but does not end the run:
            # tool results after it still answer the assistant turn before it.
            same = ("user", "system") if role == "user" else ("assistant",)
            end = k + 1
            while end < n and roles[end] in same:
                end += 1
            if role == "assistant":
                self._assistant_turn(contents, k, end)
            else:
                self._user_turn(roles, contents, k, end)
            k = end
        self._require_no_pending()
        self._out.extend(self._deferred)
        return self._out

    def _require_no_pending(self) -> None:
        if self._pending:
            ids = ", ".join(self._pending)
            fail(
                f"messages.{self._pending_at}",
                f"`tool_use` ids were found without `tool_result` blocks immediately after: {ids}. Each "
                "`tool_use` block must have a corresponding `tool_result` block in the next message.",
            )

    def _system_message(self, content: Any, k: int) -> None:
        text = join_texts(read_text_blocks(content, f"messages.{k}.content"))
        if text:
            self._emit_system(text)

    def _emit_system(self, text: str) -> None:
        # Between an assistant's tool calls and their results a system message would separate them,
        # which OpenAI refuses; it waits until the results are out.
        target = self._deferred if self._pending else self._out
        target.append({"role": "system", "content": text})

    # assistant ------------------------------------------------------------------------------------

    def _assistant_turn(self, contents: list[Any], start: int, end: int) -> None:
        self._require_no_pending()
        pending: dict[str, str] = {}
        converted = [self._assistant_message(contents[k], k, pending) for k in range(start, end)]
        if any(m.get("tool_calls") for m in converted[:-1]):
            # OpenAI needs the results right after the message with the calls, and the next assistant
            # message would come between them; Anthropic merges consecutive same-role turns anyway.
            converted = [_merge_assistant(converted)]
        # A turn left with nothing to say (only thinking that is not echoed, an empty prefill) is skipped.
        self._out.extend(m for m in converted if len(m) > 2 or m["content"])
        self._pending = pending
        self._pending_at = start

    def _assistant_message(self, content: Any, k: int, pending: dict[str, str]) -> dict[str, Any]:
        if isinstance(content, str):
            return {"role": "assistant", "content": content}
        texts: list[str] = []
        reasoning: list[str] = []
        calls: list[dict[str, Any]] = []
        render = self._options.server_tool_artifacts == "text"
        for b, block in enumerate(content):
            path = f"messages.{k}.content.{b}"
            kind = read_assistant_block_type(block, path)
            if kind == "text":
                texts.append(read_text(block, path))
            elif kind == "tool_use":
                calls.append(self._tool_call(block, path, pending))
            elif kind == "thinking":
                thinking = read_thinking_block(block, path)
                if self._echo != "drop":
                    reasoning.append(thinking)
            elif kind == "redacted_thinking":
                read_redacted_thinking(block, path)
            elif render:  # a server-tool artifact
                texts.append(_render_server_block(block))
        text = join_texts(texts)
        # OpenAI: content may be null only when tool_calls are present.
        out: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            out["tool_calls"] = calls
        joined_reasoning = join_texts(reasoning)
        if joined_reasoning and self._echo != "drop":
            out[self._echo] = joined_reasoning
        return out

    def _tool_call(self, block: dict[str, Any], path: str, pending: dict[str, str]) -> dict[str, Any]:
        client_id, name, arguments = read_tool_use(block, path)
        if client_id in pending:
            fail(f"{path}.id", f"`tool_use` ids must be unique (duplicate: {client_id})")
        # Encoded on its own into a string, an input can nest as deep as the encoder goes; only past
        # that is it refused.
        arguments_json = encode_json(arguments, f"{path}.input").decode()
        upstream_id = self._call_id(client_id)
        pending[client_id] = upstream_id
        return {
            "id": upstream_id,
            "type": "function",
            "function": {"name": self._namer.upstream(name), "arguments": arguments_json},
        }

    # user -----------------------------------------------------------------------------------------

    def _user_turn(self, roles: list[Role], contents: list[Any], start: int, end: int) -> None:
        results: list[dict[str, Any]] = []
        attachments: list[dict[str, Any]] = []
        after: list[dict[str, Any]] = []
        render = self._options.server_tool_artifacts == "text"
        for k in range(start, end):
            content = contents[k]
            if roles[k] == "system":
                text = join_texts(read_text_blocks(content, f"messages.{k}.content"))
                if text:
                    after.append({"role": "system", "content": text})
                continue
            if isinstance(content, str):
                after.append({"role": "user", "content": content})
                continue
            parts: list[dict[str, Any]] = []
            for b, block in enumerate(content):
                path = f"messages.{k}.content.{b}"
                kind = read_user_block_type(block, path)
                if kind == "text":
                    parts.append({"type": "text", "text": read_text(block, path)})
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
                    text = join_texts(read_mid_conv_system(block, path))
                    if text:
                        after.append({"role": "system", "content": text})
                elif kind == "thinking":
                    read_thinking_block(block, path)
                elif kind == "redacted_thinking":
                    read_redacted_thinking(block, path)
                elif render:  # a server-tool artifact
                    parts.append({"type": "text", "text": _render_server_block(block)})
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
        client_id, is_error, content = read_tool_result(block, path)
        upstream_id = self._pending.pop(client_id, None)
        if upstream_id is None:
            fail(
                path,
                f"unexpected `tool_use_id` found in `tool_result` blocks: {client_id}. Each `tool_result` "
                "block must have a corresponding `tool_use` block in the previous message.",
            )
        texts: list[str] = []
        media: list[dict[str, Any]] = []
        if isinstance(content, str):
            texts.append(content)
        elif content is not None:
            for i, item in enumerate(content):
                item_path = f"{path}.content.{i}"
                kind = read_tool_result_item_type(item, item_path)
                if kind == "text":
                    texts.append(read_text(item, item_path))
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
                else:
                    texts.append(f"[tool reference: {read_tool_reference(item, item_path)}]")
        if media:
            noun = "attachment follows" if len(media) == 1 else f"{len(media)} attachments follow"
            texts.append(f"[{noun} in the next user message]")
            note = f"Attachments from the result of tool call {upstream_id}:"
            attachments.append({"type": "text", "text": note})
            attachments.extend(media)
        text = join_texts(texts)
        if is_error:
            text = self._options.tool_error_prefix + text
        return {"role": "tool", "tool_call_id": upstream_id, "content": text}


def _merge_assistant(messages: list[dict[str, Any]]) -> dict[str, Any]:
    text = join_texts([m["content"] for m in messages if m.get("content")])
    calls = [call for m in messages for call in m.get("tool_calls", ())]
    merged: dict[str, Any] = {"role": "assistant", "content": text or None, "tool_calls": calls}
    for key in ("reasoning_content", "reasoning"):
        reasoning = join_texts([m[key] for m in messages if m.get(key)])
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


def demote_later_system_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` with every system message but a leading one turned into user text.

    The text is wrapped in `<system-reminder>` (the form Claude Code itself uses when it cannot send a
    system message) and folded into the user turn just before it when there is one, so chat templates
    that insist on alternating roles still get them.
    """
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if message["role"] != "system" or index == 0:
            out.append(message)
            continue
        reminder = {"type": "text", "text": f"<system-reminder>\n{message['content']}\n</system-reminder>"}
        previous = out[-1] if out else None
        if previous is not None and previous["role"] == "user":
            content = previous["content"]
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
            out[-1] = {**previous, "content": [*parts, reminder]}
        else:
            out.append({"role": "user", "content": [reminder]})
    return out
