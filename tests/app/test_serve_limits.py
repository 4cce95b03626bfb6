"""`ccproxy-asgi serve` bounds what a client can hold: idle connections, slow request heads, huge heads.

Each server is started as a user starts it (`python -m ccproxy_asgi serve --server X`, configured from
`CCPROXY_SERVER_*`) and driven over raw sockets:
- a connection that sends half a request head at one byte per 0.5 s (slow-loris) is closed once the head
  timeout is over;
- a connection that sends nothing, or nothing after its response, is closed after the keep-alive timeout
  (hypercorn and granian time the idle wait and the head as one: the smaller setting);
- a head over the size limit gets a 431 (or the connection closed), and a megabyte of header from
  several clients at once leaves the server's memory where it was;
- requests under the limits, with large bodies and reused connections, are served as before.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.mock_process import MockUpstreamProcess, mock_upstream_fixture
from tests.support.server_process import ServerProcess, running_server

SERVERS = tuple(name for name in ("uvicorn", "hypercorn", "granian") if importlib.util.find_spec(name))
KEEPALIVE = 2.5
HEADER_TIMEOUT = 1.0
MAX_HEAD = 32 * 1024
#: Scheduling slack on a busy machine; every limit is checked with at least this much room.
SLACK = 1.5
#: hypercorn and granian run one timer from idle to head complete: the smaller of the two settings.
IDLE_TIMEOUT = {"uvicorn": KEEPALIVE, "hypercorn": HEADER_TIMEOUT, "granian": HEADER_TIMEOUT}
#: How far past the setting a head may be before it is surely refused. hypercorn's h11 checks the size of
#: a head only while it is incomplete and reads 64 KiB at a time, so a head that arrives in one read is
#: parsed whole; granian (hyper) checks its read buffer when it is full, after a read that may be as large
#: as the limit. uvicorn's protocol counts the head itself.
SIZE_PRECISION = {"uvicorn": 1024, "hypercorn": 64 * 1024, "granian": MAX_HEAD}

mock_upstream = mock_upstream_fixture(scope="module")


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest, mock_upstream: MockUpstreamProcess) -> Iterator[ServerProcess]:
    env = {
        "CCPROXY_UPSTREAM_BASE_URL": mock_upstream.openai_base_url,
        "CCPROXY_UPSTREAM_API_KEY": "sk-upstream-limits",
        "CCPROXY_SERVER_KEEPALIVE_TIMEOUT_SECONDS": str(KEEPALIVE),
        "CCPROXY_SERVER_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "CCPROXY_SERVER_MAX_HEADER_BYTES": str(MAX_HEAD),
        "CCPROXY_ACCESS_LOG": "false",
    }
    with running_server(request.param, env=env) as proxy:
        yield proxy
    assert proxy.returncode == 0, proxy.stderr
    assert "Traceback" not in proxy.stderr, proxy.stderr


# ----- raw-socket helpers ---------------------------------------------------------------------------------


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def seconds_until_closed(sock: socket.socket, started: float, limit: float) -> float | None:
    """Read (and drop) whatever comes until the server closes; the time from `started`, or None if it
    was still open after `limit` seconds."""
    deadline = started + limit
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return time.monotonic() - started
        except TimeoutError:
            return None
        except ConnectionError:
            return time.monotonic() - started
    return None


def read_response(sock: socket.socket) -> tuple[int, bytes, bytes]:
    """Status, head and body of one `content-length` response (or a response cut by a close)."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {buffer[:200]!r}")
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    length = int(match.group(1)) if match else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ", 2)[1]), head, body


def get_root(sock: socket.socket, *extra_headers: bytes) -> int:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: proxy\r\n" + b"".join(extra_headers) + b"\r\n")
    status, _, _ = read_response(sock)
    return status


def status_for_head(server: ServerProcess, header_bytes: int) -> int | None:
    """The status a `GET /` with one header of `header_bytes` bytes gets; None: closed with no answer."""
    with connect(server) as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: proxy\r\nX-Padding: " + b"p" * header_bytes + b"\r\n\r\n")
        try:
            status, _, _ = read_response(sock)
        except ConnectionError:
            return None
        return status


def rss_kib(server: ServerProcess) -> int:
    """Resident memory of the server and its workers (Linux `/proc`)."""
    total = 0
    for pid in server.pids():
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


class SlowSender:
    """Sends `data` one byte every `interval` seconds on `sock` from a thread, until stopped or refused."""

    def __init__(self, sock: socket.socket, data: bytes, interval: float = 0.5) -> None:
        self._sock, self._data, self._interval = sock, data, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for byte in self._data:
            if self._stop.is_set():
                return
            try:
                self._sock.send(bytes([byte]))
            except OSError:
                return
            self._stop.wait(self._interval)

    def __enter__(self) -> SlowSender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# ----- time limits ----------------------------------------------------------------------------------------

HALF_A_HEAD = b"POST /v1/messages HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\nX-Slow: " + (
    b"s" * 200
)


