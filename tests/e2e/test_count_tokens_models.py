"""End to end: count_tokens, the models routes, the root route, and the endpoint mounted under a prefix."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import pytest
from anthropic.types.beta import BetaToolParam
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from ccproxy_asgi.app import create_app
from tests.fixtures.claude_code_request import build_claude_code_request
from tests.support.e2e import E2E
from tests.support.proxy_server import serve_app
from tests.support.sdk import first_text
from tests.support.stack import proxy_settings

MODEL = "claude-sonnet-4-6"
TOOL: BetaToolParam = {
    "name": "get_weather",
    "description": "Weather for a city, today and the next days.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}


def test_count_tokens_counts_system_messages_and_tools_offline(e2e: E2E) -> None:
    client = e2e.client()
    messages: list[Any] = [{"role": "user", "content": "How warm is it in Oslo today?"}]
    bare = client.messages.count_tokens(model=MODEL, messages=messages)
    with_system = client.messages.count_tokens(
        model=MODEL,
        messages=messages,
        system=[
            {"type": "text", "text": "You are a weather bot. " * 20, "cache_control": {"type": "ephemeral"}}
        ],
    )
    with_tools = client.beta.messages.count_tokens(
        model=MODEL, messages=messages, tools=[TOOL], betas=["token-counting-2024-11-01"]
    )
    assert bare.input_tokens > 5
    assert with_system.input_tokens > bare.input_tokens + 60
    assert with_tools.input_tokens > bare.input_tokens + 10
    # Counting happens in the proxy: nothing reached the upstream.
    assert e2e.upstream_requests() == []


def test_count_tokens_of_a_claude_code_request(e2e: E2E) -> None:
    body = build_claude_code_request()
    params = {k: body[k] for k in ("model", "messages", "system", "tools", "thinking")}
    params["model"] = MODEL
    small = e2e.client().messages.count_tokens(**{**params, "tools": params["tools"][:1]})
    full = e2e.client().messages.count_tokens(**params)
    # The 24 tools (one with a ~19 KB description) are counted, not ignored.
    assert full.input_tokens > small.input_tokens + 4000
    assert e2e.upstream_requests() == []


def test_count_tokens_errors_are_anthropic_envelopes(e2e: E2E) -> None:
    client = e2e.client()
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.count_tokens(model=MODEL, messages="not a list")  # type: ignore[arg-type]
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert caught.value.request_id
    assert caught.value.request_id.startswith("req_")


def test_models_list_and_retrieve(e2e: E2E) -> None:
    url = e2e.proxy(big_model="gpt-4.1", small_model="gpt-4o-mini", model_map={"my-alias": "gpt-5"})
    client = e2e.client(url)
    page = client.models.list()
    ids = [model.id for model in page.data]
    assert {"my-alias", "gpt-5", "gpt-4.1", "gpt-4o-mini"} <= set(ids)
    assert all(model.type == "model" for model in page.data)
    assert page.first_id == ids[0]
    assert page.last_id == ids[-1]
    assert page.has_more is False

    limited = client.models.list(limit=1)
    assert [m.id for m in limited.data] == ids[:1]
    assert limited.has_more is True

    one = client.models.retrieve("claude-sonnet-4-6")
    assert one.id == "claude-sonnet-4-6"
    assert one.type == "model"
    assert one.display_name
    assert client.models.retrieve("my-alias").id == "my-alias"
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.models.retrieve("no-such-model-anywhere")
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert e2e.upstream_requests() == []


def test_models_list_includes_the_upstreams_own_models_when_configured(e2e: E2E) -> None:
    client = e2e.client(e2e.proxy(upstream_list_models=True))
    ids = [model.id for model in client.models.list(limit=100).data]
    # The mock's catalogue (DEFAULT_MODELS) that no mapping mentions.
    assert {"gpt-4.1", "gpt-5-mini", "o3-mini"} <= set(ids)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_root_answers_at_once_without_the_upstream(e2e: E2E, method: str) -> None:
    http = e2e.http()
    started = time.monotonic()
    response = http.request(method, "/")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.headers["request-id"].startswith("req_")
    if method == "GET":
        assert response.json()["status"] == "ok"
    assert elapsed < 2.0  # generous: a pre-connect must never wait on anything
    assert e2e.upstream_requests() == []


def test_mounted_under_a_prefix_without_its_lifespan(e2e: E2E) -> None:
    async def health(request: Any) -> PlainTextResponse:
        return PlainTextResponse("parent ok")

    # Starlette does not run a mounted app's lifespan: the endpoint must open its HTTP client lazily.
    parent = Starlette(
        routes=[
            Route("/health", health),
            Mount("/anthropic", app=create_app(proxy_settings(e2e.mock))),
        ]
    )
    with serve_app(parent) as url:
        client = e2e.client(url + "/anthropic")
        message = client.beta.messages.create(
            model=MODEL,
            max_tokens=64,
            messages=[{"role": "user", "content": "mounted hello"}],
            betas=["claude-code-20250219"],
        )
        assert first_text(message.content).startswith("Mock reply to: mounted hello")
        with client.messages.stream(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "mounted stream"}]
        ) as stream:
            assert first_text(stream.get_final_message().content).startswith("Mock reply to: mounted stream")
        count = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "count"}])
        assert count.input_tokens > 0
        assert "gpt-4o" in [m.id for m in client.models.list().data]
        assert client.models.retrieve("claude-haiku-4-5").id == "claude-haiku-4-5"
        http = e2e.http(url)
        assert http.get("/anthropic/").json()["status"] == "ok"
        assert http.get("/health").text == "parent ok"
        missing = http.get("/anthropic/v1/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "not_found_error"
    bodies = [r["body"] for r in e2e.upstream_requests()]
    assert [b["stream"] for b in bodies] == [False, True]
    assert all(b["model"] == "gpt-4o" for b in bodies)
