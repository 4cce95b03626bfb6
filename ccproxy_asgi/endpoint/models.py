"""`GET /v1/models` and `GET /v1/models/{id}` in the Anthropic shape (docs/protocol.md#models-endpoint)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ccproxy_asgi.errors import InvalidRequestError, NotFoundError

_EPOCH = "1970-01-01T00:00:00Z"


def model_info(model_id: str) -> dict[str, Any]:
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": _EPOCH}


def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequestError(f"{name}: Input should be a valid integer") from None
    if not low <= value <= high:
        raise InvalidRequestError(f"{name}: Input should be between {low} and {high}")
    return value


def list_page(ids: list[str], query: Mapping[str, str]) -> dict[str, Any]:
    """One page of the model list, with Anthropic's cursor parameters `after_id`, `before_id`, `limit`."""
    limit = _int_param(query, "limit", 20, 1, 1000)
    after_id = query.get("after_id")
    before_id = query.get("before_id")
    if after_id is not None and before_id is not None:
        raise InvalidRequestError("after_id and before_id cannot be used together")
    if after_id is not None:
        if after_id not in ids:
            raise InvalidRequestError(f"after_id: unknown model id {after_id!r}")
        start = ids.index(after_id) + 1
        window = ids[start : start + limit]
        has_more = start + limit < len(ids)
    elif before_id is not None:
        if before_id not in ids:
            raise InvalidRequestError(f"before_id: unknown model id {before_id!r}")
        end = ids.index(before_id)
        window = ids[max(0, end - limit) : end]
        has_more = end - limit > 0
    else:
        window = ids[:limit]
        has_more = len(ids) > limit
    return {
        "data": [model_info(model_id) for model_id in window],
        "has_more": has_more,
        "first_id": window[0] if window else None,
        "last_id": window[-1] if window else None,
    }


def get_one(ids: list[str], model_id: str, *, accepted: bool) -> dict[str, Any]:
    """A single model: listed ones, and any name the mapping accepts."""
    if model_id in ids or accepted:
        return model_info(model_id)
    raise NotFoundError(f"model: {model_id}")


__all__ = ["get_one", "list_page", "model_info"]
