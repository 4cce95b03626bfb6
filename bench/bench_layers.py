"""What the metrics and correlation layers cost per request, in process (no server, no network).

Run from the repository root:

    PYTHONPATH=. python bench/bench_layers.py [--requests 20000] [--repeat 7]

A trivial ASGI app plays the endpoint: for `POST /v1/messages` it fills the request context the way the
real endpoint does (models, usage, one upstream attempt) and sends a small JSON answer; `--stream` makes
it send an SSE answer of 20 chunks instead. Each stack is driven directly, one request after another on
one event loop, and timed over `--requests` requests; the runs of all stacks are interleaved and the best
of `--repeat` is kept (the least disturbed one). The overhead is that figure minus the bare app's.

Stacks: the bare app; correlation alone (request id, contextvar, access log with its logger disabled,
as it is when logging is not configured at INFO); metrics alone and with correlation, OpenTelemetry going
to the global provider (the API's no-op until an SDK is installed); the same with tracing (no SDK); and,
for comparison, metrics with an SDK MeterProvider and an in-memory reader, tracing with an SDK
TracerProvider and an in-memory exporter.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ccproxy_asgi.context import UpstreamAttempt, Usage, get_context
from ccproxy_asgi.middleware.correlation import CorrelationMiddleware
from ccproxy_asgi.middleware.metrics import MetricsMiddleware
from ccproxy_asgi.middleware.tracing import TracingMiddleware
from ccproxy_asgi.observability.collector import MetricsCollector
from ccproxy_asgi.types import ASGIApp, Message, Receive, Scope, Send

BODY = b'{"id":"msg_1","type":"message","content":[{"type":"text","text":"hi"}]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8")]
SSE_CHUNKS = (
    [b"event: message_start\ndata: {}\n\n"]
    + [b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n'] * 18
    + [b"event: message_stop\ndata: {}\n\n"]
)
REQUEST_HEADERS = [
    (b"host", b"127.0.0.1:8082"),
    (b"content-type", b"application/json"),
    (b"x-api-key", b"sk-ant-bench-key"),
    (b"anthropic-version", b"2023-06-01"),
    (b"user-agent", b"bench/1.0"),
]
ATTEMPT_URL = "http://127.0.0.1:9000/v1/chat/completions"


def endpoint(stream: bool) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope)
        ctx.requested_model = "claude-sonnet-4-6"
        ctx.upstream_model = "gpt-4o"
        ctx.stream = stream
        ctx.attempts.append(UpstreamAttempt(url=ATTEMPT_URL, status=200, duration_s=0.01))
        ctx.usage = Usage(input_tokens=120, output_tokens=40)
        if stream:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            for chunk in SSE_CHUNKS:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})

    return app


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    pass


def stacks(stream: bool) -> dict[str, ASGIApp]:
    app = endpoint(stream)
    reader = InMemoryMetricReader()
    sdk_meter = MeterProvider(metric_readers=[reader])
    sdk_tracer = TracerProvider()
    sdk_tracer.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))

    def metrics(inner: ASGIApp, **kwargs: Any) -> ASGIApp:
        return MetricsMiddleware(inner, collector=MetricsCollector(), **kwargs)

    return {
        "bare app": app,
        "correlation": CorrelationMiddleware(app),
        "metrics (otel off)": metrics(app, otel=False),
        "metrics": metrics(app),
        "correlation + metrics": CorrelationMiddleware(metrics(app)),
        "correlation (no access log) + metrics": CorrelationMiddleware(metrics(app), access_log=False),
        "correlation + tracing + metrics": CorrelationMiddleware(TracingMiddleware(metrics(app))),
        "metrics, OTel SDK meter": metrics(app, meter_provider=sdk_meter),
        "tracing, OTel SDK tracer": TracingMiddleware(app, tracer_provider=sdk_tracer),
    }


async def drive(app: ASGIApp, requests: int) -> float:
    """Seconds for `requests` sequential requests through `app`."""
    receive, send = _receive, _send
    started = time.perf_counter()
    for _ in range(requests):
        scope: Scope = {
            "type": "http",
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/messages",
            "raw_path": b"/v1/messages",
            "query_string": b"",
            "root_path": "",
            "headers": REQUEST_HEADERS,
        }
        await app(scope, receive, send)
    return time.perf_counter() - started


async def measure(requests: int, repeat: int, stream: bool) -> dict[str, list[float]]:
    apps = stacks(stream)
    for app in apps.values():  # warm up: first-series creation, caches, code paths
        await drive(app, min(requests, 2000))
    runs: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(repeat):
        for name, app in apps.items():
            runs[name].append(await drive(app, requests) / requests * 1e6)
    return runs


def report(title: str, runs: dict[str, list[float]]) -> None:
    base = min(runs["bare app"])
    print(f"\n{title}")
    print(f"{'stack':40} {'best µs/req':>12} {'median':>8} {'overhead µs':>12}")
    for name, values in runs.items():
        best = min(values)
        overhead = "" if name == "bare app" else f"{best - base:12.2f}"
        print(f"{name:40} {best:12.2f} {statistics.median(values):8.2f} {overhead:>12}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000, help="requests per timed run")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per stack (best is kept)")
    parser.add_argument("--stream", action="store_true", help="also time SSE answers of 20 chunks")
    args = parser.parse_args(argv)
    title = f"POST /v1/messages, JSON answer ({args.requests} requests x {args.repeat} runs)"
    report(title, asyncio.run(measure(args.requests, args.repeat, stream=False)))
    if args.stream:
        title = f"POST /v1/messages, SSE answer of {len(SSE_CHUNKS)} chunks"
        report(title, asyncio.run(measure(args.requests, args.repeat, stream=True)))


if __name__ == "__main__":
    main()
