"""Hostile and malformed requests at `/v1/messages` through a real server: every answer is a 4xx Anthropic
envelope with the request id, never a 500, never a hang, and nothing reaches the upstream.

Bodies: arbitrary bytes, invalid UTF-8, JSON that is not an object, deep nesting, huge strings, bodies
over the size limit, and valid requests with one field broken (wrong type, missing, out of range), sent
with right, wrong or missing content types and hostile request-id headers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.support.e2e import ProxyPool

MAX_BYTES = 64 * 1024
VALID: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
huge_text = st.integers(min_value=1_000, max_value=MAX_BYTES * 2).map(lambda n: "\u00e9x" * (n // 3))


def not_a(*types: type) -> st.SearchStrategy[Any]:
    """JSON values that are none of `types` (bool counts as its own type, not as int)."""

    def wrong(value: Any) -> bool:
        if isinstance(value, bool):
            return bool not in types
        return not isinstance(value, types)

    pool = json_values if str in types else json_values | huge_text
    return pool.filter(wrong)


def broken(field: str, value: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(VALID))
    body[field] = value
    return body


def without(field: str) -> dict[str, Any]:
    return {key: value for key, value in VALID.items() if key != field}


def nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


roles = st.text(max_size=30).filter(lambda role: role not in ("user", "assistant", "system"))
bad_messages = st.one_of(
    not_a(list),
    st.just([]),
    st.lists(not_a(dict), min_size=1, max_size=3),
    st.builds(lambda role: [{"role": role, "content": "hi"}], roles),
    st.builds(lambda content: [{"role": "user", "content": content}], not_a(str, list)),
    st.builds(lambda block: [{"role": "user", "content": [block]}], not_a(dict)),
    st.builds(
        lambda kind: [{"role": "user", "content": [{"type": kind, "text": "x"}]}],
        st.text(max_size=20).filter(
            lambda kind: (
                kind
                not in (
                    "text",
                    "image",
                    "document",
                    "search_result",
                    "thinking",
                    "redacted_thinking",
                    "tool_use",
                    "tool_result",
                    "mid_conv_system",
                )
            )
        ),
    ),
    st.integers(min_value=2, max_value=600).map(
        lambda depth: [{"role": "user", "content": nested(depth, "x")}]
    ),
)

json_bodies = st.one_of(
    st.builds(broken, st.just("model"), not_a(str)),
    st.builds(broken, st.just("max_tokens"), not_a(int) | st.integers(max_value=0)),
    st.builds(broken, st.just("messages"), bad_messages),
    st.builds(broken, st.just("stream"), not_a(bool).filter(lambda value: value is not None)),
    st.builds(broken, st.just("temperature"), not_a(int, float).filter(lambda value: value is not None)),
    st.sampled_from(["model", "max_tokens", "messages"]).map(without),
    json_values.filter(lambda value: not isinstance(value, dict)),
).map(lambda body: json.dumps(body).encode())

raw_bodies = st.one_of(
    json_bodies,
    st.binary(max_size=200).filter(lambda data: not data.strip().startswith(b"{")),
    st.builds(
        lambda junk: b'{"model": "' + junk + b'", "max_tokens": 1, "messages": []}',
        st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]),
    ),
    st.integers(min_value=1, max_value=200_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(min_value=1, max_value=200_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.just(b""),
    st.just(b"   \n"),
    st.integers(min_value=MAX_BYTES + 1, max_value=MAX_BYTES * 3).map(
        lambda size: json.dumps({**VALID, "system": "x" * size}).encode()
    ),
)

content_types = st.sampled_from(
    [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=zzz",
        "application/json; charset=latin-1",
        None,
    ]
)
# Printable ASCII without surrounding blanks: what an HTTP client lets through as a header value.
request_ids = st.none() | st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=0, max_size=300
).map(str.strip)


@pytest.fixture(scope="module")
def fuzz_client(e2e_pool: ProxyPool) -> Iterator[httpx.Client]:
    url = e2e_pool.url(max_request_bytes=MAX_BYTES)
    e2e_pool.mock.reset()
    with httpx.Client(base_url=url, timeout=10.0) as client:
        yield client
    assert e2e_pool.mock.requests() == [], "no malformed request may reach the upstream"


@settings(
    max_examples=200,
    deadline=5000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(body=raw_bodies, content_type=content_types, request_id=request_ids)
def test_malformed_bodies_get_a_4xx_envelope(
    fuzz_client: httpx.Client, body: bytes, content_type: str | None, request_id: str | None
) -> None:
    headers = {"x-api-key": "client-key"}
    if content_type is not None:
        headers["content-type"] = content_type
    if request_id is not None:
        headers["request-id"] = request_id
    response = fuzz_client.post("/v1/messages", content=body, headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500], body[:200])
    event(f"status {response.status_code}")
    assert response.headers["content-type"] == "application/json"
    envelope = response.json()
    assert envelope["type"] == "error"
    assert isinstance(envelope["error"]["type"], str)
    assert isinstance(envelope["error"]["message"], str)
    assert envelope["error"]["message"]
    assert envelope["request_id"] == response.headers["request-id"]
    if response.status_code == 413:
        assert envelope["error"]["type"] == "request_too_large"
    else:
        assert envelope["error"]["type"] == "invalid_request_error"


@settings(max_examples=40, deadline=5000, database=None)
@given(
    method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "POST"]),
    path=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_/%.", max_size=40),
)
def test_unknown_routes_and_methods_are_4xx_envelopes(
    fuzz_client: httpx.Client, method: str, path: str
) -> None:
    response = fuzz_client.request(method, "/v1/messages/" + path if method == "POST" else "/v1/messages")
    if response.status_code == 200:
        return  # /v1/messages/count_tokens reached by chance
    assert 400 <= response.status_code < 500
    assert response.json()["type"] == "error"


def test_chunked_body_over_the_limit_is_a_413(fuzz_client: httpx.Client) -> None:
    """No content-length to judge by: the body is counted as it arrives and cut off at the limit."""

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BYTES // 1024 * 4):
            yield b"x" * 1024

    response = fuzz_client.post(
        "/v1/messages", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"
