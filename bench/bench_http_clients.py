"""Which HTTP client library should the proxy use upstream? Measure it through a bare pass-through.

Starts an upstream (a tiny fast aiohttp server: a fixed ~1 KB chat-completion JSON, and a fixed SSE
stream of 50 small chunks), then starts `bench/passthrough.py` once per client library (aiohttp, httpx,
httpx2) as a subprocess and drives it with N concurrent clients from an aiohttp load generator in this
process. Reports per library: requests/s, CPU ms per request of the proxy process (utime+stime from
/proc/<pid>/stat), and p50/p99 latency. Each configuration runs `--rounds` times, interleaved, because a
2-core machine is noisy.

    python bench/bench_http_clients.py                      # defaults: 3000 non-stream, 1000 stream, c=32
    python bench/bench_http_clients.py --modes wrapped,direct   # also the libraries without our wrapper
    python bench/bench_http_clients.py --upstream mock      # the project's mock upstream instead

`--serve-upstream` runs only the built-in upstream (used by the benchmark itself as a subprocess).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PATH = "/v1/chat/completions"

# --- the upstream --------------------------------------------------------------------------------------

_WORDS = " ".join(f"word{i}" for i in range(120))
COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": _WORDS}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 120, "total_tokens": 140},
    }
).encode()
SSE_CHUNKS = [
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","model":"bench-model",'
    b'"choices":[{"index":0,"delta":{"content":"tok%d "}}]}\n\n' % i
    for i in range(50)
] + [b"data: [DONE]\n\n"]
SSE_LENGTH = sum(len(chunk) for chunk in SSE_CHUNKS)


async def _completions(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    if b'"stream": true' not in body and b'"stream":true' not in body:
        return web.Response(body=COMPLETION, content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for chunk in SSE_CHUNKS:
        await response.write(chunk)
        # Let the event loop run between chunks so they leave as separate writes, like tokens do.
        await asyncio.sleep(0)
    await response.write_eof()
    return response


def serve_upstream(port: int) -> None:
    """Run the built-in upstream until killed; prints its URL once listening."""
    import uvloop

    async def run() -> None:
        app = web.Application()
        app.router.add_post(PATH, _completions)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=2048)
        await site.start()
        print(f"bench-upstream listening on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
        await asyncio.Event().wait()

    uvloop.run(run())


# --- processes -----------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of the man page; the split starts at field 3 (state).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start(args: list[str], marker: str) -> tuple[subprocess.Popen[str], str]:
    """Start a server subprocess and wait for its `<marker> http://...` line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if marker in line:
            return process, line.rsplit(" ", 1)[1].strip()
    process.kill()
    raise RuntimeError(f"{args} did not print {marker!r}")


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- the load generator --------------------------------------------------------------------------------


@dataclass
class Phase:
    """The result of one measured batch of requests."""

    target: str
    round: int
    kind: str
    requests: int
    errors: int
    seconds: float
    cpu_ms_per_request: float | None
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def request_body(stream: bool) -> bytes:
    messages = [{"role": "user", "content": "Summarise the following. " + _WORDS}]
    return json.dumps(
        {"model": "bench-model", "messages": messages, "max_tokens": 256, "stream": stream}
    ).encode()


async def drive(
    session: aiohttp.ClientSession,
    url: str,
    *,
    stream: bool,
    count: int,
    concurrency: int,
    check_length: bool,
) -> tuple[list[float], int, float]:
    """`count` requests from `concurrency` workers; returns latencies (ms), error count, wall seconds."""
    body = request_body(stream)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    # The built-in upstream's bodies have known lengths; another upstream's only a known shape.
    expected = (SSE_LENGTH if stream else len(COMPLETION)) if check_length else None
    latencies: list[float] = []
    errors = 0
    remaining = count

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                async with session.post(url + PATH, data=body, headers=headers) as response:
                    received = 0
                    tail = b""
                    async for chunk in response.content.iter_any():
                        received += len(chunk)
                        tail = chunk
                    complete = received == expected if expected is not None else received > 0
                    if stream:
                        complete = complete and tail.rstrip().endswith(b"[DONE]")
                    if response.status != 200 or not complete:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


