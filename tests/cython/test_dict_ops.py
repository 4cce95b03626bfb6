"""dict_ops: secret redaction, both variants, with the same rules and the same answers."""

from __future__ import annotations

import copy
import os
import re
from collections import OrderedDict
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccproxy_asgi._cython import load_variant


def _compiled() -> ModuleType:
    try:
        return load_variant("dict_ops", "compiled")
    except ImportError as exc:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"the CI build must compile ccproxy_asgi._cython.dict_ops: {exc}")
        pytest.skip(f"dict_ops not compiled (python setup.py build_ext --inplace): {exc}")


@pytest.fixture(scope="module")
def compiled() -> ModuleType:
    return _compiled()


@pytest.fixture(scope="module")
def twin() -> ModuleType:
    return load_variant("dict_ops", "python")


@pytest.fixture(scope="module", params=["python", "compiled"])
def mod(request: pytest.FixtureRequest) -> ModuleType:
    return load_variant("dict_ops", "python") if request.param == "python" else _compiled()


SECRET_KEYS = [
    "api_key",
    "apikey",
    "API-Key",
    "x-api-key",
    "X-Goog-Api-Key",
    "Authorization",
    "proxy-authorization",
    "OPENAI_API_KEY",
    "upstream_api_key",
    "api_keys",
    "password",
    "db_password",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "auth_token",
    "refresh_token",
    "x-auth-token",
    "cookie",
    "Set-Cookie",
    "private_key",
    "credentials",
]
COUNT_AND_PLAIN_KEYS = [
    "max_tokens",
    "input_tokens",
    "output_tokens",
    "tokens",
    "budget_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "max_completion_tokens",
    "prompt_tokens",
    "total_tokens",
    "token_type",
    "stop_sequences",
    "key",
    "model",
    "content-type",
    "idempotency-key",
    "prompt_cache_key",
    "eos_token",
]


@pytest.mark.parametrize("name", SECRET_KEYS)
def test_secret_names(mod: ModuleType, name: str) -> None:
    assert mod.is_secret_key(name) is True
    assert mod.is_secret_key(name.encode()) is True


@pytest.mark.parametrize("name", COUNT_AND_PLAIN_KEYS)
def test_counts_and_plain_names_are_not_secret(mod: ModuleType, name: str) -> None:
    assert mod.is_secret_key(name) is False
    assert mod.is_secret_key(name.encode()) is False


def test_is_secret_key_rejects_other_types(mod: ModuleType) -> None:
    with pytest.raises(TypeError):
        mod.is_secret_key(3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sk-abcdefgh", "***"),
        ("sk-abcdefg", "sk-abcdefg"),
        ("key=sk-ant-api03-AbC_dEf-123456789 trailing", "key=*** trailing"),
        ("use sk-proj-0123456789abcdef, then", "use ***, then"),
        ('{"k":"sk-0123456789"}', '{"k":"***"}'),
        ("task-managers and disk-12345678 stay", "task-managers and disk-12345678 stay"),
        ("Bearer abc.def-ghi", "Bearer ***"),
        ("bearer   eyJhbGciOi==, next", "bearer ***, next"),
        ("BEARER x", "BEARER ***"),
        ("Bearer sk-0123456789abc", "Bearer ***"),
        ("Bearer", "Bearer"),
        ("Bearer ***", "Bearer ***"),
        ("no secrets here", "no secrets here"),
        ("", ""),
    ],
)
def test_redact_text(mod: ModuleType, text: str, expected: str) -> None:
    assert mod.redact_text(text) == expected


LOG_RECORD: dict[str, Any] = {
    "request_id": "req_123",
    "headers": {
        "authorization": "Bearer sk-ant-xyzxyzxyzxyz",
        "x-api-key": "abc",
        "content-type": "application/json",
    },
    "asgi_headers": [(b"authorization", b"Bearer abc"), (b"cookie", b"a=b"), (b"host", b"localhost")],
    "body": {
        "model": "claude-sonnet",
        "max_tokens": 1024,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "my key is sk-proj-ABCDEFGH1234"}]}
        ],
    },
    "usage": {"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 5},
    "upstream": {"api_key": "whatever-format", "base_url": "http://x", "token": None, "password": True},
    "pair": ("x-api-key", "raw"),
    "numbers": [1, 2.5, None, True],
}


