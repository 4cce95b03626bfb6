"""`Headers`: an immutable, case-insensitive `Mapping[str, str]` of HTTP header fields.

Header names are case-insensitive (RFC 9110 §5.1), but what the HTTP libraries hand over keeps the
sender's spelling: aiohttp's `CIMultiDictProxy` looks names up case-insensitively, yet copying it into a
`dict` gives `{"Retry-After": ...}`, on which `get("retry-after")` finds nothing. So the proxy copies
upstream headers into this type once, with the names lower-cased, and every reader after that (the retry
policy, the error mapping, the rate limiter's feedback) can use lower-case literals safely.

Built from anything header-like: a mapping (aiohttp's `CIMultiDictProxy`, httpx's `Headers`, a `dict`)
or pairs of `str` or `bytes` (ASGI's `[(b"name", b"value"), ...]`, decoded as Latin-1). When a name
repeats, the first value wins, as aiohttp's `get` does (httpx has already joined repeats with ", ").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TypeAlias, TypeVar, overload

_T = TypeVar("_T")

HeaderSource: TypeAlias = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


class Headers(Mapping[str, str]):
    """Header fields with lower-cased names; looked up with any spelling. Immutable once built."""

    __slots__ = ("_fields",)

    _fields: dict[str, str]

    def __init__(self, source: HeaderSource | None = None) -> None:
        fields: dict[str, str] = {}
        if isinstance(source, Headers):
            fields = source._fields
        elif source is not None:
            pairs = source.items() if isinstance(source, Mapping) else source
            for name, value in pairs:
                fields.setdefault(_text(name).lower(), _text(value))
        object.__setattr__(self, "_fields", fields)

    @classmethod
    def of(cls, source: HeaderSource | None) -> Headers:
        """`source` itself when it already is a `Headers`, else a copy of it."""
        return source if isinstance(source, Headers) else cls(source)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Headers are immutable")

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    @overload
    def get(self, name: str, /) -> str | None: ...
    @overload
    def get(self, name: str, /, default: str | _T) -> str | _T: ...
    def get(self, name: str, /, default: object = None) -> object:
        return self._fields.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


__all__ = ["HeaderSource", "Headers"]
