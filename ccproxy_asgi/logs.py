"""Log setup for the CLI: plain text or one JSON object per line."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from ccproxy_asgi import jsonutil

# Attributes every LogRecord has; anything else on a record was passed with `extra=` and is kept.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request id, and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return jsonutil.dumps(entry).decode("utf-8", "replace") if _serializable(entry) else str(entry)


def _serializable(entry: dict[str, Any]) -> bool:
    try:
        jsonutil.dumps(entry)
    except TypeError:
        return False
    return True


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Route the package's and the server's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


__all__ = ["JsonFormatter", "configure_logging"]
