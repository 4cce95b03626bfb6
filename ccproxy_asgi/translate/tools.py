"""Anthropic tools, tool_choice, tool names and tool-call ids → their OpenAI Chat Completions forms.

docs/protocol.md#tools-and-tool-choice and #tool-names-and-tool-call-ids. Names and ids are rewritten
by pure functions of the original
string, so the same request always translates the same way (upstream prompt caches stay warm) and a
rewritten id is identical wherever it appears (`tool_calls[].id` and `tool_call_id`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ccproxy_asgi.translate.fields import fail, read_tool, read_tool_choice, read_tools
from ccproxy_asgi.translate.identifiers import ToolNameMap
from ccproxy_asgi.translate.options import ModelProfile, ToolCallIdStyle, TranslationOptions

logger = logging.getLogger(__name__)

_VALID_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INVALID_NAME_RUN = re.compile(r"[^A-Za-z0-9_-]+")
# OpenAI documents no alphabet for tool-call ids; the function-name one is safe everywhere we know of.
_VALID_CALL_ID = _VALID_NAME
_ALNUM9 = re.compile(r"[A-Za-z0-9]{9}")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_NAME_PREFIX_MAX = 55  # 55 + "_" + 8 hex = 64, OpenAI's limit


def _sha256(text: str) -> bytes:
    # surrogatepass: a str decoded by a lenient JSON parser may hold lone surrogates; hashing must not fail.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def is_valid_openai_name(name: str) -> bool:
    """Whether OpenAI accepts `name` as a function name as it is."""
    return _VALID_NAME.fullmatch(name) is not None


def rewrite_tool_name(name: str, hash_hex_chars: int = 8) -> str:
    """A readable OpenAI-valid stand-in for `name`: its valid characters (runs of others become `_`),
    cut to fit, then `_` and a short sha256 of the whole original name."""
    digest = _sha256(name).hex()[:hash_hex_chars]
    prefix = _INVALID_NAME_RUN.sub("_", name).strip("_") or "tool"
    return f"{prefix[: 64 - 1 - len(digest)]}_{digest}"


class ToolNamer:
    """Assigns upstream names to client tool names for one request and records the rewrites.

    Valid names are kept. Others get `rewrite_tool_name`; if that ever equals a name already in use, a
    longer hash (then a counter) makes it unique, so the mapping back is never ambiguous.
    """

    __slots__ = ("_to_client", "_to_upstream")

    def __init__(self) -> None:
        self._to_upstream: dict[str, str] = {}
        self._to_client: dict[str, str] = {}

    def upstream(self, name: str) -> str:
        """The upstream name for client tool name `name` (the same one every time in a request)."""
        known = self._to_upstream.get(name)
        if known is not None:
            return known
        candidate = name if is_valid_openai_name(name) else rewrite_tool_name(name)
        if candidate in self._to_client:
            candidate = rewrite_tool_name(name, 16)
            counter = 1
            while candidate in self._to_client:
                candidate = rewrite_tool_name(name, 16)[: 64 - 1 - len(str(counter))] + f"_{counter}"
                counter += 1
        self._to_upstream[name] = candidate
        self._to_client[candidate] = name
        return candidate

    def name_map(self) -> ToolNameMap:
        """Only the rewritten names; `ToolNameMap` falls back to identity for the rest."""
        rewritten = {client: up for client, up in self._to_upstream.items() if client != up}
        return ToolNameMap(to_upstream=rewritten, to_client={up: client for client, up in rewritten.items()})


def upstream_tool_call_id(client_id: str, style: ToolCallIdStyle = "openai") -> str:
    """The id the upstream sees for a client tool-use id; a pure function, so `tool_calls[].id` and the
    matching `tool_call_id` always agree. Ids the upstream accepts are kept as they are."""
    if style == "alnum9":
        if _ALNUM9.fullmatch(client_id):
            return client_id
        number = int.from_bytes(_sha256(client_id)[:8], "big")
        chars = []
        for _ in range(9):
            number, digit = divmod(number, 62)
            chars.append(_BASE62[digit])
        return "".join(chars)
    if _VALID_CALL_ID.fullmatch(client_id):
        return client_id
    return "toolu_" + _sha256(client_id).hex()[:24]


# --- JSON Schema strictness ----------------------------------------------------------------------------

# Keywords OpenAI's strict mode does not support; a schema using them is sent without `strict`.
_STRICT_UNSUPPORTED = ("allOf", "oneOf", "not", "if", "then", "else", "patternProperties", "prefixItems")


def strict_compatible(schema: Any) -> bool:
    """Whether OpenAI's strict mode accepts `schema`: every object closes `additionalProperties` and
    requires all of its properties, and no unsupported combinator appears. Iterative, so a hostile,
    deeply nested schema cannot exhaust the stack."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            return False
        if any(keyword in node for keyword in _STRICT_UNSUPPORTED):
            return False
        kind = node.get("type")
        props = node.get("properties")
        if kind == "object" or (isinstance(kind, list) and "object" in kind) or props is not None:
            if node.get("additionalProperties") is not False:
                return False
            if props is None:
                props = {}
            required = node.get("required", [])
            if not isinstance(props, dict) or not isinstance(required, list):
                return False
            if not all(isinstance(r, str) for r in required) or set(required) != set(props):
                return False
            stack.extend(props.values())
        items = node.get("items")
        if items is not None:
            stack.append(items)
        options = node.get("anyOf")
        if options is not None:
            if not isinstance(options, list):
                return False
            stack.extend(options)
        for key in ("$defs", "definitions"):
            defs = node.get(key)
            if defs is not None:
                if not isinstance(defs, dict):
                    return False
                stack.extend(defs.values())
    return True


