"""Directives written into the prompt to script the mock per request.

A proxy in front of the mock forwards the conversation but not custom headers, so the prompt is the one
channel a test can always use. Only the last user message is read. Syntax, `[[name]]` or `[[name:arg]]`:

    [[tool:NAME {json args}]]          call tool NAME with these arguments (repeat for parallel calls)
    [[tool:NAME]]                      call tool NAME with arguments made from its JSON schema
    [[text-then-tool:NAME {json}]]     same, with text content before the tool calls
    [[reply:TEXT]]                     answer exactly TEXT (up to the first `]]`)
    [[reasoning:MODE]]                 none | reasoning_content | reasoning
    [[words:N]]  [[chunks:N]]          reply length in words, content chunks in a stream
    [[latency:S]]  [[chunk-delay:S]]   seconds before the first byte, between chunks
    [[cached:N]]                       report N cached prompt tokens
    [[fault:SPEC]]                     a fault spec as for the `x-mock-fault` header

Recognised directives are removed from the text the reply echoes; anything else is left as it is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_NAME = re.compile(r"[a-z][a-z-]*")
_TOOL_NAME = re.compile(r"[^\s\]\[{]+")
_DECODER = json.JSONDecoder()
_TOOL_KINDS = frozenset({"tool", "text-then-tool"})
_VALUE_KINDS = frozenset(
    {"reply", "reasoning", "words", "chunks", "latency", "chunk-delay", "cached", "fault"}
)


@dataclass(frozen=True, slots=True)
class ToolDirective:
    """One `[[tool:…]]` directive: a tool name and its arguments (None: derive from the schema)."""

    name: str
    arguments: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Directives:
    """What the last user message asked of the mock."""

    tools: tuple[ToolDirective, ...] = ()
    text_then_tool: bool = False
    values: dict[str, str] = field(default_factory=dict)
    #: The message text with the recognised directives cut out.
    text: str = ""

    def number(self, key: str) -> float | None:
        """A numeric directive value, or None when absent or not a number."""
        raw = self.values.get(key)
        if raw is None:
            return None
        try:
            return float(raw)
        except ValueError:
            return None


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _parse_tool(text: str, pos: int) -> tuple[ToolDirective, int] | None:
    """Parse `NAME [json]]]` starting at `pos`; return the directive and the index after `]]`."""
    match = _TOOL_NAME.match(text, pos)
    if match is None:
        return None
    name, pos = match.group(), match.end()
    pos = _skip_space(text, pos)
    arguments: dict[str, Any] | None = None
    if text.startswith("{", pos):
        try:
            value, pos = _DECODER.raw_decode(text, pos)
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        arguments = value
        pos = _skip_space(text, pos)
    if not text.startswith("]]", pos):
        return None
    return ToolDirective(name, arguments), pos + 2


def parse_directives(text: str) -> Directives:
    """Find the directives in one message text."""
    if "[[" not in text:
        return Directives(text=text)
    tools: list[ToolDirective] = []
    values: dict[str, str] = {}
    text_then_tool = False
    kept: list[str] = []
    pos = 0
    while True:
        start = text.find("[[", pos)
        if start < 0:
            break
        name_match = _NAME.match(text, start + 2)
        end = -1
        if name_match is not None:
            kind, after = name_match.group(), name_match.end()
            if kind in _TOOL_KINDS and text.startswith(":", after):
                parsed = _parse_tool(text, after + 1)
                if parsed is not None:
                    tools.append(parsed[0])
                    text_then_tool = text_then_tool or kind == "text-then-tool"
                    end = parsed[1]
            elif kind in _VALUE_KINDS and text.startswith(":", after):
                close = text.find("]]", after + 1)
                if close >= 0:
                    values[kind] = text[after + 1 : close].strip()
                    end = close + 2
        if end < 0:
            kept.append(text[pos : start + 2])
            pos = start + 2
            continue
        kept.append(text[pos:start])
        pos = end
    kept.append(text[pos:])
    return Directives(tuple(tools), text_then_tool, values, "".join(kept))


__all__ = ["Directives", "ToolDirective", "parse_directives"]