def test_a_slow_loris_head_is_cut_at_the_header_timeout(server: ServerProcess) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        with SlowSender(sock, HALF_A_HEAD):
            closed_after = seconds_until_closed(sock, started, HEADER_TIMEOUT + SLACK)
    assert closed_after is not None, (
        f"{server.server} still held a slow head after {HEADER_TIMEOUT + SLACK} s"
    )
    assert closed_after >= HEADER_TIMEOUT * 0.8


def test_a_slow_head_after_a_response_is_cut_too(server: ServerProcess) -> None:
    with connect(server) as sock:
        assert get_root(sock) == 200
        started = time.monotonic()
        with SlowSender(sock, HALF_A_HEAD):
            closed_after = seconds_until_closed(sock, started, HEADER_TIMEOUT + SLACK)
    assert closed_after is not None, f"{server.server} still held a slow second head"


def test_a_connection_that_sends_nothing_is_closed(server: ServerProcess) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        closed_after = seconds_until_closed(sock, started, IDLE_TIMEOUT[server.server] + SLACK)
    assert closed_after is not None, f"{server.server} held a silent connection"
    assert closed_after >= IDLE_TIMEOUT[server.server] * 0.8


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(server: ServerProcess) -> None:
    with connect(server) as sock:
        assert get_root(sock) == 200
        started = time.monotonic()
        closed_after = seconds_until_closed(sock, started, IDLE_TIMEOUT[server.server] + SLACK)
    assert closed_after is not None, f"{server.server} held an idle keep-alive connection"
    # Not cut early: the keep-alive timeout is the one configured, not some other limit.
    assert closed_after >= IDLE_TIMEOUT[server.server] * 0.8


def test_a_connection_used_within_the_idle_timeout_stays_open(server: ServerProcess) -> None:
    with connect(server) as sock:
        for _ in range(3):
            assert get_root(sock) == 200
            time.sleep(IDLE_TIMEOUT[server.server] / 3)
        assert get_root(sock) == 200


# ----- size limits ----------------------------------------------------------------------------------------


def test_a_head_over_the_limit_gets_431(server: ServerProcess) -> None:
    status = status_for_head(server, MAX_HEAD + SIZE_PRECISION[server.server])
    assert status in (431, None), f"{server.server} answered {status} to a head over the limit"


def test_a_head_under_the_limit_is_served(server: ServerProcess) -> None:
    assert status_for_head(server, MAX_HEAD - 1024) == 200


def test_many_small_headers_over_the_limit_get_431(server: ServerProcess) -> None:
    over = MAX_HEAD + SIZE_PRECISION[server.server]
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 80) for i in range(over // 88 + 10))
    with connect(server) as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: proxy\r\n" + headers + b"\r\n")
        try:
            status: int | None = read_response(sock)[0]
        except ConnectionError:
            status = None
    assert status in (431, None), f"{server.server} answered {status}"


def test_megabyte_headers_are_refused_without_growing_memory(server: ServerProcess) -> None:
    # Warm up what a first request allocates, so only what the big heads cost is measured.
    with connect(server) as sock:
        for _ in range(5):
            assert get_root(sock) == 200
    before = rss_kib(server)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: status_for_head(server, 1024 * 1024), range(32)))
    assert set(statuses) <= {431, None}, statuses
    grown = rss_kib(server) - before
    # Unbounded (uvicorn before its limits) this grew by 27-30 MiB; bounded, by 0.1-2 MiB (up to 4 on a
    # loaded machine, where more of the 8 connections hold their buffers at once).
    assert grown < 8 * 1024, f"{server.server} grew by {grown} KiB for 32 refused 1 MB heads"
    # And it still serves.
    with connect(server) as sock:
        assert get_root(sock) == 200


# ----- what must keep working -----------------------------------------------------------------------------


def test_large_bodies_and_reused_connections_are_served(server: ServerProcess) -> None:
    # A body is not a head: a megabyte of JSON arriving with the head in the same reads is fine.
    text = "word " * 200_000
    body = {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": text}]}
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        for _ in range(3):
            response = client.post("/v1/messages", json=body, headers={"x-api-key": "k"})
            assert response.status_code == 200, response.text
            assert response.json()["type"] == "message"
        counted = client.post("/v1/messages/count_tokens", json=body, headers={"x-api-key": "k"})
        assert counted.status_code == 200, counted.text


def test_a_reply_slower_than_every_timeout_is_not_cut(
    server: ServerProcess, mock_upstream: MockUpstreamProcess
) -> None:
    # The client sends nothing while its request is in flight: no head or idle timer may run meanwhile.
    mock_upstream.reset()
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    mock_upstream.queue_faults({"fault": "slow", "delay": KEEPALIVE + HEADER_TIMEOUT})
    started = time.monotonic()
    with (
        httpx.Client(base_url=server.base_url, timeout=30.0) as client,
        client.stream("POST", "/v1/messages", json=body, headers={"x-api-key": "k"}) as response,
    ):
        assert response.status_code == 200
        text = "".join(response.iter_text())
    assert "event: message_stop" in text
    assert time.monotonic() - started > KEEPALIVE + HEADER_TIMEOUT