async def measure(target: str, url: str, pid: int, round_no: int, args: argparse.Namespace) -> list[Phase]:
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        check = args.upstream == "builtin"
        for stream, count in ((False, args.warmup), (True, args.warmup // 4)):
            await drive(
                session, url, stream=stream, count=count, concurrency=args.concurrency, check_length=check
            )
        phases = []
        for kind, count in (("json", args.requests), ("sse", args.stream_requests)):
            cpu_before = cpu_seconds(pid)
            latencies, errors, seconds = await drive(
                session,
                url,
                stream=kind == "sse",
                count=count,
                concurrency=args.concurrency,
                check_length=check,
            )
            cpu = (cpu_seconds(pid) - cpu_before) * 1000 / count
            phases.append(Phase(target, round_no, kind, count, errors, seconds, cpu, latencies))
    return phases


# --- the run -------------------------------------------------------------------------------------------


def start_upstream(choice: str) -> tuple[subprocess.Popen[str], str]:
    if choice == "mock":
        return start(
            [PYTHON, "-m", "ccproxy_asgi.mock_upstream", "--port", "0"], "mock-upstream listening on"
        )
    return start([PYTHON, __file__, "--serve-upstream", "--port", "0"], "bench-upstream listening on")


def print_table(phases: list[Phase]) -> None:
    print()
    print("| target | round | kind | req/s | proxy CPU ms/req | p50 ms | p99 ms | errors |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for kind in ("json", "sse"):
        for phase in sorted((p for p in phases if p.kind == kind), key=lambda p: (p.target, p.round)):
            cpu = "-" if phase.cpu_ms_per_request is None else f"{phase.cpu_ms_per_request:.3f}"
            print(
                f"| {phase.target} | {phase.round} | {phase.kind} | {phase.rps:.0f} | {cpu} | "
                f"{phase.percentile(0.5):.1f} | {phase.percentile(0.99):.1f} | {phase.errors} |"
            )
    print()
    print("Mean over rounds:")
    print("| target | kind | req/s | proxy CPU ms/req | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|---:|")
    targets = sorted({p.target for p in phases})
    for kind in ("json", "sse"):
        for target in targets:
            group = [p for p in phases if p.target == target and p.kind == kind]
            cpus = [p.cpu_ms_per_request for p in group if p.cpu_ms_per_request is not None]
            cpu = f"{statistics.mean(cpus):.3f}" if cpus else "-"
            print(
                f"| {target} | {kind} | {statistics.mean(p.rps for p in group):.0f} | {cpu} | "
                f"{statistics.mean(p.percentile(0.5) for p in group):.1f} | "
                f"{statistics.mean(p.percentile(0.99) for p in group):.1f} |"
            )


async def run(args: argparse.Namespace) -> list[Phase]:
    upstream, upstream_url = start_upstream(args.upstream)
    print(f"upstream: {upstream_url} ({args.upstream})", file=sys.stderr)
    phases: list[Phase] = []
    try:
        targets = [(lib, mode) for mode in args.modes.split(",") for lib in args.clients.split(",")]
        for round_no in range(1, args.rounds + 1):
            if args.baseline:
                # No proxy at all: the ceiling the upstream and the load generator allow on this machine.
                phases += await measure("(no proxy)", upstream_url, upstream.pid, round_no, args)
                for phase in phases[-2:]:
                    phase.cpu_ms_per_request = None
            for lib, mode in targets:
                command = [PYTHON, str(ROOT / "bench" / "passthrough.py"), "--client", lib]
                command += ["--upstream", upstream_url, "--port", "0"]
                if mode == "direct":
                    command.append("--direct")
                proxy, proxy_url = start(command, "passthrough listening on")
                try:
                    target = lib if mode == "wrapped" else f"{lib} (direct)"
                    result = await measure(target, proxy_url, proxy.pid, round_no, args)
                finally:
                    stop(proxy)
                for phase in result:
                    print(
                        f"round {round_no} {target:18} {phase.kind:4} {phase.rps:7.0f} req/s "
                        f"cpu {phase.cpu_ms_per_request:.3f} ms/req p50 {phase.percentile(0.5):.1f} "
                        f"p99 {phase.percentile(0.99):.1f} errors {phase.errors}",
                        file=sys.stderr,
                    )
                phases += result
    finally:
        stop(upstream)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", choices=["builtin", "mock"], default="builtin")
    parser.add_argument("--clients", default="aiohttp,httpx,httpx2")
    parser.add_argument("--modes", default="wrapped", help="wrapped (our UpstreamClient), direct, or both")
    parser.add_argument("--requests", type=int, default=3000, help="non-stream requests per round")
    parser.add_argument("--stream-requests", type=int, default=1000, help="stream requests per round")
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", action="store_true", help="also load the upstream with no proxy")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.port)
        return

    import uvloop

    phases = uvloop.run(run(args))
    print_table(phases)
    if args.json:
        rows = [
            {
                "target": p.target,
                "round": p.round,
                "kind": p.kind,
                "rps": p.rps,
                "cpu_ms_per_request": p.cpu_ms_per_request,
                "p50_ms": p.percentile(0.5),
                "p99_ms": p.percentile(0.99),
                "errors": p.errors,
            }
            for p in phases
        ]
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
