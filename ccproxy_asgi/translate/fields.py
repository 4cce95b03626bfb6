"""Readers of an Anthropic Messages request: the one place that says what a well-formed request is.

The translation (`translate.request`) and the token counter (`tokens`) both read a request through
these functions, so the same malformed request is refused with the same message on `/v1/messages`
and `/v1/messages/count_tokens`. Each reader checks one part of the request and returns what it
holds, typed; a violation raises `InvalidRequestError` naming the field the way Anthropic does
(`messages.3.content.0.text: Field required`). Both callers are hot paths, so the readers of what every
request carries (messages, blocks, tools) are written flat: their lookups inline, paths built and
helpers called only once a check has failed.

What is checked here is the shape of each field: presence, type, the tag of a tagged object, which
blocks may appear in which role's message, and the nesting limit of JSON the proxy forwards as an
object (`jsonutil.MAX_NESTING`). Rules that relate fields to each other (tool_use / tool_result
pairing, unique tool names and tool-use ids, a `tool_choice` naming an offered tool, at least one
message) and what an OpenAI-compatible upstream cannot take (URL PDFs, file ids, server tools) are
the translation's: a count needs neither, and checking the pairing would cost a warm count a pass
over every block.

A missing field and a null one read alike ("Field required"), as optional fields treat null as absent.
"""

from __future__ import annotations

import json
from typing import Any, Literal, NoReturn, TypeAlias, TypedDict, cast

import orjson

from ccproxy_asgi.errors import InvalidRequestError
from ccproxy_asgi.jsonutil import TOO_DEEP, too_deep

Role = Literal["user", "assistant", "system"]
Effort = Literal["low", "medium", "high", "xhigh", "max"]
ThinkingType = Literal["enabled", "disabled", "adaptive", "between_tools"]
ToolChoiceType = Literal["auto", "any", "tool", "none"]

# --- failures ------------------------------------------------------------------------------------------

_OBJECT = "Input should be a valid dictionary or object"
# Tuples, not `str | list`: a union in `isinstance` is built anew on every call.
_STR_OR_LIST = (str, list)
_NUMBER = (int, float)


def fail(path: str, problem: str) -> NoReturn:
    """Refuse the request: `problem` with the field at `path`."""
    raise InvalidRequestError(f"{path}: {problem}")


def wrong(path: str, value: Any, expected: str) -> NoReturn:
    """Refuse a missing (None) or mistyped value at `path`; `expected` completes "Input should be"."""
    fail(path, "Field required" if value is None else f"Input should be {expected}")


def wrong_tag(path: str, kind: Any, expected: str) -> NoReturn:
    """Refuse a tagged object whose `type` names none of the `expected` tags ("'a', 'b'")."""
    if kind is None:
        fail(path, "Unable to extract tag using discriminator 'type'")
    fail(path, f"Input tag {kind!r} found using 'type' does not match any of the expected tags: {expected}")


def check_nesting(value: Any, path: str) -> None:
    """Refuse a client value forwarded as JSON that nests deeper than `MAX_NESTING`: past some depth
    the upstream request can no longer be encoded, and that must be the client's 400, not a 500."""
    if too_deep(value):
        fail(path, TOO_DEEP)


def encode_json(value: Any, path: str) -> bytes:
    """Compact JSON of `value`. The stdlib fallback covers what orjson refuses but JSON allows
    (integers beyond 64 bits, lone surrogates from a lenient parser); a value nested too deeply for
    orjson is refused rather than handed to the recursive stdlib."""
    try:
        return orjson.dumps(value)
    except TypeError:
        pass
    check_nesting(value, path)
    try:
        return json.dumps(value, ensure_ascii=True).encode()
    except (TypeError, ValueError, RecursionError):
        fail(path, "Input should be valid JSON")


# --- fields of an object -------------------------------------------------------------------------------


def string(obj: dict[str, Any], key: str, path: str) -> str:
    """The required string `obj[key]`; `path` is the path of `obj`."""
    value = obj.get(key)
    if isinstance(value, str):
        return value
    wrong(f"{path}.{key}", value, "a valid string")


def nonempty_string(obj: dict[str, Any], key: str, path: str) -> str:
    value = string(obj, key, path)
    if not value:
        fail(f"{path}.{key}", "String should have at least 1 character")
    return value


