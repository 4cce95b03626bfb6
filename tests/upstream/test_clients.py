"""Both `UpstreamClient` implementations against a real HTTP server on a free port.

Every test runs for aiohttp, httpx and httpx2 (the httpx client forced onto each library). Resource
warnings are errors here: a leaked session, connector or socket fails the test that leaked it.
"""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from ccproxy_asgi.errors import UpstreamError, UpstreamTimeoutError
from ccproxy_asgi.upstream import (
    DEFAULT_USER_AGENT,
    AiohttpUpstreamClient,
    FirstByteTimeoutClient,
    HTTPClientConfig,
    HttpxUpstreamClient,
    UpstreamClient,
    UpstreamResponse,
    create_upstream_client,
)
from tests.support.echo_server import EchoServer, blackhole_port, echo_json, refused_port, run_echo_server

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

KINDS = ["aiohttp", "httpx", "httpx2"]
MakeClient = Callable[..., UpstreamClient]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def _server() -> AsyncIterator[EchoServer]:
    async with run_echo_server() as server:
        yield server


@pytest.fixture
def server(_server: EchoServer) -> EchoServer:
    _server.reset()
    return _server


@pytest_asyncio.fixture(params=KINDS, loop_scope="session")
async def make_client(request: pytest.FixtureRequest) -> AsyncIterator[MakeClient]:
    """A factory of clients of one kind; every client it made is closed after the test."""
    kind: str = request.param
    if kind == "httpx2":
        pytest.importorskip("httpx2")
    made: list[UpstreamClient] = []

    def make(**overrides: Any) -> UpstreamClient:
        # trust_env off: a proxy variable in the environment must not reroute 127.0.0.1.
        config = HTTPClientConfig(**{"trust_env": False, **overrides})
        client: UpstreamClient
        if kind == "aiohttp":
            client = AiohttpUpstreamClient(config)
        else:
            client = HttpxUpstreamClient(config, library="httpx2" if kind == "httpx2" else "httpx")
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


def busy_connections(client: UpstreamClient) -> int:
    """Connections checked out of the pool (library internals, to prove nothing leaked)."""
    if isinstance(client, AiohttpUpstreamClient):
        session = client._session
        return 0 if session is None else len(session.connector._acquired)  # type: ignore[union-attr]
    assert isinstance(client, HttpxUpstreamClient)
    pool = client._client._transport._pool  # type: ignore[attr-defined]
    return sum(1 for connection in pool.connections if not connection.is_idle())


def open_connections(client: UpstreamClient) -> int:
    """Connections the pool still holds, busy or idle."""
    if isinstance(client, AiohttpUpstreamClient):
        session = client._session
        if session is None or session.connector is None:
            return 0
        connector: Any = session.connector
        return len(connector._acquired) + sum(len(conns) for conns in connector._conns.values())
    assert isinstance(client, HttpxUpstreamClient)
    return len(client._client._transport._pool.connections)  # type: ignore[attr-defined]


async def collect(response: UpstreamResponse, into: list[bytes]) -> None:
    """Read the stream into `into`, so a test can check what arrived before a failure."""
    async for chunk in response.aiter_bytes():
        into.append(chunk)


async def next_disconnect(server: EchoServer) -> str:
    async with asyncio.timeout(3):
        return await server.disconnects.get()


# --- round trip -------------------------------------------------------------------------------------


async def test_status_headers_and_body_round_trip(server: EchoServer, make_client: MakeClient) -> None:
    client = make_client()
    body = b'{"model": "m", "text": "h\xc3\xa9llo"}'
    async with await client.send(
        "POST",
        f"{server.url}/echo?x=1",
        headers={"Authorization": "Bearer sk-test", "Content-Type": "application/json", "X-Extra": "1"},
        content=body,
    ) as response:
        assert response.status == 200
        assert response.headers["x-custom-header"] == "yes"
        assert response.headers["X-CUSTOM-HEADER"] == "yes"
        payload = echo_json(await response.read())
    assert payload["method"] == "POST"
    assert payload["path"] == "/echo?x=1"
    assert payload["body"] == body.decode("latin-1")
    headers = {k.lower(): v for k, v in payload["headers"].items()}  # type: ignore[attr-defined]
    assert headers["authorization"] == "Bearer sk-test"
    assert headers["content-length"] == str(len(body))
    assert headers["x-extra"] == "1"
    assert headers["user-agent"] == DEFAULT_USER_AGENT


