"""Log records: request ids from the contextvar, JSON lines, and secrets masked whoever logged them."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from ccproxy_asgi import logs
from ccproxy_asgi.logs import (
    JsonFormatter,
    RedactingFormatter,
    RequestIdFilter,
    bind_request,
    configure_logging,
    current_request_id,
    mask_secrets,
    register_secrets,
)

logger = logging.getLogger("tests.logs")


def record(msg: str = "hello %s", *args: Any, **extra: Any) -> logging.LogRecord:
    rec = logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, msg, args or ("world",), None, extra=extra
    )
    return rec


def json_line(rec: logging.LogRecord, formatter: logging.Formatter | None = None) -> dict[str, Any]:
    RequestIdFilter().filter(rec)
    line: dict[str, Any] = json.loads((formatter or JsonFormatter()).format(rec))
    return line


@pytest.fixture
def registry() -> Iterator[None]:
    saved = logs._registered
    try:
        yield
    finally:
        logs._registered = saved


def test_json_line_has_the_fields_and_extras() -> None:
    line = json_line(record(status=200, model="m", nested={"a": [1, 2]}))
    assert line["message"] == "hello world"
    assert line["level"] == "info"
    assert line["logger"] == "tests.logs"
    assert line["time"].endswith("Z")
    assert (line["status"], line["model"], line["nested"]) == (200, "m", {"a": [1, 2]})
    assert "request_id" not in line, "no request bound"


def test_request_id_comes_from_the_bound_context() -> None:
    with bind_request("req_bound"):
        assert current_request_id() == "req_bound"
        rec = record()
        assert RequestIdFilter().filter(rec) is True
        assert rec.request_id == "req_bound"  # type: ignore[attr-defined]
        assert json_line(rec)["request_id"] == "req_bound"
    assert current_request_id() is None


def test_explicit_request_id_extra_wins() -> None:
    with bind_request("req_bound"):
        assert json_line(record(request_id="req_explicit"))["request_id"] == "req_explicit"


async def test_tasks_started_in_a_request_inherit_the_id() -> None:
    async def child() -> str | None:
        await asyncio.sleep(0)
        return current_request_id()

    with bind_request("req_parent"):
        task = asyncio.ensure_future(child())
    assert await task == "req_parent"


def test_secret_named_extras_and_key_patterns_are_masked() -> None:
    rec = record(
        "calling with %s",
        "Authorization: Bearer abc.def-ghi",
        api_key="plain-value-without-pattern",
        headers={"x-api-key": "also-plain-value", "content-type": "application/json"},
        note="key sk-proj-abcdefghijklmnop in text",
        max_tokens=1024,
    )
    line = json_line(rec)
    assert line["message"] == "calling with Authorization: Bearer ***"
    assert line["api_key"] == "***"
    assert line["headers"] == {"x-api-key": "***", "content-type": "application/json"}
    assert line["note"] == "key *** in text"
    assert line["max_tokens"] == 1024


def test_registered_secrets_are_masked_in_message_extras_and_tracebacks(registry: None) -> None:
    secret = "upstream-literal-key-42"
    register_secrets(SecretStr(secret), None, "short")
    try:
        raise ValueError(f"failed with {secret}")
    except ValueError:
        rec = logger.makeRecord(
            logger.name,
            logging.ERROR,
            __file__,
            1,
            "got %s",
            (secret,),
            sys.exc_info(),
            extra={"data": [secret]},
        )
    text = JsonFormatter().format(rec)
    assert secret not in text
    line = json.loads(text)
    assert line["message"] == "got ***"
    assert line["data"] == ["***"]
    assert "ValueError: failed with ***" in line["exception"]
    assert "short" in mask_secrets("short words stay"), "values under 8 characters are never registered"


def test_secret_with_json_escapes_is_masked(registry: None) -> None:
    secret = 'quote"back\\slash-key'
    text = JsonFormatter(secrets=[secret]).format(record("%s", secret))
    assert secret not in json.loads(text)["message"]
    assert "***" in text


def test_secrets_bound_to_the_request_are_masked() -> None:
    client_key = "client-literal-key-99"
    with bind_request("req_s", [client_key, None]):
        rec = record("header was %s", client_key)
        RequestIdFilter().filter(rec)
    # Formatted after the request ended (as a queue handler would): the record carries the secrets.
    assert client_key not in JsonFormatter().format(rec)
    assert "_ccproxy_secrets" not in json.loads(JsonFormatter().format(rec))


def test_unserializable_extras_fall_back_to_repr() -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<thing>"

    line = json_line(record(obj=Thing(), keys={1: "a"}))
    assert line["obj"] == "<thing>"
    assert line["keys"] == {"1": "a"}


def test_text_formatter_masks_and_shows_the_request_id(registry: None) -> None:
    register_secrets("text-literal-key-77")
    formatter = RedactingFormatter(logs.TEXT_FORMAT)
    with bind_request("req_text"):
        rec = record("key %s and sk-abcdefghijkl", "text-literal-key-77")
        RequestIdFilter().filter(rec)
    text = formatter.format(rec)
    assert text.endswith("INFO tests.logs [req_text]: key *** and ***")


def test_configure_logging_installs_filter_and_formatter(registry: None) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        configure_logging("debug", "json", secrets=["configured-key-1234"])
        (handler,) = root.handlers
        assert isinstance(handler, logging.StreamHandler)
        stream = io.StringIO()
        handler.setStream(stream)
        with bind_request("req_cfg"):
            logging.getLogger("ccproxy_asgi.anything").debug("using configured-key-1234")
        line = json.loads(stream.getvalue())
        assert line == {**line, "request_id": "req_cfg", "message": "using ***", "level": "debug"}
        configure_logging("info", "text")
        assert isinstance(root.handlers[0].formatter, RedactingFormatter)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_text_lines_outside_a_request_show_a_placeholder() -> None:
    rec = record()
    RequestIdFilter().filter(rec)
    assert RedactingFormatter(logs.TEXT_FORMAT).format(rec).endswith("INFO tests.logs [-]: hello world")
    assert rec.request_id is None  # type: ignore[attr-defined]
    assert "request_id" not in json_line(rec)