def test_redacts_a_log_record(mod: ModuleType) -> None:
    out = mod.redact(LOG_RECORD)
    assert out["headers"] == {"authorization": "***", "x-api-key": "***", "content-type": "application/json"}
    assert out["asgi_headers"] == [(b"authorization", b"***"), (b"cookie", b"***"), (b"host", b"localhost")]
    assert out["body"]["max_tokens"] == 1024
    assert out["body"]["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert out["body"]["messages"][0]["content"][0]["text"] == "my key is ***"
    assert out["usage"] == LOG_RECORD["usage"]
    assert out["upstream"] == {"api_key": "***", "base_url": "http://x", "token": None, "password": True}
    assert out["pair"] == ("x-api-key", "***")
    assert out["numbers"] == [1, 2.5, None, True]


def test_redact_does_not_mutate_and_copies_containers(mod: ModuleType) -> None:
    before = copy.deepcopy(LOG_RECORD)
    out = mod.redact(LOG_RECORD)
    assert before == LOG_RECORD
    assert out["usage"] is not LOG_RECORD["usage"]
    assert out["numbers"] is not LOG_RECORD["numbers"]


def test_secret_values_of_any_type_are_masked(mod: ModuleType) -> None:
    out = mod.redact(
        {"password": 1234, "api_keys": ["a", "b"], "secret": {"x": 1}, "cookie": b"c", "token": False}
    )
    assert out == {"password": "***", "api_keys": "***", "secret": "***", "cookie": b"***", "token": False}


def test_keys_carrying_api_keys_are_redacted(mod: ModuleType) -> None:
    assert mod.redact({"sk-abcdefgh1234": {"requests": 3}}) == {"***": {"requests": 3}}


def test_bytes_values_are_scanned(mod: ModuleType) -> None:
    assert mod.redact([b"x sk-abcdefgh1234", b"\xff plain"]) == [b"x ***", b"\xff plain"]


def test_list_pairs_only_with_bytes_names(mod: ModuleType) -> None:
    # ["password", "x"] is ordinary JSON data; [b"password", b"x"] can only be a header pair.
    assert mod.redact([["password", "x"], [b"password", b"x"]]) == [["password", "x"], [b"password", b"***"]]


def test_subclasses_come_back_as_plain_containers(mod: ModuleType) -> None:
    od = OrderedDict([("a", 1), ("authorization", "x")])
    out = mod.redact(od)
    assert type(out) is dict
    assert out == {"a": 1, "authorization": "***"}


def test_other_objects_are_shared(mod: ModuleType) -> None:
    marker = object()
    assert mod.redact({"x": marker})["x"] is marker


def test_deep_nesting_is_cut(mod: ModuleType) -> None:
    deep: list[Any] = []
    cur = deep
    for _ in range(500):
        nxt: list[Any] = []
        cur.append(nxt)
        cur = nxt
    out = mod.redact(deep)
    depth = 0
    while isinstance(out, list):
        out = out[0]
        depth += 1
    assert depth == mod.MAX_DEPTH + 1
    assert out == mod.TOO_DEEP


def test_cycles_and_sharing_are_kept(mod: ModuleType) -> None:
    shared = {"token": "t"}
    record: dict[str, Any] = {"a": shared, "b": shared}
    record["self"] = record
    out = mod.redact(record)
    assert out["self"] is out
    assert out["a"] is out["b"]
    assert out["a"] == {"token": "***"}


def test_sharing_never_explodes(mod: ModuleType) -> None:
    node: list[Any] = ["sk-abcdefgh1234"]
    for _ in range(60):
        node = [node, node]
    out = mod.redact(node)
    for _ in range(60):
        out = out[0]
    assert out == ["***"]


def test_redact_headers_pairs(mod: ModuleType) -> None:
    raw = [(b"Authorization", b"Bearer x"), (b"accept", b"*/*"), (b"x-api-key", b"k"), (b"x-api-key", b"k2")]
    assert mod.redact_headers(raw) == [
        (b"Authorization", b"***"),
        (b"accept", b"*/*"),
        (b"x-api-key", b"***"),
        (b"x-api-key", b"***"),
    ]
    assert mod.redact_headers([("X-Trace", "sk-abcdefgh1234")]) == [("X-Trace", "***")]


def test_redact_headers_mapping(mod: ModuleType) -> None:
    headers = {"authorization": "Bearer x", "user-agent": "claude-cli"}
    assert mod.redact_headers(headers) == {"authorization": "***", "user-agent": "claude-cli"}
    assert headers["authorization"] == "Bearer x"


def test_both_variants_share_the_rules(compiled: ModuleType, twin: ModuleType) -> None:
    for name in (
        "SECRET_NAMES",
        "SECRET_SUFFIXES",
        "NOT_SECRET_NAMES",
        "SK_KEY_RE",
        "BEARER_RE",
        "MAX_DEPTH",
    ):
        assert getattr(compiled, name) is getattr(twin, name)


# --- properties ----------------------------------------------------------------------------------

_names = st.sampled_from(SECRET_KEYS + COUNT_AND_PLAIN_KEYS + ["sk-abcdefgh1234", "a", "role"])
_fragments = st.sampled_from(
    [
        "sk-",
        "sk-ant-api03-",
        "abcdefgh",
        "1234",
        "Bearer ",
        "bearer\t",
        "BEARER ",
        "-",
        "_",
        " ",
        "task",
        "***",
        "é",
    ]
)
_texts = st.one_of(st.text(max_size=20), st.lists(_fragments, max_size=8).map("".join))
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    _texts,
    _texts.map(lambda s: s.encode("utf-8")),
)
_keys = st.one_of(_names, _names.map(str.encode), _texts, st.integers(-3, 3))


