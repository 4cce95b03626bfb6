"""A bounded log of the chat requests the mock received, for tests to assert what a proxy sent."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from typing import Any


class RequestRecorder:
    """Keeps the last `limit` requests as plain JSON-ready dicts; `limit` 0 keeps none."""

    def __init__(self, limit: int) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=max(0, limit))

    def record(
        self,
        *,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: Any,
    ) -> dict[str, Any]:
        """Store one request; returns its entry so the handler can add what it decided (the fault)."""
        entry: dict[str, Any] = {
            "method": method,
            "path": path,
            "query": dict(query),
            "headers": dict(headers),
            "body": body,
            "timestamp": time.time(),
            "fault": None,
        }
        if self._entries.maxlen:
            self._entries.append(entry)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        return list(self._entries)

    def clear(self) -> None:
        self._entries.clear()


__all__ = ["RequestRecorder"]
