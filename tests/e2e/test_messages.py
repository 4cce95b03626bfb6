"""End to end: POST /v1/messages through uvicorn, the real mock upstream and the official `anthropic` SDK.

Every test asserts what the client got and what the upstream received (`mock.requests()`), with
Claude-Code-shaped requests: system blocks with `cache_control`, adaptive thinking, `output_config`,
`metadata.user_id` as a JSON string, `?beta=true` with a long `anthropic-beta` header.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest
from anthropic.types import ContentBlockParam

from tests.support.e2e import E2E
from tests.support.mock_process import MockUpstreamProcess, mock_upstream_fixture
from tests.support.sdk import first_text
from tests.support.stack import running_proxy

MODEL = "claude-sonnet-4-6"
SYSTEM_BLOCKS: list[dict[str, Any]] = [
    {
        "type": "text",
        "text": "You are Claude Code, Anthropic's official CLI for Claude.",
        "cache_control": {"type": "ephemeral"},
    },
    {"type": "text", "text": "Answer briefly.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
]
CC_USER_ID = json.dumps(
    {
        "device_id": "9f" * 32,
        "account_uuid": "7f4c1a52-3b8e-4d7a-9c61-2f0e8b5d9a13",
        "session_id": "0b9d2e71-6c4a-4f38-8e15-9a7c3d2b1f60",
    }
)
BETAS = [
    "claude-code-20250219",
    "oauth-2025-04-20",
    "interleaved-thinking-2025-05-14",
    "fine-grained-tool-streaming-2025-05-14",
    "context-management-2025-06-27",
    "context-1m-2025-08-07",
    "prompt-caching-2024-07-31",
    "token-counting-2024-11-01",
    "output-128k-2025-02-19",
    "effort-2025-11-24",
]
# Keys an OpenAI chat.completions body may carry; anything else at the upstream is a leak.
# A vLLM-like upstream that names the stop string it stopped on (`choices[].stop_reason`).
vllm_like_upstream = mock_upstream_fixture("--stop-reason", scope="module")
OPENAI_KEYS = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "response_format",
    "user",
}


def cc_params(text: str, **overrides: Any) -> dict[str, Any]:
    """Claude-Code-shaped parameters for `client.beta.messages.create/stream`."""
    params: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 2048,
        "system": SYSTEM_BLOCKS,
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "medium"},
        "metadata": {"user_id": CC_USER_ID},
        "betas": BETAS,
    }
    params.update(overrides)
    return params


def create(client: anthropic.Anthropic, *, stream: bool = False, **params: Any) -> Any:
    """One message through the beta resource (`?beta=true`), whole or streamed to the final message."""
    if stream:
        with client.beta.messages.stream(**params) as events:
            return events.get_final_message()
    return client.beta.messages.create(**params)


def user_texts(body: dict[str, Any]) -> list[Any]:
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


# ----- routes ---------------------------------------------------------------------------------------


def test_stream_is_decided_by_the_body_not_by_accept(e2e: E2E) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 256,
        "stream": True,
        "system": SYSTEM_BLOCKS,
        "messages": [{"role": "user", "content": "stream please"}],
    }
    # Claude Code sends `accept: application/json` on its streaming requests.
    streamed = e2e.post("/v1/messages?beta=true", body, headers={"accept": "application/json"})
    assert streamed.status == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    names = [name for name, _ in streamed.events]
    assert names[0] == "message_start"
    assert names[-1] == "message_stop"
    text = "".join(d["delta"]["text"] for d in streamed.of_type("content_block_delta"))
    assert text.startswith("Mock reply to: stream please")
    upstream = e2e.upstream_body()
    assert upstream["stream"] is True
    assert upstream["stream_options"] == {"include_usage": True}

    e2e.mock.clear_requests()
    whole = e2e.post(
        "/v1/messages?beta=true", {**body, "stream": False}, headers={"accept": "text/event-stream"}
    )
    assert whole.status == 200
    assert whole.headers["content-type"].startswith("application/json")
    message = whole.json()
    assert message["type"] == "message"
    assert message["content"][0]["text"].startswith("Mock reply to: stream please")
    assert e2e.upstream_body()["stream"] is False


def test_query_string_and_beta_resource(e2e: E2E) -> None:
    client = e2e.client()
    message = client.beta.messages.create(
        **cc_params("with a query"), extra_query={"beta": "true", "trace": "x y"}
    )
    assert message.content[-1].type == "text"
    assert message.content[-1].text.startswith("Mock reply to: with a query")
    request = e2e.upstream_requests()[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["query"] == {}  # the client's query string is not the upstream's business
    assert request["body"]["model"] == "gpt-4o"


def test_unknown_fields_and_a_long_beta_header_are_tolerated(e2e: E2E) -> None:
    long_beta = ",".join([*BETAS, *(f"future-feature-{i}-2026-01-01" for i in range(80))])
    assert len(long_beta) > 2000
    message = e2e.client().messages.create(
        **{k: v for k, v in cc_params("tolerant").items() if k != "betas"},
        extra_query={"beta": "true"},
        extra_headers={"anthropic-beta": long_beta, "x-claude-code-session-id": "abc"},
        extra_body={
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "service_tier": "auto",
            "inference_geo": "us",
            "some_future_field": {"nested": [1, 2, 3]},
        },
    )
    assert message.stop_reason == "end_turn"
    upstream = e2e.upstream_body()
    assert set(upstream) <= OPENAI_KEYS, set(upstream) - OPENAI_KEYS
    dumped = json.dumps(upstream)
    for leaked in (
        "context_management",
        "service_tier",
        "inference_geo",
        "some_future_field",
        "future-feature",
    ):
        assert leaked not in dumped
    headers = e2e.upstream_requests()[0]["headers"]
    assert "anthropic-beta" not in headers
    assert "anthropic-version" not in headers


@pytest.mark.parametrize("auth", ["x-api-key", "bearer"])
def test_client_auth_styles_accepted_and_upstream_gets_its_own_key(e2e: E2E, auth: str) -> None:
    # Inbound keys configured: once the auth layer is in the stack, both header styles must pass it.
    url = e2e.proxy(api_keys=[e2e.client_key])
    credential: dict[str, Any] = {"auth_token" if auth == "bearer" else "api_key": e2e.client_key}
    client = e2e.client(url, **credential)
    message = client.messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "who am i"}]
    )
    assert message.content[0].type == "text"
    headers = e2e.upstream_requests()[0]["headers"]
    assert headers["authorization"] == f"Bearer {e2e.upstream_key}"
    assert all(e2e.client_key not in value for value in headers.values())
    assert "x-api-key" not in headers


# ----- request translation -----------------------------------------------------------------------------


def test_system_blocks_joined_and_cache_control_dropped(e2e: E2E) -> None:
    message = create(e2e.client(), **cc_params("hello"))
    assert message.content[-1].text.startswith("Mock reply to: hello")
    upstream = e2e.upstream_body()
    assert upstream["messages"][0] == {
        "role": "system",
        "content": "You are Claude Code, Anthropic's official CLI for Claude.\n\nAnswer briefly.",
    }
    assert "cache_control" not in json.dumps(upstream)

    e2e.mock.clear_requests()
    e2e.client().messages.create(
        model=MODEL,
        max_tokens=64,
        system="Plain system prompt.",
        messages=[{"role": "user", "content": "hi"}],
    )
    assert e2e.upstream_body()["messages"][0] == {"role": "system", "content": "Plain system prompt."}


@pytest.mark.parametrize("stream", [False, True])
def test_system_role_message_stays_at_its_position(e2e: E2E, stream: bool) -> None:
    messages = [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "system", "content": "The user switched to plan mode."},
        {"role": "user", "content": "second question"},
    ]
    message = create(e2e.client(), stream=stream, **cc_params("x", messages=messages))
    assert message.content[-1].text.startswith("Mock reply to: second question")
    roles = [(m["role"], m["content"]) for m in e2e.upstream_body()["messages"]]
    assert roles[1:] == [
        ("user", "first question"),
        ("assistant", "first answer"),
        ("system", "The user switched to plan mode."),
        ("user", "second question"),
    ]
    assert roles[0][0] == "system"


def test_images_and_documents_become_openai_parts(e2e: E2E) -> None:
    content: list[ContentBlockParam] = [
        {"type": "text", "text": "describe these"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"},
            "title": "report",
        },
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "Plain notes."},
            "title": "notes",
        },
    ]
    message = e2e.client().messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": content}]
    )
    assert first_text(message.content).startswith("Mock reply to: describe these")
    parts = e2e.upstream_body()["messages"][0]["content"]
    assert parts[0] == {"type": "text", "text": "describe these"}
    assert parts[1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    assert parts[2] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
    assert parts[3] == {
        "type": "file",
        "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQK"},
    }
    assert parts[4]["type"] == "text"
    assert "Plain notes." in parts[4]["text"]
    assert "notes" in parts[4]["text"]
    assert len(parts) == 5


def test_model_mapping_exact_glob_big_small_and_requested_model_echoed(e2e: E2E) -> None:
    url = e2e.proxy(
        big_model="gpt-4.1",
        small_model="gpt-4o-mini",
        model_map={"my-exact-name": "gpt-5-mini", "team-*": "o3-mini"},
    )
    client = e2e.client(url)
    cases = {
        "my-exact-name": "gpt-5-mini",
        "team-fast": "o3-mini",
        "claude-opus-4-6": "gpt-4.1",
        "claude-sonnet-4-6": "gpt-4.1",
        "claude-haiku-4-5": "gpt-4o-mini",
        "qwen2.5-coder-32b": "qwen2.5-coder-32b",
    }
    for requested in cases:
        message = client.messages.create(
            model=requested, max_tokens=64, messages=[{"role": "user", "content": "which model"}]
        )
        assert message.model == requested
        with client.messages.stream(
            model=requested, max_tokens=64, messages=[{"role": "user", "content": "which model"}]
        ) as stream:
            assert stream.get_final_message().model == requested
    sent = [r["body"]["model"] for r in e2e.upstream_requests()]
    assert sent == [target for target in cases.values() for _ in range(2)]


def test_max_tokens_field_per_model_family(e2e: E2E) -> None:
    client = e2e.client(e2e.proxy(model_map={"local": "llama-3.3-70b-instruct"}))
    for model in ("gpt-4o", "gpt-5", "local"):
        client.messages.create(model=model, max_tokens=777, messages=[{"role": "user", "content": "n"}])
    gpt4o, gpt5, local = (r["body"] for r in e2e.upstream_requests())
    assert gpt4o["max_completion_tokens"] == 777
    assert "max_tokens" not in gpt4o
    assert gpt5["max_completion_tokens"] == 777
    assert "max_tokens" not in gpt5
    assert local["max_tokens"] == 777
    assert "max_completion_tokens" not in local
    assert local["model"] == "llama-3.3-70b-instruct"


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_model_gets_effort_and_no_sampling_or_stop(e2e: E2E, stream: bool) -> None:
    client = e2e.client(e2e.proxy(big_model="gpt-5"))
    message = create(
        client,
        stream=stream,
        **cc_params(
            "[[reply:one two STOPHERE three]]",
            output_config={"effort": "high"},
            stop_sequences=["STOPHERE"],
            extra_body={"temperature": 0.2, "top_p": 0.9},
        ),
    )
    upstream = e2e.upstream_body()
    assert upstream["model"] == "gpt-5"
    assert upstream["reasoning_effort"] == "high"
    for dropped in ("temperature", "top_p", "stop", "max_tokens"):
        assert dropped not in upstream
    assert upstream["max_completion_tokens"] == 2048
    # The stop sequence was not sent, so the proxy found it in the text itself.
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "STOPHERE"
    assert message.content[-1].text == "one two "


def test_thinking_budget_maps_to_effort_buckets(e2e: E2E) -> None:
    client = e2e.client(e2e.proxy(big_model="o3"))
    for budget in (1024, 2048, 8000):
        client.messages.create(
            model=MODEL,
            max_tokens=16000,
            thinking={"type": "enabled", "budget_tokens": budget},
            messages=[{"role": "user", "content": "think"}],
        )
    efforts = [r["body"]["reasoning_effort"] for r in e2e.upstream_requests()]
    assert efforts == ["low", "medium", "high"]
    assert all(r["body"]["model"] == "o3" for r in e2e.upstream_requests())


def test_non_reasoning_model_keeps_sampling_and_gets_no_effort(e2e: E2E) -> None:
    create(
        e2e.client(),
        **cc_params(
            "sampling",
            output_config={"effort": "high"},
            stop_sequences=["END1", "END2"],
            extra_body={"temperature": 0.2, "top_p": 0.9},
        ),
    )
    upstream = e2e.upstream_body()
    assert upstream["model"] == "gpt-4o"
    assert "reasoning_effort" not in upstream
    assert upstream["temperature"] == 0.2
    assert upstream["top_p"] == 0.9
    assert upstream["stop"] == ["END1", "END2"]


def test_output_config_format_becomes_response_format(e2e: E2E) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    output_config = {"effort": "low", "format": {"type": "json_schema", "schema": schema}}
    create(e2e.client(), **cc_params("json please", output_config=output_config))
    assert e2e.upstream_body()["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema, "strict": True},
    }


def test_metadata_user_id_becomes_user_of_at_most_64_chars(e2e: E2E) -> None:
    client = e2e.client()
    create(client, **cc_params("long id"))
    create(client, **cc_params("short id", metadata={"user_id": "user-42"}))
    long_user, short_user = (r["body"]["user"] for r in e2e.upstream_requests())
    assert len(CC_USER_ID) > 64
    assert 0 < len(long_user) <= 64
    assert long_user != CC_USER_ID[:64]
    assert short_user == "user-42"
    # Stable per user: the same id maps to the same value every time.
    create(client, **cc_params("long id again"))
    assert e2e.upstream_requests()[-1]["body"]["user"] == long_user


@pytest.mark.parametrize("stream", [False, True])
def test_more_than_four_stop_sequences_are_matched_by_the_proxy(e2e: E2E, stream: bool) -> None:
    stops = ["never-1", "never-2", "never-3", "never-4", "FENCE"]
    message = create(
        e2e.client(),
        stream=stream,
        **cc_params("[[reply:alpha beta FENCE gamma delta]]", stop_sequences=stops),
    )
    assert "stop" not in e2e.upstream_body()
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "FENCE"
    assert message.content[-1].text == "alpha beta "


def test_stop_sequences_sent_upstream_are_reported_when_the_upstream_names_them(
    e2e: E2E, vllm_like_upstream: MockUpstreamProcess
) -> None:
    with running_proxy(vllm_like_upstream) as url:
        client = e2e.client(url)
        for stream in (False, True):
            message = create(
                client,
                stream=stream,
                **cc_params("[[reply:red green WALL blue]]", stop_sequences=["WALL", "FENCE"]),
            )
            assert message.stop_reason == "stop_sequence"
            assert message.stop_sequence == "WALL"
            assert message.content[-1].text == "red green "
    bodies = [r["body"] for r in vllm_like_upstream.requests()]
    assert [b["stop"] for b in bodies] == [["WALL", "FENCE"], ["WALL", "FENCE"]]


# ----- response translation ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_upstream_reasoning_becomes_a_thinking_block(e2e: E2E, stream: bool, field: str) -> None:
    message = create(e2e.client(), stream=stream, **cc_params(f"ponder this [[reasoning:{field}]]"))
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Considering: ponder this"
    assert message.content[1].text.startswith("Mock reply to: ponder this")
    assert message.stop_reason == "end_turn"
    # The history's thinking never goes back upstream as text.
    assert "Considering" not in json.dumps(e2e.upstream_body())


@pytest.mark.parametrize("stream", [False, True])
def test_text_stop_reasons_ids_and_usage(e2e: E2E, stream: bool) -> None:
    client = e2e.client()
    plain = create(client, stream=stream, **cc_params("count me [[cached:0]]"))
    cached = create(client, stream=stream, **cc_params("count me [[cached:9]]"))
    assert plain.id.startswith("msg_")
    assert cached.id.startswith("msg_")
    assert plain.id != cached.id
    assert plain.type == "message"
    assert plain.role == "assistant"
    assert plain.model == MODEL
    assert plain.stop_reason == "end_turn"
    assert plain.stop_sequence is None
    assert plain.content[-1].text == (
        "Mock reply to: count me lorem ipsum dolor sit amet consectetur adipiscing"
    )
    assert plain.usage.cache_read_input_tokens == 0
    assert plain.usage.input_tokens > 0
    assert plain.usage.output_tokens > 0
    # The upstream's prompt_tokens include the cached ones; Anthropic's input_tokens exclude them.
    assert cached.usage.cache_read_input_tokens == 9
    assert cached.usage.input_tokens == plain.usage.input_tokens - 9
    assert cached.usage.output_tokens == plain.usage.output_tokens

    short = create(client, stream=stream, **cc_params("cut me short", max_tokens=3))
    assert short.stop_reason == "max_tokens"
    assert short.usage.output_tokens <= 3
    assert e2e.upstream_requests()[-1]["body"]["max_completion_tokens"] == 3


@pytest.mark.parametrize(
    ("big_model", "setting", "roles"),
    [
        ("qwen3-coder-30b", "auto", ["system", "user"]),  # self-hosted: the listing becomes user text
        ("gpt-4o", "auto", ["system", "user", "system"]),  # OpenAI accepts system messages anywhere
        ("gpt-4o", "user", ["system", "user"]),
    ],
)
def test_claude_codes_trailing_system_message_per_upstream_family(
    e2e: E2E, big_model: str, setting: str, roles: list[str]
) -> None:
    client = e2e.client(e2e.proxy(big_model=big_model, mid_conversation_system=setting))
    message = client.messages.create(
        model="claude-opus-4-8",
        max_tokens=64,
        system="You are Claude Code.",
        messages=[
            {"role": "user", "content": "hello"},
            {"role": "system", "content": "Available agent types: general-purpose"},
        ],
    )
    assert message.type == "message"
    sent = e2e.upstream_body()["messages"]
    assert [m["role"] for m in sent] == roles
    assert "Available agent types" in json.dumps(sent[1:])
