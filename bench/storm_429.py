"""A 429 storm: how many upstream attempts one client request costs, and whether every 429 says how long
to wait.

Starts, as subprocesses of this script: a storm upstream (an OpenAI-compatible server that answers 429
with only `Retry-After: N`, spelled that way, to a fraction of its requests, and a short completion to
the others; it records each request's arrival and `x-request-id`) and the proxy in front of it with
default settings (uvicorn, one worker). Then `--clients` concurrent clients call the proxy for
`--seconds`:

- `--client sdk`: `anthropic.AsyncAnthropic(max_retries=N)` clients, which announce their retries
  (`x-stainless-retry-count`) and wait what `retry-after` says;
- `--client raw`: plain HTTP clients that announce nothing and do not retry.

Reported: client requests (HTTP requests reaching the proxy, the SDKs' retries included), upstream
attempts and attempts per client request; client 429s with and without `retry-after` and the values
seen; the proxy's own retry delays (gaps between upstream attempts with one request id) and the
clients' (gaps between the attempts of one SDK call).

    .venv/bin/python bench/storm_429.py                                   # 30 s, 16 SDK clients, Retry-After: 1
    .venv/bin/python bench/storm_429.py --client raw --retry-after 0.2    # clients that do not retry
    .venv/bin/python bench/storm_429.py --retry-after 30 --max-retries 0 # a long hint, no SDK retries
    .venv/bin/python bench/storm_429.py --proxy-root /tmp/old-tree        # the proxy from another checkout

Linux or macOS; the machine is shared, so read the counts, not the timings, as the result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
UPSTREAM_MARKER = "storm-upstream listening on "
PROXY_MARKER = "storm-proxy listening on "
MODEL = "claude-sonnet-4-6"
COMPLETION = {
    "id": "chatcmpl-storm",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


# --- the storm upstream (a subprocess) -------------------------------------------------------------------


def serve_upstream(retry_after: str, fail_rate: float) -> None:
    """Answer 429 + `Retry-After` to `fail_rate` of the chat requests (every one at 1.0), 200 otherwise."""
    import random

    from aiohttp import web
    from multidict import CIMultiDict

    arrivals: list[tuple[float, str]] = []
    completion = json.dumps(COMPLETION).encode()
    limited = json.dumps(
        {
            "error": {
                "message": "Rate limit reached for requests",
                "type": "requests",
                "code": "rate_limit_exceeded",
            }
        }
    ).encode()

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        arrivals.append((time.monotonic(), request.headers.get("x-request-id", "")))
        if fail_rate >= 1.0 or random.random() < fail_rate:
            # aiohttp writes the name as spelled here, as many servers do: `Retry-After`, not `retry-after`.
            headers = CIMultiDict([("Retry-After", retry_after), ("Content-Type", "application/json")])
            return web.Response(status=429, headers=headers, body=limited)
        return web.Response(status=200, content_type="application/json", body=completion)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"arrivals": arrivals})

    async def reset(request: web.Request) -> web.Response:
        arrivals.clear()
        return web.json_response({"reset": True})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(f"{UPSTREAM_MARKER}http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    web.run_app(app, sock=sock, print=None, access_log=None)


# --- the proxy (a subprocess) ----------------------------------------------------------------------------


def serve_proxy() -> None:
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    print(f"{PROXY_MARKER}http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config("ccproxy_asgi.asgi:app", lifespan="on", log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


# --- process plumbing ------------------------------------------------------------------------------------


def start(
    args: list[str], marker: str, env: dict[str, str], log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    with open(log, "wb") as err:
        process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=ROOT
        )
    assert process.stdout is not None
    buffer = b""
    deadline = time.monotonic() + 60
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline and marker.encode() not in buffer:
            if selector.select(timeout=0.5):
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    break
                buffer += chunk
            elif process.poll() is not None:
                break
    text = buffer.decode(errors="replace")
    if marker not in text:
        stop(process)
        raise RuntimeError(f"{args} did not start:\n{text}\n{log.read_text(errors='replace')[-3000:]}")
    threading.Thread(target=lambda: process.stdout and process.stdout.read(), daemon=True).start()
    return process, text.split(marker, 1)[1].split()[0]


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(url: str) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/", timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


# --- the clients -----------------------------------------------------------------------------------------


@dataclass
class Seen:
    """What the clients saw, each HTTP response to the proxy counted once."""

    requests: int = 0
    calls: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    limited_with: int = 0
    limited_without: int = 0
    retry_after_values: Counter[str] = field(default_factory=Counter)
    client_gaps: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def response(self, status: int, headers: Any) -> None:
        self.requests += 1
        self.statuses[status] += 1
        if status in (429, 529):
            value = headers.get("retry-after")
            if value is None:
                self.limited_without += 1
            else:
                self.limited_with += 1
                self.retry_after_values[value] += 1


async def sdk_client(url: str, max_retries: int, until: float, seen: Seen) -> None:
    import anthropic
    import httpx2

    sent: list[float] = []

    async def on_request(request: Any) -> None:
        sent.append(time.monotonic())

    async def on_response(response: Any) -> None:
        seen.response(response.status_code, response.headers)

    http = httpx2.AsyncClient(event_hooks={"request": [on_request], "response": [on_response]}, timeout=120)
    async with anthropic.AsyncAnthropic(
        base_url=url, api_key="storm-client", max_retries=max_retries, http_client=http
    ) as client:
        while time.monotonic() < until:
            sent.clear()
            seen.calls += 1
            try:
                await client.messages.create(
                    model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "storm"}]
                )
            except anthropic.APIStatusError as exc:
                seen.errors[type(exc).__name__] += 1
            except anthropic.APIError as exc:
                seen.errors[type(exc).__name__] += 1
            seen.client_gaps.extend(b - a for a, b in itertools.pairwise(sent))


async def raw_client(url: str, until: float, seen: Seen) -> None:
    import httpx

    body = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "storm"}]}
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        while time.monotonic() < until:
            seen.calls += 1
            try:
                response = await http.post("/v1/messages", json=body, headers={"x-api-key": "storm-client"})
            except httpx.HTTPError as exc:
                seen.errors[type(exc).__name__] += 1
                continue
            seen.response(response.status_code, response.headers)


async def storm(args: argparse.Namespace, proxy_url: str) -> Seen:
    seen = Seen()
    until = time.monotonic() + args.seconds
    if args.client == "sdk":
        workers = [sdk_client(proxy_url, args.max_retries, until, seen) for _ in range(args.clients)]
    else:
        workers = [raw_client(proxy_url, until, seen) for _ in range(args.clients)]
    await asyncio.gather(*workers)
    return seen


# --- the report ------------------------------------------------------------------------------------------


def spread(values: list[float]) -> str:
    if not values:
        return "none"
    ordered = sorted(values)
    p50 = statistics.median(ordered)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"{len(values)}: min {ordered[0]:.2f} s, p50 {p50:.2f} s, p90 {p90:.2f} s, max {ordered[-1]:.2f} s"


def report(args: argparse.Namespace, seen: Seen, arrivals: list[tuple[float, str]], elapsed: float) -> None:
    by_request: dict[str, list[float]] = defaultdict(list)
    for at, request_id in arrivals:
        by_request[request_id].append(at)
    proxy_gaps = [b - a for times in by_request.values() for a, b in itertools.pairwise(times)]
    per_request = len(arrivals) / seen.requests if seen.requests else float("nan")
    clients = (
        f"{args.clients} SDK clients (max_retries={args.max_retries})"
        if args.client == "sdk"
        else f"{args.clients} raw clients (no retries, no x-stainless-retry-count)"
    )
    print(
        f"storm: {elapsed:.1f} s, {clients}; the upstream answers 429 with only `Retry-After: "
        f"{args.retry_after}` to {args.fail_rate:.0%} of its requests"
    )
    print(f"proxy: {args.proxy_root or ROOT}, default settings, CCPROXY_HTTP_CLIENT={args.http_client}")
    print(f"client calls: {seen.calls}; client requests (HTTP, SDK retries included): {seen.requests}")
    print(
        f"upstream attempts: {len(arrivals)}; per client request: {per_request:.2f}; "
        f"upstream request ids: {len(by_request)}"
    )
    print(f"client statuses: {dict(sorted(seen.statuses.items()))}; exceptions: {dict(seen.errors)}")
    print(
        f"client 429/529s: {seen.limited_with + seen.limited_without}; with retry-after: {seen.limited_with}; "
        f"without: {seen.limited_without}; retry-after values: {dict(seen.retry_after_values)}"
    )
    print(f"proxy retry delays (upstream gaps within one request id): {spread(proxy_gaps)}")
    print(f"client retry delays (gaps between one SDK call's attempts): {spread(seen.client_gaps)}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--client", choices=["sdk", "raw"], default="sdk")
    parser.add_argument("--max-retries", type=int, default=2, help="the SDK clients' max_retries")
    parser.add_argument("--retry-after", default="1", help="the upstream's Retry-After value")
    parser.add_argument(
        "--fail-rate", type=float, default=1.0, help="fraction of upstream requests answered 429"
    )
    parser.add_argument("--http-client", choices=["aiohttp", "httpx"], default="aiohttp")
    parser.add_argument("--proxy-root", help="run the proxy from this source tree (e.g. an older checkout)")
    parser.add_argument(
        "--proxy-env", action="append", default=[], help="NAME=VALUE for the proxy (repeatable)"
    )
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-proxy", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_upstream:
        serve_upstream(args.retry_after, args.fail_rate)
        return 0
    if args.serve_proxy:
        serve_proxy()
        return 0
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CCPROXY_", "OPENAI_", "ANTHROPIC_"))}
    logs = Path(tempfile.mkdtemp(prefix="storm_429_"))
    script = str(Path(__file__).resolve())
    upstream, upstream_url = start(
        [
            PYTHON,
            script,
            "--serve-upstream",
            "--retry-after",
            args.retry_after,
            "--fail-rate",
            str(args.fail_rate),
        ],
        UPSTREAM_MARKER,
        {**base, "PYTHONPATH": str(ROOT)},
        logs / "upstream.log",
    )
    proxy: subprocess.Popen[bytes] | None = None
    try:
        env = {
            **base,
            "PYTHONPATH": str(Path(args.proxy_root).resolve() if args.proxy_root else ROOT),
            "CCPROXY_UPSTREAM_BASE_URL": upstream_url + "/v1",
            "CCPROXY_UPSTREAM_API_KEY": "storm-upstream-key",
            "CCPROXY_HTTP_CLIENT": args.http_client,
            "CCPROXY_LOG_LEVEL": "warning",
        }
        for item in args.proxy_env:
            name, _, value = item.partition("=")
            env[name] = value
        proxy, proxy_url = start([PYTHON, script, "--serve-proxy"], PROXY_MARKER, env, logs / "proxy.log")
        wait_ready(proxy_url)
        import urllib.request

        urllib.request.urlopen(
            urllib.request.Request(upstream_url + "/reset", method="POST"), timeout=5
        ).read()
        started = time.monotonic()
        seen = asyncio.run(storm(args, proxy_url))
        elapsed = time.monotonic() - started
        with urllib.request.urlopen(upstream_url + "/stats", timeout=10) as response:
            arrivals = [(float(at), str(rid)) for at, rid in json.loads(response.read())["arrivals"]]
        report(args, seen, arrivals, elapsed)
        lines = (logs / "proxy.log").read_text(errors="replace").splitlines()
        spent = sum("retry budget is spent" in line for line in lines)
        print(f"proxy log: {len(lines)} lines, {spent} about the spent retry budget ({logs / 'proxy.log'})")
    finally:
        if proxy is not None:
            stop(proxy)
        stop(upstream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