def _tree(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(_keys, children, max_size=5),
        st.tuples(st.one_of(_names, _names.map(str.encode)), children),
        st.lists(children, max_size=3).map(tuple),
        st.tuples(_names.map(str.encode), children).map(list),
    )


_records = st.recursive(_scalars, _tree, max_leaves=40)
_SK = re.compile(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{8,}")
_BEARER = re.compile(r"(?<![A-Za-z0-9_-])(?:Bearer|bearer|BEARER)\s+(?!\*\*\*)[A-Za-z0-9._~+/-]")


def _walk(obj: Any) -> Any:
    """Yield (key or None, value) for every value in the structure."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k, v
            yield from _walk(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield None, v
            yield from _walk(v)


@settings(max_examples=400, deadline=None)
@given(record=_records)
def test_variants_agree_and_do_not_mutate(compiled: ModuleType, twin: ModuleType, record: Any) -> None:
    before = copy.deepcopy(record)
    out = compiled.redact(record)
    assert out == twin.redact(record)
    assert record == before


@settings(max_examples=300, deadline=None)
@given(record=_records)
def test_no_key_or_token_survives(mod: ModuleType, record: Any) -> None:
    out = mod.redact(record)
    for key, value in _walk({None: out}):
        for text in (key, value):
            if isinstance(text, bytes):
                text = text.decode("latin-1")
            if isinstance(text, str):
                assert not _SK.search(text)
                assert not _BEARER.search(text)
        if isinstance(key, (str, bytes)) and mod.is_secret_key(key):
            assert value in ("***", b"***", None, True, False)


@settings(max_examples=300, deadline=None)
@given(record=_records)
def test_redaction_is_idempotent(mod: ModuleType, record: Any) -> None:
    once = mod.redact(record)
    assert mod.redact(once) == once


@settings(max_examples=200, deadline=None)
@given(text=_texts)
def test_redact_text_variants_agree(compiled: ModuleType, twin: ModuleType, text: str) -> None:
    assert compiled.redact_text(text) == twin.redact_text(text)


@settings(max_examples=200, deadline=None)
@given(name=st.one_of(_names, _texts))
def test_is_secret_key_variants_agree(compiled: ModuleType, twin: ModuleType, name: str) -> None:
    assert compiled.is_secret_key(name) == twin.is_secret_key(name)
    assert compiled.is_secret_key(name.encode()) == twin.is_secret_key(name.encode())