# --- Anthropic-defined tools the client executes ------------------------------------------------------

_STR = {"type": "string"}
_INT = {"type": "integer"}
_RANGE = {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}

_BASH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "command": {"type": "string", "description": "The shell command to run."},
        "restart": {
            "type": "boolean",
            "description": "Start a fresh shell session instead of running a command.",
        },
    },
}
_EDITOR_COMMANDS = ["view", "create", "str_replace", "insert", "undo_edit"]
_EDITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "command": {"type": "string", "enum": _EDITOR_COMMANDS},
        "path": {"type": "string", "description": "Absolute path of the file or directory."},
        "file_text": _STR,
        "old_str": _STR,
        "new_str": _STR,
        "insert_line": _INT,
        "insert_text": _STR,
        "view_range": _RANGE,
    },
    "required": ["command", "path"],
}
_MEMORY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "command": {"type": "string", "enum": [*_EDITOR_COMMANDS[:4], "delete", "rename"]},
        "path": _STR,
        "file_text": _STR,
        "old_str": _STR,
        "new_str": _STR,
        "insert_line": _INT,
        "insert_text": _STR,
        "old_path": _STR,
        "new_path": _STR,
        "view_range": _RANGE,
    },
    "required": ["command"],
}
_POINT = {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}
_COMPUTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {
            "type": "string",
            "enum": [
                "screenshot",
                "cursor_position",
                "mouse_move",
                "left_click",
                "right_click",
                "middle_click",
                "double_click",
                "triple_click",
                "left_click_drag",
                "left_mouse_down",
                "left_mouse_up",
                "scroll",
                "key",
                "hold_key",
                "type",
                "wait",
                "zoom",
            ],
        },
        "coordinate": _POINT,
        "start_coordinate": _POINT,
        "text": _STR,
        "scroll_direction": {"type": "string", "enum": ["up", "down", "left", "right"]},
        "scroll_amount": _INT,
        "duration": {"type": "number"},
        "region": {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4},
    },
    "required": ["action"],
}

# type prefix → (schema, description)
_CLIENT_TOOLS: dict[str, tuple[dict[str, Any], str]] = {
    "bash_": (
        _BASH_SCHEMA,
        "Run a command in a persistent bash shell and return its output. Set restart to start a fresh shell.",
    ),
    "text_editor_": (
        _EDITOR_SCHEMA,
        "View, create and edit files: view a file or directory, create a file with file_text, replace "
        "old_str with new_str exactly once, insert text after insert_line, or undo the last edit.",
    ),
    "memory_": (
        _MEMORY_SCHEMA,
        "Read and write files in a persistent /memories directory that survives between conversations.",
    ),
    "computer_": (
        _COMPUTER_SCHEMA,
        "Control the computer's screen, mouse and keyboard; coordinates are in screen pixels.",
    ),
}


def _client_tool(kind: str) -> tuple[dict[str, Any], str] | None:
    for prefix, spec in _CLIENT_TOOLS.items():
        if kind.startswith(prefix):
            return spec
    return None


# --- tools ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class TranslatedTools:
    """OpenAI `tools`, the client names offered, and descriptions too long for the upstream.

    `long_descriptions` holds (upstream name, full text) for descriptions cut to the profile's limit;
    the request translator appends them to the system prompt so nothing is lost.
    """

    tools: list[dict[str, Any]] = field(default_factory=list)
    offered: set[str] = field(default_factory=set)
    long_descriptions: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _short_description(text: str, limit: int, upstream_name: str) -> str:
    note = f" … [full description: 'Tool {upstream_name}' in the system prompt]"
    room = max(0, limit - len(note))
    cut = text[:room]
    space = cut.rfind(" ")
    if space > room // 2:
        cut = cut[:space]
    return (cut.rstrip() + note)[:limit]


