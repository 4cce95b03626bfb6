"""Property tests for `translate_request`.

1. Any valid Anthropic request translates to a body the OpenAI SDK's own request types accept, with
   the tool-pairing, tool-choice and naming invariants OpenAI enforces server-side.
2. Arbitrary JSON anywhere in a request yields a translation or an `InvalidRequestError`, never any
   other exception.

The SDK types are TypedDicts whose list fields are `Iterable[...]`, which pydantic validates lazily
(it returns a `ValidatorIterator`); `_validated` consumes every iterator so nested items are checked,
and strict mode stops coercions such as "12" → 12. `test_the_sdk_validator_catches_wrong_shapes`
shows the check has teeth.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from typing import Any, get_type_hints

import pydantic
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionToolMessageParam,
    ChatCompletionUserMessageParam,
)
from openai.types.chat import completion_create_params as params

from ccproxy_asgi import jsonutil
from ccproxy_asgi.errors import InvalidRequestError
from ccproxy_asgi.translate.options import ModelProfile, TranslationOptions, default_profile
from ccproxy_asgi.translate.request import TranslatedRequest, translate_request
from tests.fixtures.claude_code_request import build_claude_code_request

STREAMING = pydantic.TypeAdapter(params.CompletionCreateParamsStreaming)
NON_STREAMING = pydantic.TypeAdapter(params.CompletionCreateParamsNonStreaming)
OPENAI_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
REQUEST_KEYS = set(get_type_hints(params.CompletionCreateParamsStreaming)) | {"top_k"}
MESSAGE_KEYS = {
    "system": set(get_type_hints(ChatCompletionSystemMessageParam)),
    "user": set(get_type_hints(ChatCompletionUserMessageParam)),
    "assistant": set(get_type_hints(ChatCompletionAssistantMessageParam))
    | {"reasoning", "reasoning_content"},
    "tool": set(get_type_hints(ChatCompletionToolMessageParam)),
}

PROFILES = [
    default_profile("gpt-5"),
    default_profile("gpt-4o"),
    default_profile("o3"),
    default_profile("qwen3-coder"),
    ModelProfile(reasoning_echo="reasoning_content", tool_call_ids="alnum9", max_stop_sequences=2),
    ModelProfile(reasoning=True, reasoning_echo="reasoning", efforts=(), max_tool_description_chars=200),
]
OPTIONS = [
    TranslationOptions(),
    TranslationOptions(server_tool_artifacts="drop", user_id_field="safety_identifier"),
]


def _materialize(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _materialize(v) for k, v in value.items()}
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return value
    if isinstance(value, Iterable):
        return [_materialize(v) for v in value]
    return value


def _validated(payload: dict[str, Any]) -> Any:
    adapter = STREAMING if payload.get("stream") else NON_STREAMING
    return _materialize(adapter.validate_python(payload, strict=True))


def test_the_sdk_validator_catches_wrong_shapes() -> None:
    good = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "stream": False,
    }
    assert _validated(good)["messages"][0]["content"][0]["text"] == "hi"
    broken: list[dict[str, Any]] = [
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]},
        {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
        {
            "model": "m",
            "messages": [{"role": "assistant", "tool_calls": [{"id": "1", "function": {"name": "f"}}]}],
        },
        {"model": "m", "messages": [], "tool_choice": "any"},
        {"model": "m", "messages": [], "max_tokens": "12"},
        {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": "yes"}},
    ]
    for payload in broken:
        with pytest.raises(pydantic.ValidationError):
            _validated(payload)


# --- strategies for valid requests ---------------------------------------------------------------------

_text = st.text(max_size=40)
_nonempty = st.text(min_size=1, max_size=30)
_odd_name = st.one_of(
    st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,20}", fullmatch=True),
    st.text(alphabet=string.ascii_letters + "._:/ -ü日", min_size=1, max_size=20),
    st.text(alphabet=string.ascii_lowercase + "_", min_size=60, max_size=90),
)
_cache: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.just({}), st.just({"cache_control": {"type": "ephemeral"}})
)
_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_json_object = st.dictionaries(
    _text,
    st.recursive(
        _json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(_text, c, max_size=3), max_leaves=8
    ),
    max_size=4,
)


@st.composite
def _text_block(draw: st.DrawFn) -> dict[str, Any]:
    return {"type": "text", "text": draw(_text), **draw(_cache)}


@st.composite
def _image_block(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        media = draw(st.sampled_from(["image/png", "image/jpeg", "image/gif", "image/webp"]))
        return {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": media,
                "data": draw(st.from_regex(r"[A-Za-z0-9+/]{0,16}", fullmatch=True)),
            },
        }
    return {
        "type": "image",
        "source": {
            "type": "url",
            "url": "https://example.com/" + draw(st.from_regex(r"[a-z]{1,8}", fullmatch=True)),
        },
    }


@st.composite
def _document_block(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["pdf", "text", "content_str", "content_blocks"]))
    if kind == "pdf":
        source: dict[str, Any] = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQ="}
    elif kind == "text":
        source = {"type": "text", "media_type": "text/plain", "data": draw(_text)}
    elif kind == "content_str":
        source = {"type": "content", "content": draw(_text)}
    else:
        source = {
            "type": "content",
            "content": draw(st.lists(st.one_of(_text_block(), _image_block()), max_size=3)),
        }
    block: dict[str, Any] = {"type": "document", "source": source}
    if draw(st.booleans()):
        block["title"] = draw(_text)
    if draw(st.booleans()):
        block["context"] = draw(_text)
    return block


_search_result = st.builds(
    lambda title, text: {
        "type": "search_result",
        "source": "https://example.com",
        "title": title,
        "content": [{"type": "text", "text": text}],
    },
    _text,
    _text,
)
_user_extra = st.one_of(_text_block(), _image_block(), _document_block(), _search_result)


@st.composite
def _tool_result(draw: st.DrawFn, tool_id: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id}
    content = draw(
        st.one_of(
            st.none(),
            _text,
            st.lists(
                st.one_of(
                    _text_block(),
                    _image_block(),
                    _document_block(),
                    _search_result,
                    st.builds(lambda n: {"type": "tool_reference", "tool_name": n}, _nonempty),
                ),
                max_size=3,
            ),
        )
    )
    if content is not None:
        block["content"] = content
    if draw(st.booleans()):
        block["is_error"] = draw(st.booleans())
    return block


_server_artifact = st.sampled_from(
    [
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
        {
            "type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_1",
            "content": [
                {"type": "web_search_result", "title": "T", "url": "https://t", "encrypted_content": "e"}
            ],
        },
        {
            "type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_1",
            "content": {"type": "web_search_tool_result_error", "error_code": "unavailable"},
        },
        {
            "type": "bash_code_execution_tool_result",
            "tool_use_id": "srvtoolu_2",
            "content": {
                "type": "bash_code_execution_result",
                "stdout": "ok",
                "stderr": "",
                "return_code": 0,
                "content": [],
            },
        },
        {"type": "container_upload", "file_id": "file_1"},
    ]
)


@st.composite
def _conversation(draw: st.DrawFn, tool_names: list[str]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    id_counter = [0]

    def new_id() -> str:
        id_counter[0] += 1
        return draw(
            st.sampled_from(
                [f"toolu_{id_counter[0]:04d}", f"call:{id_counter[0]}", f"{'x' * 70}{id_counter[0]}"]
            )
        )

    if draw(st.booleans()):
        messages.append({"role": "assistant", "content": draw(_text)})
    pending: list[str] = []
    for _ in range(draw(st.integers(1, 5))):
        # user turn: the pending results first (in any order), then other content
        results = [draw(_tool_result(tool_id)) for tool_id in draw(st.permutations(pending))]
        extra = draw(st.lists(_user_extra, max_size=3))
        if draw(st.booleans()) and not results:
            messages.append({"role": "user", "content": draw(_text)})
        else:
            blocks = results + extra
            if draw(st.booleans()) and len(blocks) > 1:
                cut = draw(st.integers(1, len(blocks) - 1))
                messages.append({"role": "user", "content": blocks[:cut]})
                if draw(st.booleans()):
                    messages.append({"role": "system", "content": draw(_text)})
                messages.append({"role": "user", "content": blocks[cut:]})
            else:
                if draw(st.booleans()):
                    blocks.append(
                        {"type": "mid_conv_system", "content": [{"type": "text", "text": draw(_text)}]}
                    )
                messages.append({"role": "user", "content": blocks or [{"type": "text", "text": "."}]})
        pending = []
        if draw(st.booleans()):
            messages.append({"role": "system", "content": [{"type": "text", "text": draw(_text)}]})
        # assistant turn
        blocks = []
        if draw(st.booleans()):
            blocks.append({"type": "thinking", "thinking": draw(_text), "signature": "sig"})
        if draw(st.booleans()):
            blocks.append({"type": "redacted_thinking", "data": "opaque"})
        if draw(st.booleans()):
            blocks.append(draw(_server_artifact))
        if draw(st.booleans()):
            blocks.append(draw(_text_block()))
        names = tool_names or ["fallback_tool"]
        for _ in range(draw(st.integers(0, 3))):
            tool_id = new_id()
            pending.append(tool_id)
            blocks.append(
                {
                    "type": "tool_use",
                    "id": tool_id,
                    "name": draw(st.sampled_from(names)),
                    "input": draw(_json_object),
                }
            )
        if draw(st.booleans()) and len(blocks) > 1 and not pending:
            messages.append({"role": "assistant", "content": blocks[:1]})
            messages.append({"role": "assistant", "content": blocks[1:]})
        else:
            content: Any = blocks
            if not blocks and draw(st.booleans()):
                content = draw(_text)
            messages.append({"role": "assistant", "content": content})
    if pending:
        messages.append({"role": "user", "content": [draw(_tool_result(t)) for t in pending]})
    elif draw(st.booleans()):
        messages.append({"role": "user", "content": draw(_text)})
    return messages


@st.composite
def _tools(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(_odd_name, max_size=5, unique=True))
    tools: list[dict[str, Any]] = []
    for name in names:
        properties = draw(
            st.dictionaries(
                st.from_regex(r"[a-z]{1,6}", fullmatch=True),
                st.sampled_from([{"type": "string"}, {"type": "integer"}]),
                max_size=3,
            )
        )
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if draw(st.booleans()):
            schema |= {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "required": sorted(properties),
                "additionalProperties": False,
            }
        tool: dict[str, Any] = {"name": name, "input_schema": schema, **draw(_cache)}
        if draw(st.booleans()):
            tool["description"] = draw(st.text(max_size=300))
        if draw(st.booleans()):
            tool["strict"] = draw(st.booleans())
        tools.append(tool)
    if draw(st.booleans()) and "bash" not in names:
        tools.append({"type": "bash_20250124", "name": "bash"})
    return tools


@st.composite
def valid_requests(draw: st.DrawFn) -> dict[str, Any]:
    tools = draw(_tools())
    names = [t["name"] for t in tools]
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(["claude-sonnet-4-5", "claude-haiku-4-5", "gpt-4o"])),
        "max_tokens": draw(st.integers(1, 200_000)),
        "messages": draw(_conversation(names)),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "system": st.one_of(_text, st.lists(_text_block(), max_size=3)),
        "tools": st.just(tools),
        "stream": st.booleans(),
        "temperature": st.floats(0, 1),
        "top_p": st.floats(0, 1),
        "top_k": st.integers(1, 500),
        "stop_sequences": st.lists(_nonempty, max_size=6),
        "metadata": st.one_of(
            st.just({}), st.builds(lambda u: {"user_id": u}, st.one_of(st.none(), st.text(max_size=200)))
        ),
        "thinking": st.one_of(
            st.builds(lambda b: {"type": "enabled", "budget_tokens": b}, st.integers(0, 64_000)),
            st.just({"type": "adaptive"}),
            st.just({"type": "disabled"}),
        ),
        "output_config": st.fixed_dictionaries(
            {},
            optional={
                "effort": st.sampled_from(["low", "medium", "high", "xhigh", "max"]),
                "format": st.just(
                    {
                        "type": "json_schema",
                        "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
                    }
                ),
            },
        ),
        "context_management": st.just({"edits": []}),
        "service_tier": st.just("auto"),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            body[key] = draw(strategy)
    if draw(st.booleans()) and names:
        body["tool_choice"] = draw(
            st.one_of(
                st.builds(
                    lambda t, d: {"type": t, "disable_parallel_tool_use": d},
                    st.sampled_from(["auto", "any"]),
                    st.booleans(),
                ),
                st.just({"type": "none"}),
                st.builds(lambda n: {"type": "tool", "name": n}, st.sampled_from(names)),
            )
        )
    return body


# --- property 1: valid in, valid out -------------------------------------------------------------------


def _check_invariants(body: dict[str, Any], translated: TranslatedRequest, profile: ModelProfile) -> None:
    payload = translated.payload
    assert set(payload) <= REQUEST_KEYS, set(payload) - REQUEST_KEYS
    assert "n" not in payload
    jsonutil.dumps(payload)  # it can go on the wire

    open_calls: set[str] = set()
    previous_role = None
    for message in payload["messages"]:
        role = message["role"]
        assert set(message) <= MESSAGE_KEYS[role], set(message) - MESSAGE_KEYS[role]
        if role == "tool":
            assert previous_role in ("assistant", "tool"), (
                "tool message not right after the assistant's calls"
            )
            assert message["tool_call_id"] in open_calls, "tool message answers no open call"
            open_calls.discard(message["tool_call_id"])
        else:
            assert not open_calls, f"calls left unanswered: {open_calls}"
        if role == "assistant":
            calls = message.get("tool_calls") or []
            open_calls = {call["id"] for call in calls}
            assert len(open_calls) == len(calls)
            assert message["content"] is not None or calls
            for call in calls:
                assert OPENAI_NAME.fullmatch(call["function"]["name"])
                assert len(call["id"]) <= 64
                jsonutil.loads(call["function"]["arguments"])
        previous_role = role
    assert not open_calls

    tools = payload.get("tools", [])
    if not tools:
        assert "tool_choice" not in payload
        assert "parallel_tool_calls" not in payload
    client_names = {t["name"] for t in body.get("tools") or []}
    for tool in tools:
        upstream = tool["function"]["name"]
        assert OPENAI_NAME.fullmatch(upstream)
        assert translated.tool_names.client_name(upstream) in client_names
        assert translated.tool_names.upstream_name(translated.tool_names.client_name(upstream)) == upstream
        limit = profile.max_tool_description_chars
        if limit is not None:
            assert len(tool["function"].get("description", "")) <= limit
    assert len({t["function"]["name"] for t in tools}) == len(tools)

    stops = tuple(dict.fromkeys(body.get("stop_sequences") or []))
    if "stop" in payload:
        assert tuple(payload["stop"]) == stops
        assert len(stops) <= profile.max_stop_sequences
        assert translated.stop_sequences == ()
    else:
        assert translated.stop_sequences == stops
    if profile.reasoning:
        assert not {"temperature", "top_p", "stop"} & set(payload)
    else:
        assert "reasoning_effort" not in payload
    for field in ("user", "safety_identifier"):
        if field in payload:
            assert 0 < len(payload[field]) <= 64


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(body=valid_requests(), profile=st.sampled_from(PROFILES), options=st.sampled_from(OPTIONS))
def test_valid_requests_translate_to_valid_openai_requests(
    body: dict[str, Any], profile: ModelProfile, options: TranslationOptions
) -> None:
    translated = translate_request(body, upstream_model="upstream", profile=profile, options=options)
    _validated(translated.payload)
    _check_invariants(body, translated, profile)


@pytest.mark.parametrize("profile", PROFILES)
def test_claude_code_request_is_a_valid_openai_request(profile: ModelProfile) -> None:
    body = build_claude_code_request()
    translated = translate_request(
        body, upstream_model="upstream", profile=profile, options=TranslationOptions()
    )
    _validated(translated.payload)
    _check_invariants(body, translated, profile)


# --- property 2: hostile input -------------------------------------------------------------------------

_TAGS = [
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "search_result",
    "mid_conv_system",
    "server_tool_use",
    "web_search_tool_result",
    "base64",
    "url",
    "file",
    "content",
    "enabled",
    "adaptive",
    "disabled",
    "auto",
    "any",
    "tool",
    "none",
    "json_schema",
    "custom",
    "bash_20250124",
    "web_search_20250305",
    "user",
    "assistant",
    "system",
    "application/pdf",
    "tool_reference",
]
_KEYS = [
    "type",
    "text",
    "content",
    "id",
    "name",
    "input",
    "source",
    "tool_use_id",
    "is_error",
    "data",
    "media_type",
    "url",
    "title",
    "role",
    "thinking",
    "budget_tokens",
    "effort",
    "format",
    "schema",
    "user_id",
    "input_schema",
    "description",
    "strict",
    "disable_parallel_tool_use",
    "tool_name",
    "context",
]
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.sampled_from(_TAGS)
)
json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.one_of(st.sampled_from(_KEYS), st.text(max_size=8)), children, max_size=5)
    ),
    max_leaves=25,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position inside `value`, the root `()` included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.extend(_paths(child, (*prefix, index)))
    return found


_DELETE = object()


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """`value` with the item at `path` replaced by `new`, or removed when `new` is `_DELETE`."""
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy: Any = dict(value)
    else:
        copy = list(value)
    if rest:
        copy[head] = _replace(copy[head], rest, new)
    elif new is _DELETE:
        del copy[head]
    else:
        copy[head] = new
    return copy


def _translate_or_refuse(body: Any, profile: ModelProfile, options: TranslationOptions) -> None:
    try:
        translated = translate_request(body, upstream_model="upstream", profile=profile, options=options)
    except InvalidRequestError:
        return
    assert isinstance(translated.payload["messages"], list)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(
    body=valid_requests(),
    data=st.data(),
    profile=st.sampled_from(PROFILES),
    options=st.sampled_from([*OPTIONS, TranslationOptions(server_tools="drop")]),
)
def test_arbitrary_json_in_place_of_any_field(
    body: dict[str, Any], data: st.DataObject, profile: ModelProfile, options: TranslationOptions
) -> None:
    mutated: Any = body
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(mutated)
        path = data.draw(st.sampled_from(paths))
        if not path:
            mutated = data.draw(json_values)
        elif data.draw(st.booleans()):
            mutated = _replace(mutated, path, _DELETE)  # a missing field
        else:
            mutated = _replace(mutated, path, data.draw(json_values))
        if not isinstance(mutated, (dict, list)):
            break
    _translate_or_refuse(mutated, profile, options)


@settings(max_examples=300, deadline=None)
@given(
    body=st.one_of(
        json_values,
        st.dictionaries(
            st.sampled_from(
                [
                    "model",
                    "max_tokens",
                    "messages",
                    "system",
                    "tools",
                    "tool_choice",
                    "thinking",
                    "metadata",
                    "stop_sequences",
                    "output_config",
                    "stream",
                    "temperature",
                    "top_k",
                ]
            ),
            json_values,
        ),
    ),
    profile=st.sampled_from(PROFILES),
)
def test_arbitrary_json_bodies(body: Any, profile: ModelProfile) -> None:
    _translate_or_refuse(body, profile, TranslationOptions())


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(json_values, min_size=1, max_size=4), tools=json_values)
def test_arbitrary_messages_and_tools(messages: list[Any], tools: Any) -> None:
    assume(messages)
    body = {"model": "m", "max_tokens": 10, "messages": messages, "tools": tools}
    _translate_or_refuse(body, default_profile("gpt-4o"), TranslationOptions())
