"""`RequestRecord`: the facts of one finished request, and the measurements both exporters take from it.

`measurements` is the one place that decides which metric gets which value with which attributes, so
the Prometheus text and the OpenTelemetry instruments cannot disagree.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from ccproxy_asgi.context import UpstreamAttempt, Usage
from ccproxy_asgi.observability import semconv as sc

#: Label values longer than this are cut: a client chooses the model name it sends.
MAX_LABEL_LENGTH = 128
TIMEOUT_ERROR = "UpstreamTimeoutError"

Measurement = tuple[sc.MetricDef, tuple[str, ...], float]


@dataclass(slots=True)
class RequestRecord:
    """One request as the metrics layer saw it. `status` is None when no response started;
    `error_type` names why a request failed (an Anthropic error type, an HTTP status, or an exception
    class), None when it did not."""

    method: str
    route: str
    status: int | None
    duration_s: float
    chat: bool = False
    stream: bool = False
    ttfb_s: float | None = None
    ttft_s: float | None = None
    error_type: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    usage: Usage | None = None
    attempts: Sequence[UpstreamAttempt] = ()

    @property
    def failed(self) -> bool:
        """Failed on the server side: no response, a 5xx, or an error after a successful start."""
        status = self.status
        return status is None or status >= 500 or (status < 400 and self.error_type is not None)


_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})


def http_method(method: str) -> str:
    """`http.request.method` as the HTTP conventions bound it: a known method, else `_OTHER`."""
    return method if method in _KNOWN_METHODS else sc.ERROR_OTHER


def clip(value: str | None) -> str:
    if value is None:
        return ""
    return value if len(value) <= MAX_LABEL_LENGTH else value[:MAX_LABEL_LENGTH]


@functools.lru_cache(maxsize=64)
def upstream_address(url: str) -> tuple[str, str]:
    """`server.address` and `server.port` of an upstream URL."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", str(port)


def attempt_error(attempt: UpstreamAttempt) -> str:
    if attempt.error:
        return attempt.error
    if attempt.status is not None and attempt.status >= 400:
        return str(attempt.status)
    return ""


def measurements(record: RequestRecord, provider: str) -> list[Measurement]:
    """Every (metric, label values, value) the request yields, label values in the metric's order."""
    status = "" if record.status is None else str(record.status)
    found: list[Measurement] = [
        (sc.HTTP_SERVER_DURATION, (record.method, record.route, status), record.duration_s)
    ]
    if not record.chat:
        return found
    add = found.append
    request_model = clip(record.request_model)
    response_model = clip(record.response_model)
    genai = (sc.OPERATION_CHAT, provider, request_model, response_model)
    add((sc.GENAI_DURATION, (*genai, record.error_type or ""), record.duration_s))
    usage = record.usage
    if usage is not None:
        cache_read = usage.cache_read_input_tokens
        cache_creation = usage.cache_creation_input_tokens
        add((sc.GENAI_TOKENS, (*genai, "input"), usage.input_tokens + cache_read + cache_creation))
        add((sc.GENAI_TOKENS, (*genai, "output"), usage.output_tokens))
        add((sc.TOKENS, (request_model, response_model, "input"), usage.input_tokens))
        add((sc.TOKENS, (request_model, response_model, "output"), usage.output_tokens))
        if cache_read:
            add((sc.TOKENS, (request_model, response_model, "cache_read_input"), cache_read))
        if cache_creation:
            add((sc.TOKENS, (request_model, response_model, "cache_creation_input"), cache_creation))
    if record.stream:
        if record.ttfb_s is not None:
            add((sc.TTFB, genai, record.ttfb_s))
        if record.ttft_s is not None and not record.failed:
            add((sc.GENAI_TTFT, genai, record.ttft_s))
    retries: dict[str, int] = {}
    for index, attempt in enumerate(record.attempts):
        address, port = upstream_address(attempt.url)
        attempt_status = "" if attempt.status is None else str(attempt.status)
        error = attempt_error(attempt)
        add((sc.UPSTREAM_DURATION, (address, port, attempt_status, error), attempt.duration_s))
        add((sc.UPSTREAM_ATTEMPTS, (address, attempt_status, error, "true" if index else "false"), 1))
        if index:
            retries[address] = retries.get(address, 0) + 1
    for address, count in retries.items():
        add((sc.UPSTREAM_RETRIES, (address,), count))
    return found


def adaptive_sample(attempt: UpstreamAttempt) -> float | None:
    """The latency an attempt teaches the adaptive timeout: the time to a response head, or the time
    a timed-out attempt waited (so a slower upstream raises the timeout instead of being cut forever);
    None for a failure that says nothing about latency (a refused connection)."""
    if attempt.status is not None or attempt.error == TIMEOUT_ERROR:
        return attempt.duration_s
    return None


__all__ = [
    "MAX_LABEL_LENGTH",
    "Measurement",
    "RequestRecord",
    "adaptive_sample",
    "attempt_error",
    "clip",
    "http_method",
    "measurements",
    "upstream_address",
]