async def test_request_user_agent_wins_over_default(server: EchoServer, make_client: MakeClient) -> None:
    client = make_client()
    async with await client.send("GET", f"{server.url}/echo", headers={"User-Agent": "mine/1"}) as response:
        payload = echo_json(await response.read())
    assert {k.lower(): v for k, v in payload["headers"].items()}["user-agent"] == "mine/1"  # type: ignore[attr-defined]


@pytest.mark.parametrize("code", [400, 404, 429, 500, 503])
async def test_error_status_is_returned_not_raised(
    server: EchoServer, make_client: MakeClient, code: int
) -> None:
    client = make_client()
    async with await client.send("GET", f"{server.url}/status/{code}", headers={}) as response:
        assert response.status == code
        assert await response.read() == f"status {code}".encode()


async def test_redirects_are_not_followed(server: EchoServer, make_client: MakeClient) -> None:
    client = make_client()
    async with await client.send("GET", f"{server.url}/status/307", headers={}) as response:
        assert response.status == 307
        assert response.headers["location"].endswith("/elsewhere")


async def test_gzip_body_is_decoded(server: EchoServer, make_client: MakeClient) -> None:
    client = make_client()
    async with await client.send("GET", f"{server.url}/gzip", headers={}) as response:
        assert await response.read() == b"hello " * 100


async def test_upstream_cookies_do_not_carry_over(server: EchoServer, make_client: MakeClient) -> None:
    client = make_client()
    # A host name, not an IP: aiohttp's default jar ignores cookies from IP hosts anyway.
    base = server.url.replace("127.0.0.1", "localhost")
    async with await client.send("GET", f"{base}/set-cookie", headers={}) as response:
        assert "session=from-upstream" in response.headers["set-cookie"]
        await response.read()
    async with await client.send("GET", f"{base}/echo", headers={}) as response:
        payload = echo_json(await response.read())
    assert "cookie" not in {k.lower() for k in payload["headers"]}  # type: ignore[attr-defined]


async def test_connection_is_reused_after_full_read(server: EchoServer, make_client: MakeClient) -> None:
    client = make_client(max_connections=1, pool_timeout=0.5, connect_timeout=0.5)
    for _ in range(5):
        async with await client.send("GET", f"{server.url}/echo", headers={}) as response:
            await response.read()
    assert busy_connections(client) == 0
    assert open_connections(client) == 1


# --- streaming ---------------------------------------------------------------------------------------


async def test_stream_chunks_arrive_incrementally(server: EchoServer, make_client: MakeClient) -> None:
    client = make_client()
    async with await client.send("GET", f"{server.url}/two-chunks", headers={}) as response:
        chunks = response.aiter_bytes()
        async with asyncio.timeout(3):
            first = await anext(chunks)
        # The server holds the second chunk until we have seen the first: no buffering in between.
        assert not server.second_chunk_sent.is_set()
        assert first == b"data: first\n\n"
        server.gate.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert rest == b"data: second\n\n"


async def test_early_stop_closes_the_half_read_connection(
    server: EchoServer, make_client: MakeClient
) -> None:
    client = make_client(max_connections=1, pool_timeout=1.0, connect_timeout=1.0)
    async with await client.send("GET", f"{server.url}/endless", headers={}) as response:
        async for _chunk in response.aiter_bytes():
            break
    assert await next_disconnect(server) == "endless"
    assert busy_connections(client) == 0
    async with await client.send("GET", f"{server.url}/echo", headers={}) as response:
        assert response.status == 200


# --- transport failures ------------------------------------------------------------------------------


async def test_connection_refused_is_upstream_error(make_client: MakeClient) -> None:
    client = make_client()
    with pytest.raises(UpstreamError) as info:
        await client.send("GET", f"http://127.0.0.1:{refused_port()}/v1", headers={})
    assert info.value.status == 502
    assert str(info.value) == "upstream connection error: connection refused"


async def test_connect_timeout(make_client: MakeClient) -> None:
    client = make_client(connect_timeout=0.3)
    async with blackhole_port() as port:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeoutError) as info:
            await client.send("GET", f"http://127.0.0.1:{port}/", headers={})
    assert time.monotonic() - started < 3
    assert info.value.status == 504
    assert "connect timed out" in str(info.value)