def optional_string(obj: dict[str, Any], key: str, path: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    fail(f"{path}.{key}", "Input should be a valid string")


def optional_bool(obj: dict[str, Any], key: str, path: str) -> bool | None:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    fail(f"{path}.{key}", "Input should be a valid boolean")


def dictionary(obj: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    """The required free-form object `obj[key]` (a tool input, a JSON schema)."""
    value = obj.get(key)
    if isinstance(value, dict):
        return value
    wrong(f"{path}.{key}", value, "a valid dictionary")


def _object(value: Any, path: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    fail(path, _OBJECT)


def _tag(value: Any, path: str) -> str:
    """The `type` of the tagged object `value`."""
    if not isinstance(value, dict):
        fail(path, _OBJECT)
    kind = value.get("type")
    if isinstance(kind, str):
        return kind
    if kind is None:
        wrong_tag(path, None, "")
    fail(f"{path}.type", "Input should be a valid string")


# --- top-level fields ----------------------------------------------------------------------------------


def read_body(body: Any) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    fail("body", _OBJECT)


def read_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str):
        wrong("model", model, "a valid string")
    if not model:
        fail("model", "String should have at least 1 character")
    return model


def read_max_tokens(body: dict[str, Any]) -> int:
    max_tokens = read_integer(body, "max_tokens")
    if max_tokens is None:
        fail("max_tokens", "Field required")
    if max_tokens < 1:
        fail(
            "max_tokens",
            "Input should be greater than or equal to 1 (max_tokens 0 pre-warms Anthropic's prompt cache; "
            "OpenAI-compatible upstreams cache automatically)",
        )
    return max_tokens


def read_messages(body: dict[str, Any], *, min_items: int = 0) -> list[Any]:
    """The `messages` list, unread; see `read_message`."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        wrong("messages", messages, "a valid list")
    if len(messages) < min_items:
        fail("messages", f"List should have at least {min_items} item after validation, not {len(messages)}")
    return messages


def read_stream(body: dict[str, Any]) -> bool:
    stream = body.get("stream")
    if stream is None or isinstance(stream, bool):
        return bool(stream)
    fail("stream", "Input should be a valid boolean")


def read_integer(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        fail(key, "Input should be a valid integer")
    return value


def read_number(body: dict[str, Any], key: str) -> float | int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        fail(key, "Input should be a valid number")
    return value


def read_stop_sequences(body: dict[str, Any]) -> tuple[str, ...]:
    """The stop sequences, without duplicates, in order."""
    value = body.get("stop_sequences")
    if value is None:
        return ()
    if not isinstance(value, list):
        fail("stop_sequences", "Input should be a valid list")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            fail(f"stop_sequences.{i}", "Input should be a valid string")
        if not item:
            fail(f"stop_sequences.{i}", "String should have at least 1 character")
    return tuple(dict.fromkeys(value))


def read_user_id(body: dict[str, Any]) -> str | None:
    """`metadata.user_id`, None when absent or empty."""
    metadata = body.get("metadata")
    if metadata is None:
        return None
    user_id = _object(metadata, "metadata").get("user_id")
    if user_id is None or user_id == "":
        return None
    if not isinstance(user_id, str):
        fail("metadata.user_id", "Input should be a valid string")
    return user_id


def read_text_blocks(value: Any, path: str) -> list[str]:
    """The texts of a string or a list of text blocks (the system prompt, system messages, the content
    of `mid_conv_system` and `search_result` blocks)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        fail(path, "Input should be a valid string or a list of text blocks")
    texts = []
    for i, block in enumerate(value):
        if isinstance(block, dict) and block.get("type") == "text":
            text = block.get("text")
            if isinstance(text, str):
                texts.append(text)
                continue
        block_path = f"{path}.{i}"
        kind = _tag(block, block_path)
        if kind != "text":
            wrong_tag(block_path, kind, "'text'")
        string(block, "text", block_path)  # raises: the text is missing or not a string
    return texts


_EFFORTS: tuple[Effort, ...] = ("low", "medium", "high", "xhigh", "max")
# A value of the wrong type among the tags: `in` on a tuple compares, so a list never raises.
_THINKING_TYPES: tuple[ThinkingType, ...] = ("enabled", "disabled", "adaptive", "between_tools")


def read_thinking(value: Any) -> tuple[ThinkingType, int | None]:
    """`thinking` (not None): its type, and `budget_tokens` when enabled."""
    thinking = _object(value, "thinking")
    kind = thinking.get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int):
            wrong("thinking.enabled.budget_tokens", budget, "a valid integer")
        return "enabled", budget
    if kind in _THINKING_TYPES:
        return kind, None
    wrong_tag("thinking", kind, "'enabled', 'disabled', 'adaptive', 'between_tools'")


def read_output_config(value: Any) -> tuple[Effort | None, Any]:
    """`output_config` (not None): its effort, and its `format` unread (see `read_output_format`)."""
    config = _object(value, "output_config")
    effort = config.get("effort")
    if effort is not None and effort not in _EFFORTS:
        fail("output_config.effort", "Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")
    return effort, config.get("format")


def read_output_format(value: Any, path: str) -> dict[str, Any]:
    """A structured-output format (not None) at `path` (`output_config.format`, or the beta's top-level
    `output_format`); returns its JSON schema."""
    output_format = _object(value, path)
    if output_format.get("type") != "json_schema":
        fail(f"{path}.type", "Input should be 'json_schema'")
    schema = dictionary(output_format, "schema", path)
    check_nesting(schema, f"{path}.schema")
    return schema


def output_format_of(body: dict[str, Any]) -> tuple[Any, str]:
    """The request's output format, unread, and its path: `output_config.format`, else the beta's
    top-level `output_format`, which is ignored when both are given."""
    config = body.get("output_config")
    if isinstance(config, dict) and config.get("format") is not None:
        return config["format"], "output_config.format"
    return body.get("output_format"), "output_format"


# --- tools ---------------------------------------------------------------------------------------------


def read_tools(body: dict[str, Any]) -> list[Any] | None:
    """The `tools` list, unread; see `read_tool`."""
    tools = body.get("tools")
    if tools is None or isinstance(tools, list):
        return tools
    fail("tools", "Input should be a valid list")


#: (type, name, description, input_schema, strict) of one tool. The type is `custom` for a tool the
#: client defines (no `type`, or `custom`), with its input_schema; else the versioned type of an
#: Anthropic-defined tool (`bash_20250124`, `web_search_20250305`, ...), whose other fields are None.
Tool: TypeAlias = tuple[str, str, str | None, dict[str, Any] | None, bool | None]


def read_tool(tool: Any, path: str) -> Tool:
    """One entry of `tools`."""
    if not isinstance(tool, dict):
        fail(path, _OBJECT)
    kind = tool.get("type")
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        if kind is not None and not isinstance(kind, str):
            fail(f"{path}.type", "Input should be a valid string")
        name = nonempty_string(tool, "name", path)  # raises
    if kind is not None and kind != "custom":
        if not isinstance(kind, str):
            fail(f"{path}.type", "Input should be a valid string")
        return kind, name, None, None, None
    schema = tool.get("input_schema")
    if not isinstance(schema, dict):
        wrong(f"{path}.input_schema", schema, "a valid dictionary")
    if schema.get("type", "object") != "object":
        fail(f"{path}.input_schema.type", "Input should be 'object'")
    check_nesting(schema, f"{path}.input_schema")
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        fail(f"{path}.description", "Input should be a valid string")
    strict = tool.get("strict")
    if strict is not None and not isinstance(strict, bool):
        fail(f"{path}.strict", "Input should be a valid boolean")
    return "custom", name, description, schema, strict


def read_tool_choice(value: Any) -> tuple[ToolChoiceType, str | None, bool | None]:
    """`tool_choice` (not None): (type, the tool's name for type `tool`, disable_parallel_tool_use)."""
    choice = _object(value, "tool_choice")
    disable = optional_bool(choice, "disable_parallel_tool_use", "tool_choice")
    kind = choice.get("type")
    if kind == "tool":
        return "tool", string(choice, "name", "tool_choice"), disable
    if kind == "auto" or kind == "any" or kind == "none":
        return kind, None, disable
    if kind is None:
        fail("tool_choice.type", "Field required")
    wrong_tag("tool_choice", kind, "'auto', 'any', 'tool', 'none'")


# --- messages ------------------------------------------------------------------------------------------


def read_message(message: Any, path: str) -> tuple[Role, str | list[Any]]:
    """(role, content) of one message. The content is a string or a list, whose items are read with
    `read_text_blocks` in a `system` message, else with `read_user_block_type` or
    `read_assistant_block_type` and the block's reader."""
    if not isinstance(message, dict):
        fail(path, _OBJECT)
    role = message.get("role")
    if role != "user" and role != "assistant" and role != "system":
        wrong(f"{path}.role", role, "'user', 'assistant' or 'system'")
    if "content" not in message:
        fail(f"{path}.content", "Field required")
    content = message["content"]
    if not isinstance(content, _STR_OR_LIST):
        if role == "system":
            read_text_blocks(content, f"{path}.content")
        fail(f"{path}.content", "Input should be a valid string or list")
    return role, content


#: Server-tool blocks in the history, produced by Anthropic's servers; translated as text, counted as JSON.
SERVER_ARTIFACTS = frozenset(
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
        *sorted(SERVER_ARTIFACTS),
    )
)
_BOTH_ROLES = frozenset({"text", "thinking", "redacted_thinking", *SERVER_ARTIFACTS})
_USER_ONLY = frozenset({"image", "document", "tool_result", "search_result", "mid_conv_system"})
_USER_BLOCKS = _BOTH_ROLES | _USER_ONLY
_ASSISTANT_BLOCKS = _BOTH_ROLES | {"tool_use"}


