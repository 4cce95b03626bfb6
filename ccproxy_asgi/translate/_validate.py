"""Refusing a malformed Anthropic request: error helpers and readers for fields and content blocks.

Every failure raises `InvalidRequestError` with the field path, in the style of Anthropic's own messages
(`messages.2.content.0.type: Field required`).
"""

from __future__ import annotations

from typing import Any, NoReturn

from ccproxy_asgi.errors import InvalidRequestError
from ccproxy_asgi.jsonutil import TOO_DEEP, too_deep


def _fail(message: str) -> NoReturn:
    raise InvalidRequestError(message)


def _bad(path: str, value: Any, expected: str) -> NoReturn:
    """A missing (None) or mistyped value at `path`."""
    _fail(f"{path}: Field required" if value is None else f"{path}: Input should be {expected}")


def _check_nesting(value: Any, path: str) -> None:
    """Refuse a client value forwarded as JSON that nests deeper than `MAX_NESTING`: past some depth the
    upstream request can no longer be encoded, and that must be the client's 400, not the proxy's 500."""
    if too_deep(value):
        _fail(f"{path}: {TOO_DEEP}")


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
