"""A large request does not stall the proxy's other traffic.

A body of 850k tiny messages used to hold the event loop for 2 s on /v1/messages (5 s on count_tokens):
every other request through the same server waited that long. Translation and counting of a large
request now run in a worker thread, which hands the interpreter back to the loop every few ms.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from ccproxy_asgi.context import RequestContext
from ccproxy_asgi.endpoint.messages import OFFLOAD_BODY_BYTES, OFFLOAD_MESSAGES, MessagesHandler
from ccproxy_asgi.errors import InvalidRequestError
from ccproxy_asgi.tokens.counter import TokenCounter
from ccproxy_asgi.translate.models import ModelMapper
from ccproxy_asgi.translate.options import TranslationOptions, default_profile
from tests.fixtures.claude_code_request import build_claude_code_request
from tests.support.e2e import CLIENT_KEY, ProxyPool
from tests.support.server_process import ServerProcess, running_server
from tests.support.stack import UPSTREAM_KEY

# 400k one-word messages (13 MB). Before, small requests waited up to 1-2 s behind one of these (counting
# or translating it on the loop, on a loaded 2-core machine); now the wait is the parse, which orjson
# does holding the interpreter lock (about 0.15 s here), and the garbage collector's pauses.
MESSAGES = 400_000
BOUND_SECONDS = 0.5


def large_body() -> bytes:
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": "w"} for i in range(MESSAGES - 1)]
    messages.append({"role": "user", "content": "last"})
    body: dict[str, Any] = {"model": "claude-sonnet-4-6", "max_tokens": 8, "messages": messages}
    return orjson.dumps(body)


def latencies_during(base_url: str, path: str, content: bytes) -> tuple[int, list[float]]:
    """Send the large request in a thread; meanwhile time small requests one after another."""
    result: dict[str, int] = {}

    def large() -> None:
        with httpx.Client(base_url=base_url, timeout=120) as client:
            response = client.post(
                path, content=content, headers={"content-type": "application/json", "x-api-key": CLIENT_KEY}
            )
            response.read()
            result["status"] = response.status_code

    thread = threading.Thread(target=large)
    timings: list[float] = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        client.get("/v1/models", headers={"x-api-key": CLIENT_KEY})  # connected and warm
        thread.start()
        while thread.is_alive():
            started = time.perf_counter()
            response = client.get("/v1/models", headers={"x-api-key": CLIENT_KEY})
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200
            time.sleep(0.01)
    thread.join()
    return result["status"], timings


@pytest.fixture(scope="module")
def proxy(e2e_pool: ProxyPool) -> Iterator[ServerProcess]:
    """The proxy as a process of its own: the test's client threads must not compete with it for the
    interpreter lock, or the figure would measure them too."""
    env = {
        "CCPROXY_UPSTREAM_BASE_URL": e2e_pool.mock.openai_base_url,
        "CCPROXY_UPSTREAM_API_KEY": UPSTREAM_KEY,
        "CCPROXY_BREAKER_ENABLED": "false",
    }
    with running_server("uvicorn", env=env) as server:
        # Warm: the tokenizer's first load is a one-off cost that is not what this test is about.
        small = {
            "model": "claude-sonnet-4-6",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}],
        }
        for path in ("/v1/messages/count_tokens", "/v1/messages"):
            httpx.post(server.base_url + path, json=small, headers={"x-api-key": CLIENT_KEY}, timeout=30)
        yield server


@pytest.mark.parametrize("path", ["/v1/messages/count_tokens", "/v1/messages"])
def test_small_requests_flow_while_a_large_one_is_processed(proxy: ServerProcess, path: str) -> None:
    status, timings = latencies_during(proxy.base_url, path, large_body())
    assert status == 200
    assert len(timings) >= 5, timings  # the large request took long enough to measure anything
    slowest = max(timings)
    assert slowest < BOUND_SECONDS, f"a small request took {slowest:.2f} s ({len(timings)} samples)"


# --- the pieces: what goes to a worker thread, and the count that skips the cache ----------------------


def test_count_without_the_cache_is_the_same_count() -> None:
    body = build_claude_code_request(n_messages=120)
    # A PDF in a user turn (assistant turns may not carry documents).
    body["messages"][2]["content"].append(
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}
    )
    for tokenizer_for in (None, lambda model: None):  # exact, and the no-tokenizer estimate
        cached = TokenCounter(tokenizer_for=tokenizer_for)
        uncached = TokenCounter(tokenizer_for=tokenizer_for, max_cached_units=10)
        assert uncached.count_request(body, model="gpt-4o") == cached.count_request(body, model="gpt-4o")
        assert uncached.cache_stats().size == 0  # it did not fill the cache with entries it would evict


def test_count_without_the_cache_still_refuses_bad_input() -> None:
    body = build_claude_code_request(n_messages=30)
    body["messages"][7] = {"role": "user"}
    with pytest.raises(InvalidRequestError, match=r"messages\.7\.content: Field required"):
        TokenCounter(max_cached_units=5).count_request(body, model="gpt-4o")


async def test_many_units_are_counted_in_a_worker_thread() -> None:
    threads: list[threading.Thread] = []

    def tokenizer_for(model: str) -> None:
        threads.append(threading.current_thread())

    counter = TokenCounter(tokenizer_for=tokenizer_for, inline_units=50)
    few = {"messages": [{"role": "user", "content": "hi"}] * 50}
    many = {"messages": [{"role": "user", "content": "hi"}] * 51}
    await counter.acount_request(few, model="m")
    await counter.acount_request(many, model="m")
    assert threads[0] is threading.current_thread()
    assert threads[1] is not threading.current_thread()


def handler_recording_threads(threads: list[threading.Thread]) -> MessagesHandler:
    def profile_for(model: str) -> Any:
        threads.append(threading.current_thread())
        return default_profile(model)

    return MessagesHandler(
        provider=None,  # type: ignore[arg-type]  # translation never calls it
        models=ModelMapper(big_model="gpt-4o", small_model="gpt-4o-mini"),
        profile_for=profile_for,
        options=TranslationOptions(),
        ping_interval=10.0,
    )


@pytest.mark.parametrize(
    ("messages", "body_bytes", "off_loop"),
    [(10, 1000, False), (OFFLOAD_MESSAGES + 1, 1000, True), (10, OFFLOAD_BODY_BYTES + 1, True)],
    ids=["small", "many-messages", "many-bytes"],
)
async def test_large_requests_are_translated_in_a_worker_thread(
    messages: int, body_bytes: int, off_loop: bool
) -> None:
    threads: list[threading.Thread] = []
    handler = handler_recording_threads(threads)
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 8,
        "messages": [
            {"role": "user" if i % 2 == 0 else "assistant", "content": "w"} for i in range(messages)
        ],
    }
    ctx = RequestContext()
    ctx.body = b" " * body_bytes
    translated = await handler.translate_off_loop(body, ctx)
    assert len(translated.payload["messages"]) == messages
    assert ctx.upstream_model == "gpt-4o"
    assert (threads[0] is not threading.current_thread()) == off_loop
