"""Shape checks of an Anthropic request, and what each part of it costs before tokenization.

One top-level unit at a time (the system prompt, one tool, one message, ...), a walker checks the shapes
the count depends on and collects a `Tally`: the texts to tokenize, the PDFs to price, and the fixed
costs. Every shape problem raises `InvalidRequestError` naming the field the way Anthropic does
(`messages.3.content.0.text: Field required`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NoReturn

import orjson

from ccproxy_asgi.errors import InvalidRequestError
from ccproxy_asgi.jsonutil import TOO_DEEP, too_deep
from ccproxy_asgi.tokens.rules import (
    MESSAGE_OVERHEAD,
    SEPARATOR,
    TOOL_CALL_OVERHEAD,
    TOOL_OVERHEAD,
    CountingRules,
)

# Blocks nest through tool_result and document content only; anything deeper is hostile.
_MAX_DEPTH = 4


class Tally:
    """What one unit costs: fixed tokens, texts to tokenize, base64 PDFs to price by page."""

    __slots__ = ("fixed", "pdfs", "texts")

    def __init__(self) -> None:
        self.fixed = 0
        self.texts: list[str] = []
        self.pdfs: list[str] = []


def fail(path: str, problem: str) -> NoReturn:
    raise InvalidRequestError(f"{path}: {problem}")


def json_bytes(value: Any, path: str) -> bytes:
    """Compact JSON of `value`; the stdlib fallback covers what orjson refuses but JSON allows
    (integers beyond 64 bits, lone surrogates from a lenient parser). A value nested too deeply for
    orjson is refused, as the translation refuses it, rather than counted by the recursive stdlib."""
    try:
        return orjson.dumps(value)
    except TypeError:
        pass
    if too_deep(value):
        fail(path, TOO_DEEP)
    try:
        return json.dumps(value, ensure_ascii=True).encode()
    except (TypeError, ValueError, RecursionError):
        fail(path, "Input should be valid JSON")


def _required(block: dict[str, Any], key: str, path: str) -> Any:
    if key not in block:
        fail(f"{path}.{key}", "Field required")
    return block[key]


def _required_str(block: dict[str, Any], key: str, path: str) -> str:
    value = _required(block, key, path)
    if not isinstance(value, str):
        fail(f"{path}.{key}", "Input should be a valid string")
    return value


def _optional_str(block: dict[str, Any], key: str, path: str) -> str | None:
    value = block.get(key)
    if value is not None and not isinstance(value, str):
        fail(f"{path}.{key}", "Input should be a valid string")
    return value


def _required_dict(block: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = _required(block, key, path)
    if not isinstance(value, dict):
        fail(f"{path}.{key}", "Input should be a valid dictionary")
    return value


def _without_cache_control(block: dict[str, Any]) -> dict[str, Any]:
    # cache_control is a caching hint, never model input; the copy is made only when it is there.
    if "cache_control" not in block:
        return block
    return {key: value for key, value in block.items() if key != "cache_control"}


def _content(value: Any, path: str, rules: CountingRules, tally: Tally, depth: int) -> None:
    """A `content` that may be a string or a list of blocks."""
    if isinstance(value, str):
        tally.texts.append(value)
    else:
        walk_blocks(value, path, rules, tally, depth)


def _text(block: dict[str, Any], path: str, rules: CountingRules, tally: Tally, depth: int) -> None:
    tally.texts.append(_required_str(block, "text", path))


def _image(block: dict[str, Any], path: str, rules: CountingRules, tally: Tally, depth: int) -> None:
    _required_dict(block, "source", path)
    tally.fixed += rules.image_tokens


def _document(block: dict[str, Any], path: str, rules: CountingRules, tally: Tally, depth: int) -> None:
    source = _required_dict(block, "source", path)
    for key in ("title", "context"):
        text = _optional_str(block, key, path)
        if text:
            tally.texts.append(text)
    source_path = f"{path}.source"
    kind = source.get("type")
    if kind == "base64":
        tally.pdfs.append(_required_str(source, "data", source_path))
    elif kind == "text":
        tally.texts.append(_required_str(source, "data", source_path))
    elif kind == "content":
        _content(_required(source, "content", source_path), f"{source_path}.content", rules, tally, depth + 1)
    else:  # url, file id, or a future source: the content is out of sight
        tally.fixed += rules.document_tokens


def _tool_use(block: dict[str, Any], path: str, rules: CountingRules, tally: Tally, depth: int) -> None:
    tally.texts.append(_required_str(block, "name", path))
    tally.texts.append(json_bytes(block.get("input", {}), f"{path}.input").decode())
    tally.fixed += TOOL_CALL_OVERHEAD


def _tool_result(block: dict[str, Any], path: str, rules: CountingRules, tally: Tally, depth: int) -> None:
    # It becomes an OpenAI `tool` message of its own, whose `tool_call_id` is a field of that message.
    tally.fixed += MESSAGE_OVERHEAD
    tool_use_id = _optional_str(block, "tool_use_id", path)
    if tool_use_id:
        tally.texts.append(tool_use_id)
    content = block.get("content")
    if content is not None:
        _content(content, f"{path}.content", rules, tally, depth + 1)


def _thinking(block: dict[str, Any], path: str, rules: CountingRules, tally: Tally, depth: int) -> None:
    text = _required_str(block, "thinking", path)
    if rules.count_thinking:
        tally.texts.append(text)


def _redacted_thinking(
    block: dict[str, Any], path: str, rules: CountingRules, tally: Tally, depth: int
) -> None:
    # Encrypted for Anthropic's servers; an OpenAI-compatible upstream never receives it.
    _required_str(block, "data", path)


def _mid_conv_system(
    block: dict[str, Any], path: str, rules: CountingRules, tally: Tally, depth: int
) -> None:
    tally.fixed += MESSAGE_OVERHEAD
    _content(_required(block, "content", path), f"{path}.content", rules, tally, depth + 1)


def _other(block: dict[str, Any], path: str, rules: CountingRules, tally: Tally, depth: int) -> None:
    # Server-tool artifacts, search results and future block types reach the upstream, if at all, as
    # a text rendering of about the size of their JSON.
    tally.texts.append(json_bytes(_without_cache_control(block), path).decode())


_Handler = Callable[[dict[str, Any], str, CountingRules, Tally, int], None]
_HANDLERS: dict[str, _Handler] = {
    "text": _text,
    "image": _image,
    "document": _document,
    "tool_use": _tool_use,
    "tool_result": _tool_result,
    "thinking": _thinking,
    "redacted_thinking": _redacted_thinking,
    "mid_conv_system": _mid_conv_system,
}


def walk_blocks(blocks: Any, path: str, rules: CountingRules, tally: Tally, depth: int) -> None:
    """A list of content blocks."""
    if not isinstance(blocks, list):
        fail(path, "Input should be a valid list")
    if depth > _MAX_DEPTH:
        fail(path, "content is nested too deeply")
    for index, block in enumerate(blocks):
        block_path = f"{path}.{index}"
        if not isinstance(block, dict):
            fail(block_path, "Input should be a valid dictionary")
        kind = _required_str(block, "type", block_path)
        _HANDLERS.get(kind, _other)(block, block_path, rules, tally, depth)


def walk_message(message: Any, path: str, rules: CountingRules, tally: Tally) -> None:
    if not isinstance(message, dict):
        fail(path, "Input should be a valid dictionary")
    _required_str(message, "role", path)
    tally.fixed += MESSAGE_OVERHEAD
    _content(_required(message, "content", path), f"{path}.content", rules, tally, 0)


def walk_system(system: Any, path: str, rules: CountingRules, tally: Tally) -> None:
    if isinstance(system, str):
        if system:
            tally.fixed += MESSAGE_OVERHEAD
            tally.texts.append(system)
        return
    if not isinstance(system, list):
        fail(path, "Input should be a valid string or list")
    for index, block in enumerate(system):
        block_path = f"{path}.{index}"
        if not isinstance(block, dict):
            fail(block_path, "Input should be a valid dictionary")
        if block.get("type") != "text":
            fail(f"{block_path}.type", "Input should be 'text'")
        tally.texts.append(_required_str(block, "text", block_path))
    if system:
        tally.fixed += MESSAGE_OVERHEAD + SEPARATOR * (len(system) - 1)


def walk_tool(tool: Any, path: str, rules: CountingRules, tally: Tally) -> None:
    if not isinstance(tool, dict):
        fail(path, "Input should be a valid dictionary")
    _required_str(tool, "name", path)
    _optional_str(tool, "description", path)
    schema = tool.get("input_schema")
    if schema is not None and not isinstance(schema, dict):
        fail(f"{path}.input_schema", "Input should be a valid dictionary")
    if too_deep(schema):  # the translation refuses it: the count must not accept it
        fail(f"{path}.input_schema", TOO_DEEP)
    tally.fixed += TOOL_OVERHEAD
    tally.texts.append(json_bytes(_without_cache_control(tool), path).decode())


def walk_tool_choice(choice: Any, path: str, rules: CountingRules, tally: Tally) -> None:
    if not isinstance(choice, dict):
        fail(path, "Input should be a valid dictionary")
    if _required_str(choice, "type", path) == "tool":
        tally.texts.append(_required_str(choice, "name", path))


def walk_output_config(config: Any, path: str, rules: CountingRules, tally: Tally) -> None:
    if not isinstance(config, dict):
        fail(path, "Input should be a valid dictionary")
    _optional_str(config, "effort", path)
    output_format = config.get("format")
    if output_format is not None:
        if not isinstance(output_format, dict):
            fail(f"{path}.format", "Input should be a valid dictionary")
        if too_deep(output_format.get("schema")):
            fail(f"{path}.format.schema", TOO_DEEP)
        # Becomes `response_format`, whose JSON schema the upstream renders into the prompt.
        tally.texts.append(json_bytes(output_format, f"{path}.format").decode())


def check_thinking(thinking: Any, path: str) -> None:
    """`thinking` only sets the upstream's reasoning effort: it is checked, and costs nothing."""
    if not isinstance(thinking, dict):
        fail(path, "Input should be a valid dictionary")
    _required_str(thinking, "type", path)
    budget = thinking.get("budget_tokens")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
        fail(f"{path}.budget_tokens", "Input should be a valid integer")


__all__ = [
    "Tally",
    "check_thinking",
    "fail",
    "json_bytes",
    "walk_blocks",
    "walk_message",
    "walk_output_config",
    "walk_system",
    "walk_tool",
    "walk_tool_choice",
]
