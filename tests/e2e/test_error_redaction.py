"""Upstream error text is passed on only after redaction: configured keys in any form, URL credentials,
stack traces and file paths never reach a client, and the status stays what it was.

End to end: the mock upstream echoes them in its JSON error message (400, 429, 500); a purpose-built
upstream sends a plain-text traceback. The proxy's upstream key here is a bare string, not `sk-…` shaped,
so only knowing the configured key can find it.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest

from ccproxy_asgi.logs import bind_request
from ccproxy_asgi.provider.error_mapping import map_upstream_error, parse_error_body
from ccproxy_asgi.provider.redaction import MAX_SCANNED, PATH, TRACE_REMOVED, redact_error_text
from tests.e2e.test_retry_after import Reply, ScriptedUpstream, Stack, raw_post
from tests.e2e.test_retry_after import stack as stack
from tests.support.e2e import E2E

BARE_KEY = "Zq7vBareUpstreamKey0042xy"
ODD_KEY = 'pa/ss+wo=rd"x'  # characters that URL and JSON escaping change
MODEL = "claude-sonnet-4-6"
MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]

LEAKY = (
    f"Invalid API key {BARE_KEY} for http://admin:pw@internal.example:8080/v1/keys; "
    "model file /opt/models/llama-3/config.json not found\n"
    "Traceback (most recent call last):\n"
    '  File "/srv/gateway/app/server.py", line 212, in handle\n'
    "    raise KeyError(key)\n"
    f"KeyError: '{BARE_KEY}'"
)
SECRETS = (BARE_KEY, "admin:pw", "pw@", "Traceback", "/srv/gateway", "server.py", "/opt/models", "line 212")


def assert_clean(message: str) -> None:
    for secret in SECRETS:
        assert secret not in message, f"{secret!r} reached the client: {message!r}"


@pytest.fixture
def upstream(stack: Stack) -> ScriptedUpstream:
    stack.upstream.reset()
    return stack.upstream


# ----- end to end ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "exc_class"),
    [
        ({"fault": "400"}, 400, anthropic.BadRequestError),
        ({"fault": "429", "retry_after": 0}, 429, anthropic.RateLimitError),
        ({"fault": "500"}, 500, anthropic.InternalServerError),
        ({"fault": "404"}, 404, anthropic.NotFoundError),
    ],
)
def test_secrets_in_an_upstream_error_message_do_not_reach_the_client(
    e2e: E2E, fault: dict[str, Any], status: int, exc_class: type[anthropic.APIStatusError]
) -> None:
    e2e.mock.queue_faults({**fault, "message": LEAKY})
    client = e2e.client(e2e.proxy(upstream_api_key=BARE_KEY, retry_max_attempts=1))
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model=MODEL, max_tokens=32, messages=MESSAGES)
    error = caught.value
    assert type(error) is exc_class
    assert error.status_code == status
    message = error.body["error"]["message"]  # type: ignore[index]
    assert_clean(message)
    assert "Invalid API key" in message, "the useful part of the message is kept"
    assert "<path>" in message
    assert_clean(error.response.text)


@pytest.mark.parametrize("stream", [True, False])
def test_an_error_sent_inside_a_200_is_redacted_too(e2e: E2E, stream: bool) -> None:
    # `{"error": ...}` as a stream chunk after the 200 (an SSE error event), or as a 500 when not streaming.
    e2e.mock.queue_faults({"fault": "error_chunk", "message": LEAKY})
    url = e2e.proxy(upstream_api_key=BARE_KEY, retry_max_attempts=1)
    response = e2e.post(
        "/v1/messages", {"model": MODEL, "max_tokens": 32, "messages": MESSAGES, "stream": stream}, base_url=url
    )
    assert response.text, "an error reached the client"
    assert "Invalid API key" in response.text
    assert_clean(response.text)


def test_a_plain_text_traceback_from_the_upstream_is_cut(stack: Stack, upstream: ScriptedUpstream) -> None:
    upstream.reset(default=Reply(500, [], LEAKY.encode(), content_type="text/plain"))
    response = raw_post(stack.proxy(upstream_api_key=BARE_KEY, retry_max_attempts=1))
    assert response.status_code == 500
    assert_clean(response.text)
    assert response.json()["error"]["message"].startswith("upstream error (500): Invalid API key")


def test_a_key_near_the_length_cap_is_not_cut_in_half_and_left(
    stack: Stack, upstream: ScriptedUpstream
) -> None:
    # The message is capped at 1,000 characters: redacting after the cut would leave the key's first half.
    text = "x" * 990 + " " + BARE_KEY + " tail"
    upstream.reset(default=Reply(400, [], json.dumps({"error": {"message": text}}).encode()))
    response = raw_post(stack.proxy(upstream_api_key=BARE_KEY, retry_max_attempts=1))
    assert response.status_code == 400
    assert BARE_KEY[:6] not in response.text


# ----- the rules, one by one -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Configured keys in any form: bare, other case, URL- and JSON-escaped.
        (f"key {BARE_KEY} refused", "key *** refused"),
        (f"key {BARE_KEY.lower()} refused", "key *** refused"),
        (f"key {BARE_KEY.upper()}!", "key ***!"),
        (f"pass {ODD_KEY} refused", "pass *** refused"),
        ("pass pa%2Fss%2Bwo%3Drd%22x refused", "pass *** refused"),
        ('pass pa/ss+wo=rd\\"x refused', "pass *** refused"),
        # Shaped secrets, whoever they belong to.
        ("bad sk-proj-abcdefghijkl0123 key", "bad *** key"),
        ("header Bearer abc.def-ghi was sent", "header Bearer *** was sent"),
        ("header Basic dXNlcjpwYXNzd29yZA== was sent", "header Basic *** was sent"),
        ("Incorrect API key provided: sk-test-************cdef.", "Incorrect API key provided: ***."),
        ("GET /v1/x?api_key=abc123&model=m failed", "GET /v1/x?api_key=***&model=m failed"),
        ("GET https://h/x?access_token=abc#f failed", "GET https://h/x?access_token=***#f failed"),
        # URL credentials, with or without a password.
        ("see http://admin:pw@host:8080/x", "see http://***@host:8080/x"),
        ("clone https://ghp_token123@github.com/o/r.git", "clone https://***@github.com/o/r.git"),
        ("redis://:s3cret@redis:6379/0 down", "redis://***@redis:6379/0 down"),
        # File paths, not routes, pointers or model names.
        ("open /srv/app/main.py failed", f"open {PATH} failed"),
        ("no /opt/models/llama/config.json", f"no {PATH}"),
        ("in /home/deploy/x", f"in {PATH}"),
        ("in ~/.cache/huggingface/hub", f"in {PATH}"),
        ("at C:\\Users\\bob\\app\\server.py now", f"at {PATH} now"),
        ("POST /v1/chat/completions is not allowed", "POST /v1/chat/completions is not allowed"),
        ("invalid /messages/0/content/1", "invalid /messages/0/content/1"),
        ("model meta-llama/Llama-3.1-8B or gpt-4.1", "model meta-llama/Llama-3.1-8B or gpt-4.1"),
        ("https://platform.openai.com/account/api-keys.", "https://platform.openai.com/account/api-keys."),
        ("ratio 1/2 and a/b/c", "ratio 1/2 and a/b/c"),
    ],
)
def test_redaction_rules(text: str, expected: str) -> None:
    assert redact_error_text(text, [BARE_KEY, ODD_KEY]) == expected


def test_a_python_traceback_is_cut_and_frame_lines_dropped() -> None:
    assert redact_error_text("bad input\nTraceback (most recent call last):\n  File ...") == "bad input"
    assert redact_error_text("Traceback (most recent call last):\n  File ...") == TRACE_REMOVED
    framed = 'error in handler\n  File "/x/y.py", line 3, in f\n    return g()\nValueError: no\nnext'
    assert redact_error_text(framed) == "error in handler\nValueError: no\nnext"


def test_javascript_and_java_frames_are_dropped() -> None:
    text = "TypeError: x is undefined\n    at handle (/srv/app/x.js:10:5)\n\tat com.a.B.c(B.java:12)\nend"
    assert redact_error_text(text) == "TypeError: x is undefined\nend"


def test_registered_and_bound_secrets_are_masked_too() -> None:
    client_key = "client-presented-key-0123"
    with bind_request("req_1", [client_key]):
        assert redact_error_text(f"echo {client_key}") == "echo ***"


def test_only_a_bounded_prefix_is_scanned_and_no_half_key_is_left() -> None:
    text = "y" * (MAX_SCANNED - 5) + " " + BARE_KEY
    out = redact_error_text(text, [BARE_KEY])
    assert len(out) <= MAX_SCANNED
    assert BARE_KEY[:4] not in out


def test_the_message_is_redacted_before_it_is_capped() -> None:
    body = json.dumps({"error": {"message": "x" * 995 + " " + BARE_KEY}}).encode()
    detail = parse_error_body(body, [BARE_KEY])
    assert BARE_KEY[:4] not in detail.message
    assert len(detail.message) <= 1000


def test_map_upstream_error_keeps_the_status_and_drops_the_secrets() -> None:
    body = json.dumps({"error": {"message": LEAKY}}).encode()
    for status, expected in ((400, 400), (404, 404), (429, 429), (500, 500), (503, 529)):
        error = map_upstream_error(status, {}, body, secrets=[BARE_KEY])
        assert error.status == expected
        assert_clean(error.message)
