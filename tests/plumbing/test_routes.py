"""The one route rule (`ccproxy_asgi.plumbing.routes`): the path below the mount point, compared exactly.

The layers and the endpoint that use it are checked end to end in tests/e2e/test_routes.py."""

from __future__ import annotations

from typing import Any

import pytest

from ccproxy_asgi.plumbing.routes import Route, is_messages_call, match_route, model_id_of, route_path


def scope(path: str, root_path: str = "", method: str = "POST", kind: str = "http") -> dict[str, Any]:
    return {
        "type": kind,
        "method": method,
        "path": path,
        "root_path": root_path,
        "query_string": b"beta=true",
    }


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/v1/messages", "", "/v1/messages"),
        ("/anthropic/v1/messages", "/anthropic", "/v1/messages"),  # the full path, prefix in root_path
        ("/v1/messages", "/anthropic", "/v1/messages"),  # a front proxy stripped the prefix already
        ("/anthropic", "/anthropic", "/"),
        ("/anthropic/", "/anthropic", "/"),
        ("/anthropicx/v1/messages", "/anthropic", "/anthropicx/v1/messages"),  # not below the mount
        ("/anthropic/v1/messages", "", "/anthropic/v1/messages"),  # a prefix nobody declared
    ],
)
def test_route_path_is_the_path_below_the_mount_point(path: str, root_path: str, expected: str) -> None:
    assert route_path(scope(path, root_path)) == expected


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/", Route.ROOT),
        ("/v1/messages", Route.MESSAGES),
        ("/v1/messages/count_tokens", Route.COUNT_TOKENS),
        ("/v1/models", Route.MODELS),
        ("/v1/models/claude-sonnet-4-6", Route.MODEL),
        ("/v1/messages/", None),  # a trailing slash is another path
        ("/v1/messages/count_tokens/", None),
        ("/v1/models/", None),
        ("/anthropic/v1/messages", None),
        ("/v1/v1/messages", None),
        ("/v1/messages/batches", None),
        ("/wp-admin/setup.php", None),
    ],
)
def test_match_route_is_exact(path: str, route: Route | None) -> None:
    assert match_route(path) is route


def test_route_values_are_the_http_route_templates() -> None:
    assert [route.value for route in Route] == [
        "/",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/models",
        "/v1/models/{model_id}",
    ]


def test_model_id_of() -> None:
    assert model_id_of("/v1/models/claude-x") == "claude-x"
    assert model_id_of("/v1/models/org/model") == "org/model"
    assert model_id_of("/v1/models") is None
    assert model_id_of("/v1/messages") is None


def test_is_messages_call() -> None:
    assert is_messages_call(scope("/v1/messages"))
    assert is_messages_call(scope("/anthropic/v1/messages", "/anthropic"))
    assert not is_messages_call(scope("/v1/messages/"))
    assert not is_messages_call(scope("/anthropic/v1/messages"))
    assert not is_messages_call(scope("/v1/messages", method="GET"))
    assert not is_messages_call(scope("/v1/messages/count_tokens"))
    assert not is_messages_call(scope("/v1/messages", kind="websocket"))
    assert not is_messages_call({"type": "lifespan"})