async def test_read_timeout_waiting_for_head(server: EchoServer, make_client: MakeClient) -> None:
    client = make_client(read_timeout=0.3)
    with pytest.raises(UpstreamTimeoutError, match=r"read timed out after 0\.3 s"):
        await client.send("GET", f"{server.url}/stall-head", headers={})
    # The timed-out request's connection is closed, so the upstream stops working on it.
    assert await next_disconnect(server) == "stall-head"


async def test_read_timeout_mid_body(server: EchoServer, make_client: MakeClient) -> None:
    client = make_client(read_timeout=0.3)
    async with await client.send("GET", f"{server.url}/stall-body", headers={}) as response:
        received: list[bytes] = []
        with pytest.raises(UpstreamTimeoutError):
            await collect(response, received)
    assert received == [b"partial"]
    assert await next_disconnect(server) == "stall-body"
    assert busy_connections(client) == 0


async def test_per_request_timeout_overrides_read_timeout(
    server: EchoServer, make_client: MakeClient
) -> None:
    client = make_client(read_timeout=60)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError, match=r"after 0\.2 s"):
        await client.send("GET", f"{server.url}/stall-head", headers={}, timeout=0.2)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("path", ["/cut", "/cut-length"])
async def test_cut_stream_raises_instead_of_ending(
    server: EchoServer, make_client: MakeClient, path: str
) -> None:
    client = make_client()
    async with await client.send("GET", f"{server.url}{path}", headers={}) as response:
        received: list[bytes] = []
        with pytest.raises(UpstreamError, match=r"^upstream connection error: "):
            await collect(response, received)
    assert received  # the part before the cut did arrive
    assert busy_connections(client) == 0


async def test_cut_body_raises_from_read(server: EchoServer, make_client: MakeClient) -> None:
    client = make_client()
    async with await client.send("GET", f"{server.url}/cut", headers={}) as response:
        with pytest.raises(UpstreamError):
            await response.read()


async def test_pool_timeout_when_every_connection_is_busy(
    server: EchoServer, make_client: MakeClient
) -> None:
    # aiohttp bounds the pool wait and the connect together, so keep both short.
    client = make_client(max_connections=1, pool_timeout=0.3, connect_timeout=0.2)
    holder = await client.send("GET", f"{server.url}/endless", headers={})
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        await client.send("GET", f"{server.url}/echo", headers={})
    assert time.monotonic() - started < 3
    await holder.aclose()
    async with await client.send("GET", f"{server.url}/echo", headers={}) as response:
        assert response.status == 200


# --- cancellation (the client of the proxy went away) ------------------------------------------------


@pytest.mark.parametrize("careful", [True, False], ids=["async-with", "no-aclose"])
async def test_cancel_mid_stream_aborts_upstream_and_frees_the_connection(
    server: EchoServer, make_client: MakeClient, careful: bool
) -> None:
    client = make_client(max_connections=1, pool_timeout=1.0, connect_timeout=1.0)
    got_chunk = asyncio.Event()

    async def consume() -> None:
        response = await client.send("GET", f"{server.url}/endless", headers={})
        if careful:
            async with response:
                async for _chunk in response.aiter_bytes():
                    got_chunk.set()
        else:
            # A careless caller that never closes the response: aiter_bytes must close it itself.
            async for _chunk in response.aiter_bytes():
                got_chunk.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(3):
        await got_chunk.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await next_disconnect(server) == "endless"
    assert busy_connections(client) == 0
    # With a single connection allowed, this only works if the cancelled one was given back.
    async with await client.send("GET", f"{server.url}/echo", headers={}) as response:
        assert response.status == 200


async def test_cancel_while_waiting_for_head(server: EchoServer, make_client: MakeClient) -> None:
    client = make_client(max_connections=1, pool_timeout=1.0, connect_timeout=1.0)
    task = asyncio.create_task(client.send("GET", f"{server.url}/stall-head", headers={}))
    async with asyncio.timeout(3):
        await server.stall_started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await next_disconnect(server) == "stall-head"
    assert busy_connections(client) == 0
    async with await client.send("GET", f"{server.url}/echo", headers={}) as response:
        assert response.status == 200


# --- lifecycle and resources -------------------------------------------------------------------------


