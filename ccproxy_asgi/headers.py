"""Header fields: `Headers`, an immutable, case-insensitive `Mapping[str, str]`, and the helpers that read
and filter ASGI's raw header lists.

Header names are case-insensitive (RFC 9110 §5.1), but what the HTTP libraries hand over keeps the
sender's spelling: aiohttp's `CIMultiDictProxy` looks names up case-insensitively, yet copying it into a
`dict` gives `{"Retry-After": ...}`, on which `get("retry-after")` finds nothing. So the proxy copies
upstream headers into this type once, with the names lower-cased, and every reader after that (the retry
policy, the error mapping, the rate limiter's feedback) can use lower-case literals safely.

Built from anything header-like: a mapping (aiohttp's `CIMultiDictProxy`, httpx's `Headers`, a `dict`)
or pairs of `str` or `bytes` (ASGI's `[(b"name", b"value"), ...]`, decoded as Latin-1). When a name
repeats, the first value wins, as aiohttp's `get` does (httpx has already joined repeats with ", ").

ASGI carries headers as lists of `(name, value)` byte pairs: a request's in `scope["headers"]` (names
lower-cased by the server), a response's in `http.response.start` (names as the app spelt them). The layers
read and rewrite those lists on every request, so they get small helpers here rather than a `Headers`
copy: `raw_header` and `has_raw_header` find a field, `raw_headers_of` picks several in one pass,
`drop_raw_headers` filters, `request_header` and `client_key_from` read the request's. Names are given as
lower-case bytes and matched case-insensitively; values are decoded as Latin-1.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import TypeAlias, TypeVar, overload

from ccproxy_asgi.types import Scope

_T = TypeVar("_T")

HeaderSource: TypeAlias = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]
#: ASGI header fields: `(name, value)` byte pairs.
RawHeaders: TypeAlias = Iterable[tuple[bytes, bytes]]


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


def _same(key: bytes, name: bytes) -> bool:
    # Request names are lower-case already: the cheap comparison decides almost every time.
    return key == name or bytes(key).lower() == name


def raw_header(headers: RawHeaders, name: bytes) -> str | None:
    """The first value of field `name` (lower-case bytes) in ASGI header pairs, None when absent."""
    for key, value in headers:
        if _same(key, name):
            return bytes(value).decode("latin-1")
    return None


def has_raw_header(headers: RawHeaders, name: bytes) -> bool:
    """Whether ASGI header pairs carry field `name` (lower-case bytes)."""
    return any(_same(key, name) for key, _ in headers)


def raw_headers_of(headers: RawHeaders, names: Collection[bytes]) -> dict[bytes, str]:
    """The first value of each field of `names` (lower-case bytes) present, in one pass."""
    found: dict[bytes, str] = {}
    for key, value in headers:
        lowered = bytes(key).lower()
        if lowered in names and lowered not in found:
            found[lowered] = bytes(value).decode("latin-1")
    return found


def drop_raw_headers(
    headers: RawHeaders, names: Collection[bytes] = (), *, prefix: bytes | None = None
) -> list[tuple[bytes, bytes]]:
    """ASGI header pairs without the fields of `names`, nor those whose name starts with `prefix`
    (all lower-case bytes)."""
    kept: list[tuple[bytes, bytes]] = []
    for key, value in headers:
        lowered = bytes(key).lower()
        if lowered in names or (prefix is not None and lowered.startswith(prefix)):
            continue
        kept.append((key, value))
    return kept


def request_header(scope: Scope, name: bytes) -> str | None:
    """The first value of request header `name` (lower-case bytes)."""
    return raw_header(scope.get("headers", ()), name)


def client_key_from(scope: Scope) -> str | None:
    """The key the client presented, `x-api-key` or `Authorization: Bearer`."""
    key = request_header(scope, b"x-api-key")
    if key:
        return key
    return bearer_token(request_header(scope, b"authorization"))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value, None for any other value."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


__all__ = [
    "HeaderSource",
    "Headers",
    "RawHeaders",
    "bearer_token",
    "client_key_from",
    "drop_raw_headers",
    "has_raw_header",
    "raw_header",
    "raw_headers_of",
    "request_header",
]
