"""A client that sends its body slowly gets a 408 once the body-read timeout has passed.

Without it a client sending one byte a second (slow loris) held its request, and whatever the layers
reserved for it, for as long as it liked: ASGI servers bound at most the silence between two reads.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.context import RequestContext
from ccproxy_asgi.errors import RequestTimeoutError
from ccproxy_asgi.plumbing.body import BODY_READ_TIMEOUT_SECONDS, read_body
from ccproxy_asgi.types import Message
from tests.support.e2e import CLIENT_KEY, E2E

BODY_TIMEOUT = 2.0
BODY = json.dumps(
    {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
).encode()


def send_slowly(base_url: str, body: bytes, *, interval: float, give_up_after: float) -> tuple[bytes, float]:
    """POST `body` one byte per `interval` seconds on a raw socket; (the answer, seconds until it came)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/messages HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n"
            b"x-api-key: " + CLIENT_KEY.encode() + b"\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        started = time.monotonic()
        sock.settimeout(interval)
        answer = b""
        sent = 0
        while time.monotonic() - started < give_up_after:
            if sent < len(body):
                try:
                    sock.sendall(body[sent : sent + 1])
                    sent += 1
                except OSError:  # the server answered and closed while we were still sending
                    sent = len(body)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                break
            answer += data
            head, _, rest = answer.partition(b"\r\n\r\n")
            if _ and len(rest) >= _content_length(head):
                break
        return answer, time.monotonic() - started


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def test_slow_loris_body_gets_a_408(e2e: E2E) -> None:
    base_url = e2e.proxy(body_read_timeout_seconds=BODY_TIMEOUT)
    answer, elapsed = send_slowly(base_url, BODY, interval=0.5, give_up_after=BODY_TIMEOUT + 8)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert BODY_TIMEOUT - 0.1 <= elapsed < BODY_TIMEOUT + 1.5, elapsed
    envelope = json.loads(body)
    assert envelope["type"] == "error"
    assert envelope["error"]["type"] == "timeout_error"
    assert f"{BODY_TIMEOUT:g} s" in envelope["error"]["message"]
    assert envelope["request_id"].startswith("req_")
    assert b"\r\nrequest-id: " + envelope["request_id"].encode() in head
    assert e2e.upstream_requests() == []


def test_slow_body_within_the_timeout_is_served(e2e: E2E) -> None:
    base_url = e2e.proxy(body_read_timeout_seconds=BODY_TIMEOUT)
    # The body in 8 pieces, 0.15 s apart: slow, but whole well within the timeout.
    pieces = [BODY[i : i + len(BODY) // 8 + 1] for i in range(0, len(BODY), len(BODY) // 8 + 1)]
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/messages HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n"
            b"x-api-key: " + CLIENT_KEY.encode() + b"\r\nconnection: close\r\n"
            b"content-length: " + str(len(BODY)).encode() + b"\r\n\r\n"
        )
        for piece in pieces:
            time.sleep(0.15)
            sock.sendall(piece)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]


# --- the setting and read_body itself -----------------------------------------------------------------


def test_the_setting_defaults_to_60_seconds_and_reads_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).body_read_timeout_seconds == 60.0  # type: ignore[call-arg]
    assert BODY_READ_TIMEOUT_SECONDS == 60.0
    monkeypatch.setenv("CCPROXY_BODY_READ_TIMEOUT_SECONDS", "7.5")
    assert Settings(_env_file=None).body_read_timeout_seconds == 7.5  # type: ignore[call-arg]


async def test_read_body_gives_up_at_its_time_limit() -> None:
    async def stalled() -> Message:
        await asyncio.sleep(0.05)
        return {"type": "http.request", "body": b"x", "more_body": True}

    started = time.monotonic()
    with pytest.raises(RequestTimeoutError) as raised:
        await read_body(stalled, RequestContext(), limit=1024, time_limit=0.3)
    assert 0.3 <= time.monotonic() - started < 1.0
    assert raised.value.status == 408
    assert raised.value.error_type == "timeout_error"


async def test_read_body_without_a_time_limit_waits() -> None:
    parts = [b'{"a":', b" 1}"]

    async def slow() -> Message:
        await asyncio.sleep(0.2)
        return {"type": "http.request", "body": parts.pop(0), "more_body": bool(parts)}

    assert await read_body(slow, RequestContext(), limit=1024, time_limit=None) == b'{"a": 1}'