@contextmanager
def resource_leaks() -> Iterator[list[str]]:
    """Collects ResourceWarnings and loop exception-handler reports (aiohttp's "Unclosed client
    session" / "Unclosed connector") raised until the block ends and garbage is collected."""
    loop = asyncio.get_running_loop()
    found: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: found.append(str(context.get("message"))))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield found
            # Sessions, connectors and transports die in turn, and a caught warning keeps its source
            # alive: collect, drop what was caught, and collect again until nothing more goes.
            while gc.collect() or caught:
                found.extend(str(w.message) for w in caught if issubclass(w.category, ResourceWarning))
                caught.clear()
    finally:
        loop.set_exception_handler(previous)


async def test_leak_detector_sees_an_unclosed_session(server: EchoServer) -> None:
    # Control: the harness below must notice what aclose() is supposed to prevent.
    with resource_leaks() as found:
        session = aiohttp.ClientSession()
        async with session.get(f"{server.url}/echo") as response:
            await response.read()
        del session, response
    assert any("Unclosed" in message for message in found)


async def test_aclose_releases_everything(server: EchoServer, make_client: MakeClient) -> None:
    with resource_leaks() as found:
        client = make_client()
        async with client:
            for path in ("/echo", "/two-chunks"):
                server.gate.set()
                async with await client.send("GET", f"{server.url}{path}", headers={}) as response:
                    await response.read()
            assert open_connections(client) >= 1
        assert open_connections(client) == 0
        await client.aclose()  # idempotent
        with pytest.raises(RuntimeError):
            await client.send("GET", f"{server.url}/echo", headers={})
        del client, response
    assert found == []


async def test_secrets_stay_out_of_errors_and_reprs(make_client: MakeClient) -> None:
    client = make_client()
    url = f"http://user:pw-SECRET-1@127.0.0.1:{refused_port()}/v1/chat?api-key=qs-SECRET-2"
    with pytest.raises(UpstreamError) as info:
        await client.send("POST", url, headers={"Authorization": "Bearer sk-SECRET-3"}, content=b"{}")
    texts = [repr(client), repr(HTTPClientConfig())]
    error: BaseException | None = info.value
    while error is not None:
        texts += [str(error), repr(error)]
        error = error.__cause__ or error.__context__
    assert not [text for text in texts if "SECRET" in text]


async def test_http2_flag_still_talks_http1_to_a_plain_server(server: EchoServer) -> None:
    async with HttpxUpstreamClient(HTTPClientConfig(http2=True, trust_env=False)) as client:
        response = await client.send("GET", f"{server.url}/echo", headers={})
        async with response:
            assert response.status == 200


# --- configuration and factory -----------------------------------------------------------------------


def test_config_defaults() -> None:
    config = HTTPClientConfig()
    assert config.max_connections == 200
    assert config.keepalive_connections == 200
    assert config.connect_timeout == 10.0
    assert config.read_timeout == 600.0
    assert config.http2 is False
    assert HTTPClientConfig(max_keepalive_connections=5).keepalive_connections == 5


@pytest.mark.parametrize(
    "bad",
    [
        {"max_connections": 0},
        {"max_keepalive_connections": -1},
        {"connect_timeout": 0},
        {"read_timeout": -1},
        {"pool_timeout": 0},
    ],
)
def test_config_rejects_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        HTTPClientConfig(**bad)


async def test_factory() -> None:
    aiohttp_client = create_upstream_client("aiohttp", HTTPClientConfig(trust_env=False))
    httpx_client = create_upstream_client("httpx")
    try:
        assert isinstance(aiohttp_client, AiohttpUpstreamClient)
        assert isinstance(httpx_client, HttpxUpstreamClient)
        assert isinstance(aiohttp_client, UpstreamClient)
        assert isinstance(httpx_client, UpstreamClient)
        expected = "httpx2"
        try:
            import httpx2  # noqa: F401
        except ImportError:
            expected = "httpx"
        assert httpx_client.library == expected
    finally:
        await aiohttp_client.aclose()
        await httpx_client.aclose()
    with pytest.raises(ValueError, match="unknown upstream client kind"):
        create_upstream_client("requests", None)  # type: ignore[arg-type]


# --- first-byte timeout (issue 11) ---------------------------------------------------------------------