def _function(
    upstream_name: str,
    description: Any,
    parameters: dict[str, Any],
    profile: ModelProfile,
    out: TranslatedTools,
) -> dict[str, Any]:
    function: dict[str, Any] = {"name": upstream_name}
    if isinstance(description, str) and description:
        limit = profile.max_tool_description_chars
        if limit is not None and len(description) > limit:
            out.long_descriptions.append((upstream_name, description))
            description = _short_description(description, limit, upstream_name)
        function["description"] = description
    function["parameters"] = parameters
    return function


def _duplicate(name: str) -> NoReturn:
    fail("tools", f"Tool names must be unique (duplicate: '{name}')")


def _custom_tool(
    name: str,
    description: str | None,
    schema: dict[str, Any],
    strict: bool | None,
    namer: ToolNamer,
    profile: ModelProfile,
    out: TranslatedTools,
) -> None:
    if name in out.offered:
        _duplicate(name)
    if "type" not in schema or "$schema" in schema:
        # `$schema` only names the dialect; some OpenAI-compatible servers choke on it.
        schema = {"type": "object", **{k: v for k, v in schema.items() if k != "$schema"}}
    upstream_name = namer.upstream(name)
    function = _function(upstream_name, description, schema, profile, out)
    if strict:
        if strict_compatible(schema):
            function["strict"] = True
        else:
            out.warnings.append(
                f"tool '{name}': strict dropped; its schema does not meet OpenAI's strict-mode rules"
            )
    out.tools.append({"type": "function", "function": function})
    out.offered.add(name)


def translate_tools(
    raw: Any, *, namer: ToolNamer, profile: ModelProfile, options: TranslationOptions
) -> TranslatedTools:
    """Translate the request's `tools`; raises `InvalidRequestError` on malformed tools or (with the
    `reject` policy) on server tools."""
    out = TranslatedTools()
    tools = read_tools({"tools": raw})
    if tools is None:
        return out
    for i, tool in enumerate(tools):
        path = f"tools.{i}"
        kind, name, description, input_schema, strict = read_tool(tool, path)
        if input_schema is not None:  # a custom tool
            _custom_tool(name, description, input_schema, strict, namer, profile, out)
            continue
        spec = _client_tool(kind)
        if spec is not None:
            schema, text = spec
            if name in out.offered:
                _duplicate(name)
            if kind.startswith("computer_"):
                width, height = tool.get("display_width_px"), tool.get("display_height_px")
                if isinstance(width, int) and isinstance(height, int):
                    text += f" The display is {width}x{height} pixels."
            upstream_name = namer.upstream(name)
            out.tools.append(
                {"type": "function", "function": _function(upstream_name, text, schema, profile, out)}
            )
            out.offered.add(name)
            continue
        label = f"'{name}' (type '{kind}')"
        if options.server_tools == "reject":
            fail(
                path,
                f"server tool {label} is executed by Anthropic's servers and cannot be offered to an "
                "OpenAI-compatible upstream; remove it from the request",
            )
        warning = f"{path}: server tool {label} dropped; the upstream cannot execute it"
        logger.warning("%s", warning)
        out.warnings.append(warning)
    return out


# --- tool_choice ---------------------------------------------------------------------------------------


def translate_tool_choice(
    raw: Any, *, namer: ToolNamer, offered: set[str]
) -> tuple[str | dict[str, Any] | None, bool | None]:
    """(`tool_choice`, `parallel_tool_calls`) for the payload; (None, None) means send neither.

    Call only when tools are offered: OpenAI rejects both fields without tools. `parallel_tool_calls`
    is False when `disable_parallel_tool_use` is set, else None (the upstream default).
    """
    if raw is None:
        return None, None
    kind, name, disable = read_tool_choice(raw)
    parallel = False if disable else None
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", None
    assert name is not None  # type `tool` names its tool
    if name not in offered:
        fail("tool_choice.name", f"tool '{name}' is not among the request's tools")
    return {"type": "function", "function": {"name": namer.upstream(name)}}, parallel


__all__ = [
    "ToolNamer",
    "TranslatedTools",
    "is_valid_openai_name",
    "rewrite_tool_name",
    "strict_compatible",
    "translate_tool_choice",
    "translate_tools",
    "upstream_tool_call_id",
]
