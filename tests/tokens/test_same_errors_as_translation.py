"""The token count refuses a malformed request with the translation's own message, word for word.

Both read the request through `ccproxy_asgi.translate.fields`. Starting from well-formed requests (a
Claude Code one, and one with every kind of block and top-level field), one value anywhere is broken
at a time: whenever the count refuses the result, the translation refuses it with the same message;
whenever only the translation does, the reason is one of the rules the count leaves to it (fields a
count does not take, tool pairing, unique names, what the upstream cannot be sent).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccproxy_asgi.errors import InvalidRequestError
from ccproxy_asgi.tokens.counter import TokenCounter
from ccproxy_asgi.translate.options import TranslationOptions, default_profile
from ccproxy_asgi.translate.request import translate_request
from tests.fixtures.claude_code_request import build_claude_code_request

UPSTREAM = "gpt-4o"
PNG = "iVBORw0KGgo="
PDF = "JVBERi0xLjQK"
TEXT: dict[str, Any] = {"type": "text", "text": "see"}

EVERY_KIND: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 256,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "tools": [
        {
            "name": "Read",
            "description": "Read a file.",
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
            "strict": False,
        },
        {"type": "bash_20250124", "name": "bash"},
    ],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": False},
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}},
    "messages": [
        {
            "role": "user",
            "content": [
                TEXT,
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
                },
                {
                    "type": "document",
                    "source": {"type": "text", "data": "notes"},
                    "title": "N",
                    "context": "C",
                },
                {
                    "type": "document",
                    "source": {
                        "type": "content",
                        "content": [
                            TEXT,
                            {"type": "image", "source": {"type": "url", "url": "https://e.x/b.png"}},
                        ],
                    },
                },
                {"type": "search_result", "title": "T", "source": "https://e.x", "content": [TEXT]},
                {"type": "mid_conv_system", "content": [TEXT]},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "c2ln"},
                {"type": "redacted_thinking", "data": "ZW5j"},
                TEXT,
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "/a"}},
                {
                    "type": "server_tool_use",
                    "id": "srvtoolu_1",
                    "name": "web_search",
                    "input": {"query": "q"},
                },
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "is_error": False,
                    "content": [
                        TEXT,
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                        {"type": "document", "source": {"type": "text", "data": "out"}},
                        {"type": "search_result", "title": "T", "source": "s", "content": [TEXT]},
                        {"type": "tool_reference", "tool_name": "Read"},
                    ],
                }
            ],
        },
        {"role": "system", "content": [TEXT]},
        {"role": "user", "content": "ok"},
    ],
}
BASES = [
    EVERY_KIND,
    build_claude_code_request(n_tools=4, system_bytes=300, n_messages=6, include_system_message=True),
]

# What only the translation refuses: fields a count does not take, rules across fields, and what the
# upstream cannot be sent.
TRANSLATION_ONLY = re.compile(
    r"^(model|max_tokens|stream|temperature|top_p|top_k|stop_sequences|metadata)[.:]"
    r"|^messages: List should have at least 1 item"
    r"|`tool_use` ids were found without `tool_result` blocks"
    r"|unexpected `tool_use_id` found in `tool_result` blocks"
    r"|`tool_use` ids must be unique"
    r"|^tools: Tool names must be unique"
    r"|^tool_choice\.name: tool '.*' is not among the request's tools"
    r"|: server tool .* is executed by Anthropic's servers"
    r"|: (URL PDF documents|file_id sources) .* not supported"
)
BROKEN_VALUES: list[Any] = [None, 7, "", True, [], {}, {"type": "bogus"}, [{"type": "text"}], "x"]
_DELETE = object()


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found: list[tuple[str | int, ...]] = []
    items: list[tuple[str | int, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


def _broken(base: dict[str, Any], path: tuple[str | int, ...], replacement: Any) -> dict[str, Any]:
    body = copy.deepcopy(base)
    parent: Any = body
    for key in path[:-1]:
        parent = parent[key]
    if replacement is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return body


def _outcome(run: Any) -> str | None:
    try:
        run()
    except InvalidRequestError as exc:
        return exc.message
    return None


def _compare(body: dict[str, Any]) -> None:
    counted = _outcome(lambda: TokenCounter().count_request(body, model=UPSTREAM))
    translated = _outcome(
        lambda: translate_request(
            body, upstream_model=UPSTREAM, profile=default_profile(UPSTREAM), options=TranslationOptions()
        )
    )
    if counted is not None:
        assert translated == counted
    elif translated is not None:
        assert TRANSLATION_ONLY.search(translated), translated


@pytest.mark.parametrize("base", BASES, ids=["every-kind", "claude-code"])
def test_the_bases_are_well_formed(base: dict[str, Any]) -> None:
    assert TokenCounter().count_request(base, model=UPSTREAM) > 0
    translate_request(
        base, upstream_model=UPSTREAM, profile=default_profile(UPSTREAM), options=TranslationOptions()
    )


@st.composite
def broken_requests(draw: st.DrawFn) -> dict[str, Any]:
    base = draw(st.sampled_from(BASES))
    path = draw(st.sampled_from(_paths(base)))
    replacement = draw(st.sampled_from([_DELETE, *BROKEN_VALUES]))
    return _broken(base, path, replacement)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=broken_requests())
def test_one_broken_field_is_refused_alike(body: dict[str, Any]) -> None:
    _compare(body)


@pytest.mark.parametrize("replacement", [_DELETE, *BROKEN_VALUES], ids=repr)
def test_every_field_of_every_block_broken_every_way(replacement: Any) -> None:
    # The exhaustive sweep over the small request; the property above samples both.
    for path in _paths(EVERY_KIND):
        _compare(_broken(EVERY_KIND, path, replacement))
