# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: embedsignature=True
"""Redaction of secrets in log records, compiled.

Same API and behaviour as ``_dict_ops_py`` (whose docstring documents both); the tests hold them equal.
"""

from collections.abc import Mapping

# The rules (names, suffixes, patterns, limits) have one home, the twin, so the variants cannot drift.
from ._dict_ops_py import (
    BEARER_RE,
    BEARER_REPLACEMENT,
    KEY_CACHE_SIZE,
    MAX_DEPTH,
    NOT_SECRET_NAMES,
    REDACTED,
    SECRET_NAMES,
    SECRET_SUFFIXES,
    SK_KEY_RE,
    TOO_DEEP,
)

cdef object _sk_sub = SK_KEY_RE.sub
cdef object _bearer_sub = BEARER_RE.sub
cdef str _bearer_repl = BEARER_REPLACEMENT
cdef str _redacted = REDACTED
cdef bytes _redacted_bytes = REDACTED.encode()
cdef str _too_deep = TOO_DEEP
cdef frozenset _secret_names = SECRET_NAMES
cdef frozenset _not_secret_names = NOT_SECRET_NAMES
cdef tuple _secret_suffixes = SECRET_SUFFIXES
cdef Py_ssize_t _max_depth = MAX_DEPTH
cdef Py_ssize_t _key_cache_size = KEY_CACHE_SIZE

cdef dict _str_keys = {}
cdef dict _bytes_keys = {}


cdef bint _name_is_secret(str name) except -1:
    cdef str norm = name.lower().replace("-", "_")
    if norm in _not_secret_names:
        return False
    return norm in _secret_names or norm.endswith(_secret_suffixes)


cpdef str redact_text(str text):
    """``text`` with API keys and bearer tokens replaced; see ``_dict_ops_py``."""
    if "sk-" in text:
        text = _sk_sub(_redacted, text)
    if "earer" in text or "EARER" in text:
        text = _bearer_sub(_bearer_repl, text)
    return text


cdef bytes _redact_bytes(bytes data):
    if b"sk-" in data or b"earer" in data or b"EARER" in data:
        return redact_text(data.decode("latin-1")).encode("latin-1")
    return data


cdef tuple _str_key(str key):
    found = _str_keys.get(key)
    if found is None:
        if len(_str_keys) >= _key_cache_size:
            _str_keys.clear()
        found = (_name_is_secret(key), redact_text(key))
        _str_keys[key] = found
    return <tuple>found


cdef tuple _bytes_key(bytes key):
    found = _bytes_keys.get(key)
    if found is None:
        if len(_bytes_keys) >= _key_cache_size:
            _bytes_keys.clear()
        found = (_name_is_secret(key.decode("latin-1")), _redact_bytes(key))
        _bytes_keys[key] = found
    return <tuple>found


def is_secret_key(name):
    """Whether ``name`` (``str`` or ``bytes``) names a secret; see ``_dict_ops_py``."""
    if isinstance(name, str):
        return _str_key(<str>name)[0]
    if isinstance(name, bytes):
        return _bytes_key(<bytes>name)[0]
    raise TypeError(f"a name is str or bytes, not {type(name).__name__}")


cdef inline object _mask(object value):
    if value is None or value is True or value is False:
        return value
    if isinstance(value, bytes):
        return _redacted_bytes
    return _redacted


cdef tuple _pair(object name, object value, Py_ssize_t depth, dict memo):
    # Only called with str or bytes names.
    cdef tuple classified = _str_key(<str>name) if isinstance(name, str) else _bytes_key(<bytes>name)
    if classified[0]:
        return (classified[1], _mask(value))
    return (classified[1], _redact(value, depth, memo))


cdef object _redact(object obj, Py_ssize_t depth, dict memo):
    if isinstance(obj, str):
        return redact_text(<str>obj)
    if not isinstance(obj, (dict, list, tuple)):
        if isinstance(obj, bytes):
            return _redact_bytes(<bytes>obj)
        return obj
    cdef object oid = <Py_ssize_t><void*>obj
    done = memo.get(oid)
    if done is not None:
        return done
    if depth > _max_depth:
        return _too_deep
    depth += 1
    cdef dict out
    cdef list items
    cdef tuple classified
    if isinstance(obj, dict):
        out = {}
        memo[oid] = out
        for key, value in obj.items():
            if isinstance(key, str):
                classified = _str_key(<str>key)
            elif isinstance(key, bytes):
                classified = _bytes_key(<bytes>key)
            else:
                out[key] = _redact(value, depth, memo)
                continue
            if classified[0]:
                out[classified[1]] = _mask(value)
            else:
                out[classified[1]] = _redact(value, depth, memo)
        return out
    if isinstance(obj, list):
        items = []
        memo[oid] = items
        if len(obj) == 2 and isinstance(obj[0], bytes):
            items.extend(_pair(obj[0], obj[1], depth, memo))
        else:
            for value in obj:
                items.append(_redact(value, depth, memo))
        return items
    if len(obj) == 2 and isinstance(obj[0], (str, bytes)):
        result = _pair(obj[0], obj[1], depth, memo)
    else:
        items = [_redact(value, depth, memo) for value in obj]
        result = tuple(items)
    memo[oid] = result
    return result


def redact(obj):
    """A copy of ``obj`` with secrets replaced; see ``_dict_ops_py``."""
    return _redact(obj, 0, {})


cdef object _header_value(bint secret, object value):
    if isinstance(value, bytes):
        return _redacted_bytes if secret else _redact_bytes(<bytes>value)
    return _redacted if secret else redact_text(value)


def redact_headers(headers):
    """Headers with secret values replaced; see ``_dict_ops_py``."""
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
