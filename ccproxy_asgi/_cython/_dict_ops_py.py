"""Redaction of secrets in log records: the pure-Python twin of ``dict_ops.pyx``.

Both variants have exactly this API and behaviour; import them through ``ccproxy_asgi._cython``.

``is_secret_key(name) -> bool``
    Whether a mapping key or header name (``str`` or ``bytes``) names a secret. The name is
    lower-cased with ``-`` read as ``_``; it is secret when it is in ``SECRET_NAMES`` or ends with one
    of ``SECRET_SUFFIXES``, unless it is in ``NOT_SECRET_NAMES``. The suffix ``token`` is singular on
    purpose: ``max_tokens``, ``input_tokens``, ``budget_tokens`` and every other ``*_tokens`` key is a
    count, while ``access_token``, ``x-auth-token`` and ``token`` are credentials.

``redact_text(text) -> str``
    ``text`` with every API key (``sk-`` followed by 8 or more of ``[A-Za-z0-9_-]``, not preceded by
    one of those characters: covers ``sk-ant-…`` and ``sk-proj-…``) replaced by ``***``, and every
    ``Bearer <token>`` (``Bearer``, ``bearer`` or ``BEARER``) by ``Bearer ***``.

``redact(obj) -> obj``
    A redacted copy of a JSON-like structure; the input is never mutated.

    - ``dict``, ``list`` and ``tuple`` (subclasses too) come back as new plain ``dict``/``list``/
      ``tuple``; anything else that is not ``str`` or ``bytes`` is returned as is (shared).
    - The value under a secret key is replaced by ``"***"`` (``b"***"`` for ``bytes``), whatever it
      is, except ``None`` and booleans, which are kept: they say whether a secret was set, not what
      it is. A two-item ``tuple`` whose first item is a secret ``str``/``bytes`` name, or a two-item
      ``list`` whose first item is a secret ``bytes`` name, is a header pair and gets the same
      treatment for its second item.
    - Every ``str`` (values and ``str`` keys) goes through ``redact_text``; ``bytes`` too, read as
      Latin-1. Keys that collide after redaction keep the last value.
    - Containers nested more than ``MAX_DEPTH`` levels below the top are replaced by ``TOO_DEEP``;
      a container met twice (shared or cyclic) is redacted once and the copy is shared the same way.

``redact_headers(headers)``
    Header list (``[(name, value), …]`` of ``bytes`` or ``str``, as in an ASGI scope) to a new list of
    tuples, or a ``Mapping`` to a new ``dict``: values of secret names become ``***`` (same type),
    others go through ``redact_text``. Order and repeated names are kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, TypeVar, overload

REDACTED: Final = "***"
TOO_DEEP: Final = "[too deep]"
MAX_DEPTH: Final = 100

SECRET_NAMES: Final = frozenset(
    {
        "apikey",
        "api_keys",
        "authorization",
        "proxy_authorization",
        "password",
        "passwd",
        "secret",
        "secrets",
        "credential",
        "credentials",
        "cookie",
        "set_cookie",
    }
)
SECRET_SUFFIXES: Final = ("_key", "apikey", "secret", "token", "password", "cookie")
# Names the suffix rule would catch that are identifiers or vocabulary, not credentials.
NOT_SECRET_NAMES: Final = frozenset(
    {
        "cache_key",
        "prompt_cache_key",
        "idempotency_key",
        "partition_key",
        "sort_key",
        "public_key",
        "bos_token",
        "eos_token",
        "pad_token",
        "unk_token",
    }
)

# Key characters of OpenAI/Anthropic keys; the look-behind keeps "task-…" or "disk-…" whole.
SK_KEY_RE: Final = re.compile(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{8,}")
# RFC 6750 token68 after the scheme; the three spellings let a cheap substring test go first.
BEARER_RE: Final = re.compile(r"(?<![A-Za-z0-9_-])(Bearer|bearer|BEARER)\s+[A-Za-z0-9._~+/-]+=*")
BEARER_REPLACEMENT: Final = r"\1 ***"
# Name classification is cached; the cap keeps a client sending endless distinct keys from growing it.
KEY_CACHE_SIZE: Final = 4096

_T = TypeVar("_T", str, bytes)

_str_keys: dict[str, tuple[bool, str]] = {}
_bytes_keys: dict[bytes, tuple[bool, bytes]] = {}


def _name_is_secret(name: str) -> bool:
    norm = name.lower().replace("-", "_")
    if norm in NOT_SECRET_NAMES:
        return False
    return norm in SECRET_NAMES or norm.endswith(SECRET_SUFFIXES)


def redact_text(text: str) -> str:
    """``text`` with API keys and bearer tokens replaced; see the module docstring."""
    if "sk-" in text:
        text = SK_KEY_RE.sub(REDACTED, text)
    if "earer" in text or "EARER" in text:
        text = BEARER_RE.sub(BEARER_REPLACEMENT, text)
    return text


def _redact_bytes(data: bytes) -> bytes:
    if b"sk-" in data or b"earer" in data or b"EARER" in data:
        return redact_text(data.decode("latin-1")).encode("latin-1")
    return data


def _str_key(key: str) -> tuple[bool, str]:
    found = _str_keys.get(key)
    if found is None:
        if len(_str_keys) >= KEY_CACHE_SIZE:
            _str_keys.clear()
        found = _str_keys[key] = (_name_is_secret(key), redact_text(key))
    return found


def _bytes_key(key: bytes) -> tuple[bool, bytes]:
    found = _bytes_keys.get(key)
    if found is None:
        if len(_bytes_keys) >= KEY_CACHE_SIZE:
            _bytes_keys.clear()
        found = _bytes_keys[key] = (_name_is_secret(key.decode("latin-1")), _redact_bytes(key))
    return found


def is_secret_key(name: str | bytes) -> bool:
    """Whether ``name`` names a secret (see the module docstring for the rule)."""
    if isinstance(name, str):
        return _str_key(name)[0]
    if isinstance(name, bytes):
        return _bytes_key(name)[0]
    raise TypeError(f"a name is str or bytes, not {type(name).__name__}")


def _mask(value: object) -> object:
    if value is None or value is True or value is False:
        return value
    if isinstance(value, bytes):
        return b"***"
    return REDACTED


def _pair(name: str | bytes, value: object, depth: int, memo: dict[int, object]) -> tuple[object, object]:
    secret, name = _str_key(name) if isinstance(name, str) else _bytes_key(name)
    return name, (_mask(value) if secret else _redact(value, depth, memo))


def _redact(obj: object, depth: int, memo: dict[int, object]) -> object:
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, (dict, list, tuple)):
        done = memo.get(id(obj))
        if done is not None:
            return done
        if depth > MAX_DEPTH:
            return TOO_DEEP
        depth += 1
        if isinstance(obj, dict):
            out: dict[object, object] = {}
            memo[id(obj)] = out
            for key, value in obj.items():
                if isinstance(key, str):
                    secret, key = _str_key(key)
                elif isinstance(key, bytes):
                    secret, key = _bytes_key(key)
                else:
                    secret = False
                out[key] = _mask(value) if secret else _redact(value, depth, memo)
            return out
        if isinstance(obj, list):
            items: list[object] = []
            memo[id(obj)] = items
            if len(obj) == 2 and isinstance(obj[0], bytes):
                items.extend(_pair(obj[0], obj[1], depth, memo))
            else:
                for value in obj:
                    items.append(_redact(value, depth, memo))
            return items
        if len(obj) == 2 and isinstance(obj[0], (str, bytes)):
            result: tuple[object, ...] = _pair(obj[0], obj[1], depth, memo)
        else:
            result = tuple([_redact(value, depth, memo) for value in obj])
        memo[id(obj)] = result
        return result
    if isinstance(obj, bytes):
        return _redact_bytes(obj)
    return obj


def redact(obj: Any) -> Any:
    """A copy of ``obj`` with secrets replaced; see the module docstring."""
    return _redact(obj, 0, {})


def _header_value(secret: bool, value: _T) -> _T:
    if isinstance(value, bytes):
        return b"***" if secret else _redact_bytes(value)
    return REDACTED if secret else redact_text(value)


@overload
def redact_headers(headers: Mapping[str, str]) -> dict[str, str]: ...
@overload
def redact_headers(headers: Iterable[tuple[_T, _T]]) -> list[tuple[_T, _T]]: ...
def redact_headers(headers: Mapping[str, str] | Iterable[tuple[_T, _T]]) -> object:
    """Headers with secret values replaced; see the module docstring."""
    if isinstance(headers, Mapping):
        return {name: _header_value(is_secret_key(name), value) for name, value in headers.items()}
    return [(name, _header_value(is_secret_key(name), value)) for name, value in headers]


__all__ = [
    "BEARER_RE",
    "BEARER_REPLACEMENT",
    "KEY_CACHE_SIZE",
    "MAX_DEPTH",
    "NOT_SECRET_NAMES",
    "REDACTED",
    "SECRET_NAMES",
    "SECRET_SUFFIXES",
    "SK_KEY_RE",
    "TOO_DEEP",
    "is_secret_key",
    "redact",
    "redact_headers",
    "redact_text",
]