async def test_first_byte_timeout_bounds_the_wait_for_the_head(
    server: EchoServer, make_client: MakeClient
) -> None:
    client = make_client(read_timeout=60)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError) as info:
        await client.send("GET", f"{server.url}/stall-head", headers={}, first_byte_timeout=0.3)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 2
    assert info.value.status == 504
    assert str(info.value) == "upstream timeout: first byte timed out after 0.3 s (no response head)"
    # The connection is closed, so the upstream stops working on the abandoned request.
    assert await next_disconnect(server) == "stall-head"
    assert busy_connections(client) == 0
    async with await client.send("GET", f"{server.url}/echo", headers={}) as response:
        assert response.status == 200


async def test_first_byte_timeout_does_not_bound_the_body(
    server: EchoServer, make_client: MakeClient
) -> None:
    # The head comes at once, then the body stalls: only the read timeout may end that.
    client = make_client(read_timeout=0.6)
    started = time.monotonic()
    async with await client.send(
        "GET", f"{server.url}/stall-body", headers={}, first_byte_timeout=0.2
    ) as response:
        received: list[bytes] = []
        with pytest.raises(UpstreamTimeoutError, match=r"read timed out after 0\.6 s"):
            await collect(response, received)
    assert time.monotonic() - started >= 0.6
    assert received == [b"partial"]
    assert await next_disconnect(server) == "stall-body"


async def test_read_timeout_still_fires_first_when_shorter(
    server: EchoServer, make_client: MakeClient
) -> None:
    # A first-byte timeout never lengthens the wait: a shorter read timeout ends a silent head first.
    client = make_client(read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError, match=r"read timed out after 0\.3 s"):
        await client.send("GET", f"{server.url}/stall-head", headers={}, first_byte_timeout=30)
    assert time.monotonic() - started < 3


async def test_no_first_byte_timeout_unless_asked(server: EchoServer, make_client: MakeClient) -> None:
    # The config's value is for the caller to pass (streams); a request without it waits for the read
    # timeout, as a non-streaming request must.
    client = make_client(read_timeout=0.5, first_byte_timeout=0.1)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError, match=r"read timed out after 0\.5 s"):
        await client.send("GET", f"{server.url}/stall-head", headers={})
    assert time.monotonic() - started >= 0.5


async def test_first_byte_timeout_covers_the_connect(make_client: MakeClient) -> None:
    client = make_client(connect_timeout=30, pool_timeout=30)
    async with blackhole_port() as port:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeoutError, match=r"first byte timed out after 0\.3 s"):
            await client.send("GET", f"http://127.0.0.1:{port}/", headers={}, first_byte_timeout=0.3)
    assert time.monotonic() - started < 3


async def test_first_byte_timeout_leaves_a_prompt_head_alone(
    server: EchoServer, make_client: MakeClient
) -> None:
    client = make_client()
    for _ in range(3):
        async with await client.send(
            "GET", f"{server.url}/echo", headers={}, first_byte_timeout=5
        ) as response:
            assert response.status == 200
            await response.read()
    assert busy_connections(client) == 0


async def test_cancel_during_first_byte_wait_is_a_cancel_not_a_timeout(
    server: EchoServer, make_client: MakeClient
) -> None:
    # The caller's own cancellation (its client went away) must stay a CancelledError, never turn into
    # a timeout error that someone would answer.
    client = make_client(max_connections=1, pool_timeout=1.0, connect_timeout=1.0)
    task = asyncio.create_task(
        client.send("GET", f"{server.url}/stall-head", headers={}, first_byte_timeout=30)
    )
    async with asyncio.timeout(3):
        await server.stall_started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await next_disconnect(server) == "stall-head"
    assert busy_connections(client) == 0


async def test_first_byte_timeout_view_passes_the_timeout_on(
    server: EchoServer, make_client: MakeClient
) -> None:
    client = make_client(read_timeout=60)
    view = FirstByteTimeoutClient(client, 0.2)
    assert isinstance(view, UpstreamClient)
    with pytest.raises(UpstreamTimeoutError, match=r"first byte timed out after 0\.2 s"):
        await view.send("GET", f"{server.url}/stall-head", headers={})
    await view.aclose()  # the view owns nothing: the client stays usable
    async with await client.send("GET", f"{server.url}/echo", headers={}) as response:
        assert response.status == 200


def test_first_byte_timeout_config() -> None:
    assert HTTPClientConfig().first_byte_timeout == 45.0
    assert HTTPClientConfig(first_byte_timeout=None).first_byte_timeout is None
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="first_byte_timeout must be positive or None"):
            HTTPClientConfig(first_byte_timeout=bad)
