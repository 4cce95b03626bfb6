"""Which route a request is: one rule for the endpoint and every layer.

A route is the path below the mount point (`route_path`: the ASGI `path` without the `root_path` that a
server's `--root-path` or a router's `Mount("/anthropic", ...)` put in front of it), compared exactly.
So `/v1/messages` is the Messages route at the root, under a mount and behind a root path alike, and the
query string never matters (ASGI keeps it out of `path`; Claude Code always sends `?beta=true`).

A trailing slash makes another path: `POST /v1/messages/` is no route of the Messages API. The endpoint
answers it 404 `not_found_error`, and no layer guards, prices or measures it as a Messages call (before
this rule the breaker did, the rate limiter did not, and the endpoint answered 404). The official SDKs
never add the slash, and a request that is bound to be refused must not take a breaker probe slot or a
rate-limit reservation. A layer mounted outside a router's mount sees the mount's prefix as part of the
path and no Messages route: mount the layers inside, as `create_app` and the examples do.
"""

from __future__ import annotations

import enum

from ccproxy_asgi.types import Scope


class Route(enum.Enum):
    """A route of the Anthropic API the endpoint serves; the value is its `http.route` template."""

    ROOT = "/"
    MESSAGES = "/v1/messages"
    COUNT_TOKENS = "/v1/messages/count_tokens"
    MODELS = "/v1/models"
    MODEL = "/v1/models/{model_id}"


_EXACT: dict[str, Route] = {
    "": Route.ROOT,
    "/": Route.ROOT,
    "/v1/messages": Route.MESSAGES,
    "/v1/messages/count_tokens": Route.COUNT_TOKENS,
    "/v1/models": Route.MODELS,
}
_MODEL_PREFIX = "/v1/models/"


def route_path(scope: Scope) -> str:
    """The path below the mount point, whichever convention the server and router use for root_path
    (the full path with the prefix in `root_path`, or the path already stripped of it)."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        rest = path[len(root) :]
        if not rest:
            return "/"
        if rest[0] == "/":
            return rest
    return path


def match_route(path: str) -> Route | None:
    """The route of `path` (below the mount point), None when it is none of the endpoint's."""
    route = _EXACT.get(path)
    if route is not None:
        return route
    if path.startswith(_MODEL_PREFIX) and len(path) > len(_MODEL_PREFIX):
        return Route.MODEL
    return None


def model_id_of(path: str) -> str | None:
    """The `{model_id}` of a `/v1/models/{model_id}` path, None for any other path."""
    return path[len(_MODEL_PREFIX) :] if match_route(path) is Route.MODEL else None


def is_messages_call(scope: Scope) -> bool:
    """`POST /v1/messages` below the mount point: the only calls that reach the upstream's completions."""
    return (
        scope["type"] == "http"
        and scope.get("method") == "POST"
        and match_route(route_path(scope)) is Route.MESSAGES
    )


__all__ = ["Route", "is_messages_call", "match_route", "model_id_of", "route_path"]