def read_user_block_type(block: Any, path: str) -> str:
    """The type of one content block of a user message."""
    kind = block.get("type") if isinstance(block, dict) else None
    if isinstance(kind, str) and kind in _USER_BLOCKS:
        return kind
    _misplaced_block(block, path)


def read_assistant_block_type(block: Any, path: str) -> str:
    """The type of one content block of an assistant message."""
    kind = block.get("type") if isinstance(block, dict) else None
    if isinstance(kind, str) and kind in _ASSISTANT_BLOCKS:
        return kind
    _misplaced_block(block, path)


def _misplaced_block(block: Any, path: str) -> NoReturn:
    kind = _tag(block, path)
    if kind == "tool_use":
        fail(path, "'tool_use' blocks are only allowed in assistant messages")
    if kind in _USER_ONLY:
        fail(path, f"'{kind}' blocks are not allowed in assistant messages")
    wrong_tag(path, kind, _BLOCK_TAGS)


def read_text(block: dict[str, Any], path: str) -> str:
    text = block.get("text")
    if isinstance(text, str):
        return text
    wrong(f"{path}.text", text, "a valid string")


def read_thinking_block(block: dict[str, Any], path: str) -> str:
    thinking = block.get("thinking")
    if isinstance(thinking, str):
        return thinking
    wrong(f"{path}.thinking", thinking, "a valid string")


