"""What the end-to-end suites drive: a pool of proxies in front of one mock upstream, SDK and raw
clients, and a raw SSE reader. The fixtures that hand these out are in `tests/conftest.py`."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx

from tests.support.mock_process import MockUpstreamProcess
from tests.support.stack import UPSTREAM_KEY, running_proxy

CLIENT_KEY = "sk-ant-client-key-must-not-reach-upstream"


class ProxyPool:
    """Proxies in front of one mock, one per distinct settings overrides, alive until `close`."""

    def __init__(self, mock: MockUpstreamProcess) -> None:
        self.mock = mock
        self._stack = contextlib.ExitStack()
        self._urls: dict[tuple[tuple[str, str], ...], str] = {}

    def url(self, **overrides: Any) -> str:
        key = tuple(sorted((name, repr(value)) for name, value in overrides.items()))
        if key not in self._urls:
            self._urls[key] = self._stack.enter_context(running_proxy(self.mock, **overrides))
        return self._urls[key]

    def close(self) -> None:
        self._stack.close()


class E2E:
    """What one end-to-end test drives: the mock, proxies, SDK clients and a raw SSE reader."""

    upstream_key = UPSTREAM_KEY
    client_key = CLIENT_KEY

    def __init__(self, pool: ProxyPool) -> None:
        self.mock = pool.mock
        self._pool = pool
        self._closers: list[Any] = []

    def proxy(self, **settings: Any) -> str:
        """Base URL of a proxy with these `Settings` overrides (shared with other tests using the same)."""
        return self._pool.url(**settings)

    def client(
        self, base_url: str | None = None, *, announces_retries: bool = True, **kwargs: Any
    ) -> anthropic.Anthropic:
        """An official SDK client on `base_url` (default proxy when None), no SDK retries.

        The SDK sends `x-stainless-retry-count` on every request, which tells the proxy the client retries
        by itself, so the proxy hands retryable statuses back at once. `announces_retries=False` drops the
        header, for tests of the proxy's own retries (what a client that does not retry gets)."""
        kwargs.setdefault("max_retries", 0)
        if not announces_retries:
            kwargs["default_headers"] = {
                **kwargs.get("default_headers", {}),
                "x-stainless-retry-count": anthropic.Omit(),
            }
        kwargs.setdefault("timeout", 30.0)
        if "auth_token" not in kwargs:
            kwargs.setdefault("api_key", CLIENT_KEY)
        client = anthropic.Anthropic(base_url=base_url or self.proxy(), **kwargs)
        self._closers.append(client)
        return client

    def http(self, base_url: str | None = None, **kwargs: Any) -> httpx.Client:
        """A plain httpx client on the proxy, for raw requests and raw SSE."""
        kwargs.setdefault("timeout", 30.0)
        client = httpx.Client(base_url=base_url or self.proxy(), **kwargs)
        self._closers.append(client)
        return client

    def post(
        self, path: str, body: Any, *, base_url: str | None = None, headers: dict[str, str] | None = None
    ) -> RawResponse:
        """POST `body` (JSON-encoded unless bytes) with httpx and read the whole answer."""
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        all_headers = {"content-type": "application/json", "x-api-key": CLIENT_KEY, **(headers or {})}
        response = self.http(base_url).post(path, content=content, headers=all_headers)
        return RawResponse(response.status_code, response.headers, response.text)

    def upstream_requests(self) -> list[dict[str, Any]]:
        """Chat requests the mock received during this test, oldest first."""
        return self.mock.requests()

    def upstream_body(self) -> dict[str, Any]:
        """The body of the one chat request the mock received during this test."""
        requests = self.mock.requests()
        assert len(requests) == 1, f"expected one upstream request, got {len(requests)}"
        body: dict[str, Any] = requests[0]["body"]
        return body

    def close(self) -> None:
        for closer in self._closers:
            closer.close()


@dataclass
class RawResponse:
    status: int
    headers: httpx.Headers
    text: str

    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def events(self) -> list[tuple[str | None, Any]]:
        """The body as SSE events: (event name, decoded data)."""
        return parse_sse(self.text)

    def of_type(self, name: str) -> list[Any]:
        """The data of every event named `name`."""
        return [data for event, data in self.events if event == name]


def parse_sse(text: str) -> list[tuple[str | None, Any]]:
    """(event name, decoded data) for each SSE event of a response body."""
    events: list[tuple[str | None, Any]] = []
    for frame in text.replace("\r\n", "\n").split("\n\n"):
        if not frame.strip():
            continue
        name: str | None = None
        data: list[str] = []
        for line in frame.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        events.append((name, json.loads("\n".join(data)) if data else None))
    return events


__all__ = ["CLIENT_KEY", "E2E", "ProxyPool", "RawResponse", "parse_sse"]
