"""Inbound API-key auth: alone on a Starlette route, and in front of the proxy with the anthropic SDK."""

from __future__ import annotations

import anthropic
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ccproxy_asgi.app import create_app
from ccproxy_asgi.context import get_context
from ccproxy_asgi.ids import key_fingerprint
from ccproxy_asgi.middleware.auth import APIKeyAuthMiddleware, StaticKeyVerifier
from ccproxy_asgi.testing import ASGIResult, call_asgi
from tests.support.mock_process import MockUpstreamProcess, mock_upstream_fixture
from tests.support.proxy_server import serve_app
from tests.support.stack import UPSTREAM_KEY, proxy_settings

mock_upstream = mock_upstream_fixture(scope="module")


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"identity": get_context(request.scope).client_key_id})


def user_app() -> Starlette:
    route = Route(
        "/v1/messages",
        whoami,
        methods=["POST"],
        middleware=[Middleware(APIKeyAuthMiddleware, keys={"team-a": "key-a-123", "team-b": "key-b-456"})],
    )
    return Starlette(routes=[route, Route("/open", whoami)])


async def post(app: Starlette, headers: dict[str, str]) -> ASGIResult:
    return await call_asgi(app, "POST", "/v1/messages", headers=headers, body=b"{}")


async def test_missing_key_is_a_401_envelope() -> None:
    response = await post(user_app(), {})
    assert response.status == 401
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert body["request_id"].startswith("req_")
    assert response.headers["request-id"] == body["request_id"]
    assert response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(
    ("headers", "identity"),
    [
        ({"x-api-key": "key-a-123"}, "team-a"),
        ({"authorization": "Bearer key-b-456"}, "team-b"),
        ({"Authorization": "bearer key-a-123"}, "team-a"),
    ],
)
async def test_accepted_keys_carry_their_identity(headers: dict[str, str], identity: str) -> None:
    response = await post(user_app(), headers)
    assert response.status == 200
    assert response.json() == {"identity": identity}


@pytest.mark.parametrize(
    "headers", [{"x-api-key": "key-a-12"}, {"authorization": "Basic key-a-123"}, {"x-api-key": ""}]
)
async def test_wrong_keys_are_refused(headers: dict[str, str]) -> None:
    response = await post(user_app(), headers)
    assert response.status == 401
    assert "key-a-12" not in response.text


async def test_routes_without_the_layer_are_untouched() -> None:
    response = await call_asgi(user_app(), "GET", "/open")
    assert response.status == 200


def test_unnamed_keys_get_fingerprints_not_the_key() -> None:
    verifier = StaticKeyVerifier(["sk-client-1"])
    assert "sk-client-1" not in repr(verifier)
    assert key_fingerprint("sk-client-1").startswith("key_")
    assert "sk-client-1" not in key_fingerprint("sk-client-1")


def test_the_proxy_behind_auth_with_the_sdk(mock_upstream: MockUpstreamProcess) -> None:
    app = APIKeyAuthMiddleware(create_app(proxy_settings(mock_upstream)), keys=["client-key-ok"])
    with serve_app(app) as url:
        good = anthropic.Anthropic(base_url=url, api_key="client-key-ok", max_retries=0)
        reply = good.messages.create(
            model="claude-sonnet-4-6", max_tokens=32, messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.type == "message"
        bearer = anthropic.Anthropic(base_url=url, auth_token="client-key-ok", max_retries=0)
        assert bearer.models.list().data
        bad = anthropic.Anthropic(base_url=url, api_key="client-key-wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as info:
            bad.messages.create(
                model="claude-sonnet-4-6", max_tokens=32, messages=[{"role": "user", "content": "x"}]
            )
        assert info.value.request_id is not None
        # The upstream key is the proxy's, never a client's credential.
        upstream_as_client = anthropic.Anthropic(base_url=url, api_key=UPSTREAM_KEY, max_retries=0)
        with pytest.raises(anthropic.AuthenticationError):
            upstream_as_client.models.list()
        assert httpx.head(url + "/").status_code == 200  # Claude Code's keyless pre-connect
    received = mock_upstream.requests()
    assert received, "the accepted request reached the upstream"
    assert all(r["headers"].get("authorization") == f"Bearer {UPSTREAM_KEY}" for r in received)
