"""One place for JSON encoding and decoding.

orjson is several times faster than the standard library on the request sizes Claude Code sends
(tens of KB of tools and system prompt), and it emits bytes, which is what ASGI wants anyway.
"""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def dumps(value: Any) -> bytes:
    """Serialize to compact UTF-8 JSON bytes."""
    return orjson.dumps(value)


def dumps_str(value: Any) -> str:
    """Serialize to a compact JSON string (for places that need `str`, e.g. tool arguments)."""
    return orjson.dumps(value).decode()


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON; raises `JSONDecodeError` (a `ValueError`) on invalid input or invalid UTF-8."""
    return orjson.loads(data)


__all__ = ["JSONDecodeError", "dumps", "dumps_str", "loads"]