def read_redacted_thinking(block: dict[str, Any], path: str) -> str:
    """The encrypted `data` of a redacted thinking block, meant for Anthropic's servers only."""
    data = block.get("data")
    if isinstance(data, str):
        return data
    wrong(f"{path}.data", data, "a valid string")


class Base64Source(TypedDict):
    type: Literal["base64"]
    media_type: str
    data: str


class URLSource(TypedDict):
    type: Literal["url"]
    url: str


class FileSource(TypedDict):
    type: Literal["file"]
    file_id: str


class TextSource(TypedDict):
    type: Literal["text"]
    data: str


class ContentSource(TypedDict):
    """Its `content` is a string or a list of text and image blocks: read it with `read_source_items`."""

    type: Literal["content"]
    content: str | list[Any]


ImageSource: TypeAlias = Base64Source | URLSource | FileSource
DocumentSource: TypeAlias = Base64Source | TextSource | ContentSource | URLSource | FileSource


def read_image(block: dict[str, Any], path: str) -> ImageSource:
    """The source of an image block, whatever its kind (a file id is well-formed, if not translatable)."""
    source = block.get("source")
    source_path = f"{path}.source"
    if not isinstance(source, dict):
        wrong(source_path, source, "a valid dictionary or object")
    kind = _tag(source, source_path)
    if kind == "base64":
        string(source, "media_type", source_path)
        string(source, "data", source_path)
    elif kind == "url":
        string(source, "url", source_path)
    elif kind == "file":
        string(source, "file_id", source_path)
    else:
        wrong_tag(source_path, kind, "'base64', 'url', 'file'")
    return cast(ImageSource, source)


def read_document(block: dict[str, Any], path: str) -> tuple[str | None, str | None, DocumentSource]:
    """(title, context, source) of a document block; a PDF's base64 source must say `application/pdf`."""
    source = block.get("source")
    source_path = f"{path}.source"
    if not isinstance(source, dict):
        wrong(source_path, source, "a valid dictionary or object")
    title = optional_string(block, "title", path)
    context = optional_string(block, "context", path)
    kind = _tag(source, source_path)
    if kind == "base64":
        if string(source, "media_type", source_path) != "application/pdf":
            fail(f"{source_path}.media_type", "Input should be 'application/pdf'")
        string(source, "data", source_path)
    elif kind == "text":
        string(source, "data", source_path)
    elif kind == "content":
        content = source.get("content")
        if not isinstance(content, _STR_OR_LIST):
            wrong(f"{source_path}.content", content, "a valid string or list")
    elif kind == "url":
        string(source, "url", source_path)
    elif kind == "file":
        string(source, "file_id", source_path)
    else:
        wrong_tag(source_path, kind, "'base64', 'text', 'content', 'url', 'file'")
    return title, context, cast(DocumentSource, source)


