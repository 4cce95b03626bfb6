"""What each part of an Anthropic request costs before tokenization.

One top-level unit at a time (the system prompt, one tool, one message, ...), a walker reads the unit
through `translate.fields`, the readers the translation uses, and collects a `Tally`: the texts to
tokenize, the PDFs to price, and the fixed costs. A malformed unit therefore raises the
`InvalidRequestError` that `/v1/messages` would answer with (`messages.3.content.0.text: Field required`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ccproxy_asgi.tokens.rules import (
    MESSAGE_OVERHEAD,
    SEPARATOR,
    TOOL_CALL_OVERHEAD,
    TOOL_OVERHEAD,
    CountingRules,
)
from ccproxy_asgi.translate.fields import (
    encode_json,
    read_assistant_block_type,
    read_document,
    read_image,
    read_message,
    read_mid_conv_system,
    read_output_config,
    read_output_format,
    read_redacted_thinking,
    read_search_result,
    read_source_item_type,
    read_text,
    read_text_blocks,
    read_thinking,
    read_thinking_block,
    read_tool,
    read_tool_choice,
    read_tool_reference,
    read_tool_result,
    read_tool_result_item_type,
    read_tool_use,
    read_user_block_type,
)

#: Compact JSON of a value, refused as the translation refuses it when it nests too deeply to encode.
json_bytes = encode_json


class Tally:
    """What one unit costs: fixed tokens, texts to tokenize, base64 PDFs to price by page."""

    __slots__ = ("fixed", "pdfs", "texts")

    def __init__(self) -> None:
        self.fixed = 0
        self.texts: list[str] = []
        self.pdfs: list[str] = []


def _without_cache_control(block: dict[str, Any]) -> dict[str, Any]:
    # cache_control is a caching hint, never model input; the copy is made only when it is there.
    if "cache_control" not in block:
        return block
    return {key: value for key, value in block.items() if key != "cache_control"}


def _as_json(block: dict[str, Any], path: str, tally: Tally) -> None:
    # Server-tool artifacts, search results and tool references reach the upstream, if at all, as a
    # text rendering of about the size of their JSON.
    tally.texts.append(json_bytes(_without_cache_control(block), path).decode())


def _text(block: dict[str, Any], path: str, rules: CountingRules, tally: Tally) -> None:
    tally.texts.append(read_text(block, path))


def _image(block: dict[str, Any], path: str, rules: CountingRules, tally: Tally) -> None:
    read_image(block, path)
    tally.fixed += rules.image_tokens


def _document(block: dict[str, Any], path: str, rules: CountingRules, tally: Tally) -> None:
    title, context, source = read_document(block, path)
    if title:
        tally.texts.append(title)
    if context:
        tally.texts.append(context)
    if source["type"] == "base64":
        tally.pdfs.append(source["data"])
    elif source["type"] == "text":
        tally.texts.append(source["data"])
    elif source["type"] == "content":
        content = source["content"]
        if isinstance(content, str):
            tally.texts.append(content)
            return
        for index, item in enumerate(content):
            item_path = f"{path}.source.content.{index}"
            if read_source_item_type(item, item_path) == "text":
                tally.texts.append(read_text(item, item_path))
            else:
                _image(item, item_path, rules, tally)
    else:  # url or file id: the content is out of sight
        tally.fixed += rules.document_tokens


def _tool_use(block: dict[str, Any], path: str, rules: CountingRules, tally: Tally) -> None:
    _, name, arguments = read_tool_use(block, path)
    tally.texts.append(name)
    tally.texts.append(json_bytes(arguments, f"{path}.input").decode())
    tally.fixed += TOOL_CALL_OVERHEAD


def _tool_result(block: dict[str, Any], path: str, rules: CountingRules, tally: Tally) -> None:
    # It becomes an OpenAI `tool` message of its own, whose `tool_call_id` is a field of that message.
    tool_use_id, _, content = read_tool_result(block, path)
    tally.fixed += MESSAGE_OVERHEAD
    if tool_use_id:
        tally.texts.append(tool_use_id)
    if isinstance(content, str):
        tally.texts.append(content)
    elif content is not None:
        for index, item in enumerate(content):
            item_path = f"{path}.content.{index}"
            kind = read_tool_result_item_type(item, item_path)
            if kind == "text":
                tally.texts.append(read_text(item, item_path))
            elif kind == "image":
                _image(item, item_path, rules, tally)
            elif kind == "document":
                _document(item, item_path, rules, tally)
            elif kind == "search_result":
                read_search_result(item, item_path)
                _as_json(item, item_path, tally)
            else:
                read_tool_reference(item, item_path)
                _as_json(item, item_path, tally)


def _thinking(block: dict[str, Any], path: str, rules: CountingRules, tally: Tally) -> None:
    text = read_thinking_block(block, path)
    if rules.count_thinking:
        tally.texts.append(text)


def _redacted_thinking(block: dict[str, Any], path: str, rules: CountingRules, tally: Tally) -> None:
    # Encrypted for Anthropic's servers; an OpenAI-compatible upstream never receives it.
    read_redacted_thinking(block, path)


def _mid_conv_system(block: dict[str, Any], path: str, rules: CountingRules, tally: Tally) -> None:
    texts = read_mid_conv_system(block, path)
    tally.fixed += MESSAGE_OVERHEAD
    tally.texts.extend(texts)


def _search_result(block: dict[str, Any], path: str, rules: CountingRules, tally: Tally) -> None:
    read_search_result(block, path)
    _as_json(block, path, tally)


def _server_artifact(block: dict[str, Any], path: str, rules: CountingRules, tally: Tally) -> None:
    _as_json(block, path, tally)


_Handler = Callable[[dict[str, Any], str, CountingRules, Tally], None]
_HANDLERS: dict[str, _Handler] = {
    "text": _text,
    "image": _image,
    "document": _document,
    "tool_use": _tool_use,
    "tool_result": _tool_result,
    "thinking": _thinking,
    "redacted_thinking": _redacted_thinking,
    "mid_conv_system": _mid_conv_system,
    "search_result": _search_result,
}


def walk_message(message: Any, path: str, rules: CountingRules, tally: Tally) -> None:
    role, content = read_message(message, path)
    tally.fixed += MESSAGE_OVERHEAD
    content_path = f"{path}.content"
    if isinstance(content, str):
        tally.texts.append(content)
    elif role == "system":
        tally.texts.extend(read_text_blocks(content, content_path))
    else:
        handlers = _HANDLERS
        block_type = read_user_block_type if role == "user" else read_assistant_block_type
        for index, block in enumerate(content):
            block_path = f"{content_path}.{index}"
            kind = block_type(block, block_path)
            handlers.get(kind, _server_artifact)(block, block_path, rules, tally)


def walk_system(system: Any, path: str, rules: CountingRules, tally: Tally) -> None:
    if isinstance(system, str):
        if system:
            tally.fixed += MESSAGE_OVERHEAD
            tally.texts.append(system)
        return
    texts = read_text_blocks(system, path)
    tally.texts.extend(texts)
    if texts:
        tally.fixed += MESSAGE_OVERHEAD + SEPARATOR * (len(texts) - 1)


def walk_tool(tool: Any, path: str, rules: CountingRules, tally: Tally) -> None:
    read_tool(tool, path)
    tally.fixed += TOOL_OVERHEAD
    tally.texts.append(json_bytes(_without_cache_control(tool), path).decode())


def walk_tool_choice(choice: Any, path: str, rules: CountingRules, tally: Tally) -> None:
    _, name, _ = read_tool_choice(choice)
    if name is not None:
        tally.texts.append(name)


def walk_output_config(config: Any, path: str, rules: CountingRules, tally: Tally) -> None:
    _, output_format = read_output_config(config)
    if output_format is not None:
        walk_output_format(output_format, f"{path}.format", rules, tally)


def walk_output_format(output_format: Any, path: str, rules: CountingRules, tally: Tally) -> None:
    # Becomes `response_format`, whose JSON schema the upstream renders into the prompt.
    read_output_format(output_format, path)
    tally.texts.append(json_bytes(output_format, path).decode())


def check_thinking(thinking: Any, path: str) -> None:
    """`thinking` only sets the upstream's reasoning effort: it is checked, and costs nothing."""
    read_thinking(thinking)


__all__ = [
    "Tally",
    "check_thinking",
    "json_bytes",
    "walk_message",
    "walk_output_config",
    "walk_output_format",
    "walk_system",
    "walk_tool",
    "walk_tool_choice",
]
