"""`create_mock_app` served in-process by aiohttp's test server: the paths SDK tests do not reach."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ccproxy_asgi.mock_upstream import MOCK_UPSTREAM, MockConfig, create_mock_app

CHAT = "/v1/chat/completions"


def chat_body(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
async def make_client() -> AsyncIterator[Any]:
    clients: list[TestClient[Any, Any]] = []

    async def make(config: MockConfig | None = None) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(TestServer(create_mock_app(config)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def test_api_key_strict_models_and_validation(make_client: Any) -> None:
    client = await make_client(MockConfig(api_key="sekret", strict_models=True, models=("m1",)))
    denied = await client.post(CHAT, json=chat_body())
    assert denied.status == 401
    assert (await denied.json())["error"]["code"] == "invalid_api_key"
    auth = {"authorization": "Bearer sekret"}
    unknown = await client.post(CHAT, json=chat_body(), headers=auth)
    assert unknown.status == 404
    assert (await unknown.json())["error"]["code"] == "model_not_found"
    ok = await client.post(CHAT, json={**chat_body(), "model": "m1"}, headers=auth)
    assert ok.status == 200
    broken = await client.post(CHAT, data=b"{not json", headers=auth)
    assert broken.status == 400
    no_model = await client.post(CHAT, json={"messages": [{"role": "user", "content": "x"}]}, headers=auth)
    assert (await no_model.json())["error"]["param"] == "model"
    bad_fault = await client.post(
        CHAT, json={**chat_body(), "model": "m1"}, headers={**auth, "x-mock-fault": "zap"}
    )
    assert bad_fault.status == 400
    assert "invalid mock fault" in (await bad_fault.json())["error"]["message"]
    recorded = client.app[MOCK_UPSTREAM].recorder.entries() if client.app else []
    assert [entry["body"] for entry in recorded][3] == "{not json"


async def test_non_stream_cut_and_malformed(make_client: Any) -> None:
    client = await make_client()
    malformed = await client.post(CHAT, json=chat_body(), headers={"x-mock-fault": "malformed"})
    assert malformed.status == 200
    with pytest.raises(ValueError, match=r"(?i)json|unterminated|expecting"):
        await malformed.json()
    cut = await client.post(CHAT, json=chat_body(), headers={"x-mock-fault": "cut"})
    with pytest.raises(aiohttp.ClientPayloadError):
        await cut.read()


async def test_fault_queue_endpoints(make_client: Any) -> None:
    client = await make_client()
    queued = await client.post("/mock/faults", json=[{"fault": "429", "retry_after": 3}, "slow:delay=0.1"])
    assert await queued.json() == {"queued": 2}
    listing = await (await client.get("/mock/faults")).json()
    assert [f["fault"] for f in listing["faults"]] == ["429", "slow"]
    assert listing["faults"][0]["retry_after"] == 3
    single = await client.post("/mock/faults", json={"fault": "500"})
    assert await single.json() == {"queued": 3}
    await client.delete("/mock/faults")
    assert await (await client.get("/mock/faults")).json() == {"faults": []}
    assert (await client.post("/mock/faults", data=b"[")).status == 400


async def test_chunk_delay_spaces_the_chunks(make_client: Any) -> None:
    client = await make_client(MockConfig(chunk_delay=0.05, chunks=2))
    response = await client.post(CHAT, json=chat_body(stream=True))
    arrivals = []
    async for line in response.content:
        if line.startswith(b"data: "):
            arrivals.append(asyncio.get_running_loop().time())
    assert len(arrivals) == 5  # role, 2 content, finish, [DONE]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert min(gaps) >= 0.04


async def test_hang_ends_when_the_client_leaves(make_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = await make_client()
    with caplog.at_level(logging.WARNING), pytest.raises(asyncio.TimeoutError):
        await client.post(
            CHAT, json=chat_body(), headers={"x-mock-fault": "hang"}, timeout=aiohttp.ClientTimeout(0.2)
        )
    await asyncio.sleep(0.2)  # the handler notices the closed connection and returns
    assert (await client.get("/health")).status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_prompt_directives_script_faults_and_latency(make_client: Any) -> None:
    client = await make_client()
    faulted = await client.post(CHAT, json=chat_body("[[fault:503]] please"))
    assert faulted.status == 503
    assert (await faulted.json())["error"]["code"] == "server_is_overloaded"
    started = asyncio.get_running_loop().time()
    slow = await client.post(CHAT, json=chat_body("[[latency:0.15]]"))
    assert slow.status == 200
    assert asyncio.get_running_loop().time() - started >= 0.15


async def test_unknown_route_is_openai_404(make_client: Any) -> None:
    client = await make_client()
    response = await client.post("/v1/completions", json={})
    assert response.status == 404
    assert (await response.json())["error"]["message"] == "Invalid URL (POST /v1/completions)"