_SOURCE_ITEMS: tuple[Literal["text", "image"], ...] = ("text", "image")


def read_source_item_type(item: Any, path: str) -> Literal["text", "image"]:
    """The type of one block of a document's `content` source: text or image."""
    kind = _tag(item, path)
    if kind in _SOURCE_ITEMS:
        return kind
    wrong_tag(path, kind, "'text', 'image'")


def read_tool_use(block: dict[str, Any], path: str) -> tuple[str, str, dict[str, Any]]:
    """(id, name, input) of a tool_use block."""
    tool_id = block.get("id")
    name = block.get("name")
    arguments = block.get("input")
    if (
        isinstance(tool_id, str)
        and tool_id
        and isinstance(name, str)
        and name
        and isinstance(arguments, dict)
    ):
        return tool_id, name, arguments
    nonempty_string(block, "id", path)
    nonempty_string(block, "name", path)
    wrong(f"{path}.input", arguments, "a valid dictionary")


def read_tool_result(block: dict[str, Any], path: str) -> tuple[str, bool | None, Any]:
    """(tool_use_id, is_error, content) of a tool_result block; content is None, a string, or a list
    whose blocks `read_tool_result_item_type` reads."""
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str):
        wrong(f"{path}.tool_use_id", tool_use_id, "a valid string")
    is_error = block.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        fail(f"{path}.is_error", "Input should be a valid boolean")
    content = block.get("content")
    if content is not None and not isinstance(content, _STR_OR_LIST):
        fail(f"{path}.content", "Input should be a valid string or list")
    return tool_use_id, is_error, content


ToolResultItem = Literal["text", "image", "document", "search_result", "tool_reference"]
_TOOL_RESULT_ITEMS: tuple[ToolResultItem, ...] = (
    "text",
    "image",
    "document",
    "search_result",
    "tool_reference",
)


def read_tool_result_item_type(item: Any, path: str) -> ToolResultItem:
    kind = item.get("type") if isinstance(item, dict) else None
    if kind in _TOOL_RESULT_ITEMS:
        return kind  # type: ignore[no-any-return]
    kind = _tag(item, path)
    wrong_tag(path, kind, "'text', 'image', 'document', 'search_result', 'tool_reference'")


def read_tool_reference(item: dict[str, Any], path: str) -> str:
    """The tool name a tool_reference block (inside a tool result) points at."""
    return string(item, "tool_name", path)


def read_search_result(block: dict[str, Any], path: str) -> tuple[str, str, list[str]]:
    """(title, source, texts) of a search_result block; absent ones are empty."""
    title = optional_string(block, "title", path) or ""
    source = optional_string(block, "source", path) or ""
    content = block.get("content")
    texts = read_text_blocks(content, f"{path}.content") if content is not None else []
    return title, source, texts


def read_mid_conv_system(block: dict[str, Any], path: str) -> list[str]:
    """The texts of a system block inside a user message (Claude Code's mid-conversation system)."""
    if "content" not in block:
        fail(f"{path}.content", "Field required")
    return read_text_blocks(block["content"], f"{path}.content")


__all__ = [
    "SERVER_ARTIFACTS",
    "Base64Source",
    "ContentSource",
    "DocumentSource",
    "Effort",
    "FileSource",
    "ImageSource",
    "Role",
    "TextSource",
    "ThinkingType",
    "Tool",
    "ToolChoiceType",
    "ToolResultItem",
    "URLSource",
    "check_nesting",
    "dictionary",
    "encode_json",
    "fail",
    "nonempty_string",
    "optional_bool",
    "optional_string",
    "output_format_of",
    "read_assistant_block_type",
    "read_body",
    "read_document",
    "read_image",
    "read_integer",
    "read_max_tokens",
    "read_message",
    "read_messages",
    "read_mid_conv_system",
    "read_model",
    "read_number",
    "read_output_config",
    "read_output_format",
    "read_redacted_thinking",
    "read_search_result",
    "read_source_item_type",
    "read_stop_sequences",
    "read_stream",
    "read_text",
    "read_text_blocks",
    "read_thinking",
    "read_thinking_block",
    "read_tool",
    "read_tool_choice",
    "read_tool_reference",
    "read_tool_result",
    "read_tool_result_item_type",
    "read_tools",
    "read_user_block_type",
    "read_user_id",
    "string",
    "wrong",
    "wrong_tag",
]
