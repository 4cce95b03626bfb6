"""Logging: the request id on every record, secrets out of every line, text or one JSON object per line.

The correlation layer binds the request's id (and the key the client presented) to a contextvar for as
long as the request runs; `RequestIdFilter` copies the id onto each record, and both formatters run the
finished line through `dict_ops` redaction and mask every registered secret literally, so neither the
upstream key nor a client key can reach a log line, whoever logged it (uvicorn's tracebacks included).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from ccproxy_asgi import jsonutil
from ccproxy_asgi._cython import dict_ops

ACCESS_LOGGER = "ccproxy_asgi.access"
REDACTED = "***"
# Shorter values would mask common words; real keys are far longer.
MIN_SECRET_LENGTH = 8

# Attributes every LogRecord has; anything else on a record was passed with `extra=` and is kept.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "request_id"}


@dataclass(frozen=True, slots=True)
class _Bound:
    request_id: str
    secrets: tuple[str, ...]


_bound: ContextVar[_Bound | None] = ContextVar("ccproxy_request_log", default=None)
# Replaced as a whole, never mutated, so a thread formatting a record never sees it change size.
_registered: tuple[str, ...] = ()


def current_request_id() -> str | None:
    """The id of the request the calling code runs for, if a correlation layer bound one."""
    bound = _bound.get()
    return None if bound is None else bound.request_id


@contextlib.contextmanager
def bind_request(request_id: str, secrets: Iterable[str | None] = ()) -> Iterator[None]:
    """Bind `request_id` (and per-request secrets to mask, such as the client's key) for log records
    emitted inside the block, including by tasks it starts."""
    token = bind(request_id, secrets)
    try:
        yield
    finally:
        unbind(token)


def bind(request_id: str, secrets: Iterable[str | None] = ()) -> Token[_Bound | None]:
    """`bind_request` without the context manager, for the per-request hot path: pair with `unbind`."""
    return _bound.set(_Bound(request_id, tuple(_usable(secrets))))


def unbind(token: Token[_Bound | None]) -> None:
    _bound.reset(token)


def register_secrets(*values: str | SecretStr | None) -> None:
    """Mask these values in every line any formatter of this module writes, process-wide (the configured
    upstream key and inbound keys: `create_app` registers them)."""
    global _registered
    raw = [value.get_secret_value() if isinstance(value, SecretStr) else value for value in values]
    _registered = tuple(dict.fromkeys((*_registered, *_usable(raw))))


def _usable(values: Iterable[str | None]) -> Iterator[str]:
    for value in values:
        if value and len(value) >= MIN_SECRET_LENGTH:
            yield value


def mask_secrets(text: str, extra: Iterable[str] = ()) -> str:
    """`text` with API keys, bearer tokens and every registered or `extra` secret replaced by `***`."""
    text = dict_ops.redact_text(text)
    bound = _bound.get()
    for secret in (*_registered, *extra, *(bound.secrets if bound else ())):
        if secret in text:
            text = text.replace(secret, REDACTED)
        # The same secret as it appears inside a JSON string.
        escaped = json.dumps(secret)[1:-1]
        if escaped != secret and escaped in text:
            text = text.replace(escaped, REDACTED)
    return text


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record as `record.request_id` (`None` outside a request).

    Attach it to handlers: a filter on a handler sees the records of every logger that propagates there.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        bound = _bound.get()
        if bound is not None and bound.secrets:
            # Handlers may format later, elsewhere (a QueueHandler): carry the request's secrets along.
            record._ccproxy_secrets = bound.secrets
        return True


def _record_secrets(record: logging.LogRecord) -> tuple[str, ...]:
    secrets = getattr(record, "_ccproxy_secrets", ())
    return secrets if isinstance(secrets, tuple) else ()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request id, `extra=` fields, exception.

    Extra fields go through `dict_ops.redact` (values under secret names become `***`); the finished
    line then has every known secret masked. `secrets` adds literal values to mask for this formatter.
    """

    def __init__(self, *, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self._secrets = tuple(_usable(secrets))

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return mask_secrets(_dumps(dict_ops.redact(entry)), (*self._secrets, *_record_secrets(record)))


def _dumps(entry: dict[str, Any]) -> str:
    try:
        return jsonutil.dumps(entry).decode("utf-8", "replace")
    except TypeError:
        return json.dumps(entry, default=repr, ensure_ascii=False)


class RedactingFormatter(logging.Formatter):
    """A plain-text `logging.Formatter` whose finished lines (tracebacks included) have secrets masked."""

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        *,
        secrets: Iterable[str | None] = (),
    ) -> None:
        super().__init__(fmt, datefmt)
        self._secrets = tuple(_usable(secrets))

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id != getattr(record, "request_id", None) or request_id is None:
            # A copy: other handlers of the same record must not see the placeholder.
            record = logging.makeLogRecord(vars(record))
            record.request_id = request_id or "-"
        return mask_secrets(super().format(record), (*self._secrets, *_record_secrets(record)))


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def configure_logging(level: str = "info", fmt: str = "text", *, secrets: Iterable[str | None] = ()) -> None:
    """Route the package's and the server's logs to stderr in the chosen format, request ids on, secrets
    masked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter(secrets=secrets))
    else:
        handler.setFormatter(RedactingFormatter(TEXT_FORMAT, secrets=secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


__all__ = [
    "ACCESS_LOGGER",
    "JsonFormatter",
    "RedactingFormatter",
    "RequestIdFilter",
    "bind",
    "bind_request",
    "configure_logging",
    "current_request_id",
    "mask_secrets",
    "register_secrets",
    "unbind",
]
