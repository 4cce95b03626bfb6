"""One place for JSON encoding and decoding.

orjson is several times faster than the standard library on the request sizes Claude Code sends
(tens of KB of tools and system prompt), and it emits bytes, which is what ASGI wants anyway.

Two places where orjson is stricter than JSON, and what `loads` and the callers do about them:

- Lone surrogate escapes (`"\\ud83d"` with no low half). The JSON grammar allows any `\\uXXXX`, and
  JavaScript's `JSON.stringify` writes one whenever text is cut in the middle of an emoji, so a client
  conversation can carry them on every turn. orjson refuses them; `loads` then rewrites each lone one to
  `\\ufffd` and parses again. The payload stays encodable to UTF-8 for the upstream, and bodies without
  such an escape never pay for the repair.
- Nesting. orjson parses up to 1024 levels but encodes only about 254, so a deep value accepted on the
  way in would fail on the way out. `MAX_NESTING` is the depth the proxy accepts for client JSON it
  forwards as objects (tool input schemas, output schemas); `too_deep` checks it without recursion.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError

#: Deepest object/array nesting the proxy accepts in a client value it forwards as a JSON object (a
#: tool's `input_schema`, an output format's schema), checked before the upstream request is built.
#: Real schemas stay under 20 levels; 128 leaves them room, and the levels the upstream payload adds
#: around them, well inside what orjson encodes. A `tool_use` input is encoded on its own into a string,
#: so it is refused only if it cannot be encoded, which a deeper nesting than that causes.
MAX_NESTING = 128
#: How a value past `MAX_NESTING` is described to the client, after the field's path.
TOO_DEEP = f"nested too deeply (limit {MAX_NESTING} levels of objects and arrays)"

# A `\u` escape of a surrogate code point, with the run of backslash pairs before it so that an escaped
# backslash followed by `ud800` (the six characters, not an escape) is never taken for one. A high
# surrogate directly followed by a low one is a valid pair and is matched whole, so that the low half
# of a pair is never seen alone.
_SURROGATE_ESCAPE = re.compile(
    rb"(?<!\\)((?:\\\\)*)\\u(?:(d[89ab][0-9a-f]{2})(\\ud[c-f][0-9a-f]{2})?|d[c-f][0-9a-f]{2})",
    re.IGNORECASE,
)


def _replace_lone(match: re.Match[bytes]) -> bytes:
    backslashes, high, low = match.group(1, 2, 3)
    if high is not None and low is not None:
        return match.group(0)
    return backslashes + b"\\ufffd"


def dumps(value: Any) -> bytes:
    """Serialize to compact UTF-8 JSON bytes."""
    return orjson.dumps(value)


def dumps_str(value: Any) -> str:
    """Serialize to a compact JSON string (for places that need `str`, e.g. tool arguments)."""
    return orjson.dumps(value).decode()


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON; raises `JSONDecodeError` (a `ValueError`) on invalid input or invalid UTF-8.

    A lone surrogate escape is valid JSON and becomes U+FFFD (see the module docstring)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
        repaired = _SURROGATE_ESCAPE.sub(_replace_lone, raw) if b"\\" in raw else raw
        if repaired == raw:
            raise
    # Outside the `except` so that an error of the second parse does not chain to the first one.
    return orjson.loads(repaired)


def too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether `value` nests objects and arrays more than `limit` levels deep (a scalar is level 0).

    Each level opens with a `{` or `[`, so JSON text holding at most `limit` of them cannot nest deeper
    (brackets inside strings only loosen that bound). Encoding and counting run at C speed; walking costs
    some 30 ns a node, which for Claude Code's tool schemas is a third of the request's translation
    time. So the value is walked only past that bound, or when it cannot be encoded.
    """
    if not isinstance(value, dict | list):
        return False
    try:
        encoded = orjson.dumps(value)
    except TypeError:  # deeper than orjson encodes, or not JSON at all: the walk decides
        return _walk_too_deep(value, limit)
    if encoded.count(b"{") + encoded.count(b"[") <= limit:
        return False
    return _walk_too_deep(value, limit)


def _walk_too_deep(value: Any, limit: int) -> bool:
    # Breadth-first, one level per step: a hostile value cannot exhaust the stack, and the walk stops at
    # the first level past the limit.
    level = [value]
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        deeper: list[Any] = []
        for node in level:
            if isinstance(node, dict):
                deeper += [child for child in node.values() if isinstance(child, dict | list)]
            elif isinstance(node, list):
                deeper += [child for child in node if isinstance(child, dict | list)]
        level = deeper
    return False


__all__ = ["MAX_NESTING", "TOO_DEEP", "JSONDecodeError", "dumps", "dumps_str", "loads", "too_deep"]
