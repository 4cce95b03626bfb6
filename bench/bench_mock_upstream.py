"""How fast is the mock upstream? It must never be the bottleneck of a proxy benchmark.

Starts `python -m ccproxy_asgi.mock_upstream --port 0` as a child process, drives it with N concurrent
aiohttp clients, and reports per scenario: requests/s seen by the clients, and the CPU time the mock
process spent per request (user+system, read from /proc/<pid>/stat, so Linux only).

    PYTHONPATH=. .venv/bin/python bench/bench_mock_upstream.py --requests 5000 --concurrency 32

Client and server share the machine: on few cores the client's own CPU caps requests/s, which is why the
mock's CPU ms per request is the figure to compare with the proxy's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

REPO_ROOT = Path(__file__).resolve().parents[1]
LISTENING_PREFIX = "mock-upstream listening on "
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Scenario:
    name: str
    stream: bool
    words: int
    chunks: int
    large_prompt: bool = False


SCENARIOS = (
    Scenario("non-stream, 12 words", stream=False, words=12, chunks=5),
    Scenario("stream, 12 words / 5 chunks", stream=True, words=12, chunks=5),
    Scenario("stream, 200 words / 50 chunks", stream=True, words=200, chunks=50),
    Scenario("stream, 40 KB prompt + 20 tools", stream=True, words=12, chunks=5, large_prompt=True),
)

# A Claude-Code-sized request: a long system prompt and a list of tools with JSON schemas.
_SYSTEM = " ".join(f"Rule {i}: keep answers precise, cite files, and never invent APIs." for i in range(400))
_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{i}",
            "description": "Does one well-defined thing with the workspace. " * 8,
            "parameters": {
                "type": "object",
                "properties": {
                    f"arg_{j}": {"type": "string", "description": "An argument."} for j in range(6)
                },
                "required": ["arg_0"],
            },
        },
    }
    for i in range(20)
]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15 of the full line)


def start_mock(extra: list[str]) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "ccproxy_asgi.mock_upstream", "--port", "0", *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith(LISTENING_PREFIX):
        process.kill()
        raise SystemExit(f"mock did not start: {line!r}")
    return process, line[len(LISTENING_PREFIX) :]


def request_body(scenario: Scenario) -> bytes:
    system = _SYSTEM if scenario.large_prompt else "You are a helpful assistant."
    prompt = f"Say something. [[words:{scenario.words}]] [[chunks:{scenario.chunks}]]"
    body: dict[str, object] = {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
    }
    if scenario.large_prompt:
        body["tools"] = _TOOLS
    if scenario.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


async def run_scenario(url: str, pid: int, scenario: Scenario, requests: int, concurrency: int) -> None:
    payload = request_body(scenario)
    headers = {"content-type": "application/json", "authorization": "Bearer bench"}
    remaining = requests
    received_bytes = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            async with session.post(url, data=payload, headers=headers) as response:
                response.raise_for_status()
                return len(await response.read())

        async def worker() -> None:
            nonlocal remaining, received_bytes
            while remaining > 0:
                remaining -= 1
                size = (
                    await one()
                )  # not `received_bytes += await one()`: that reads the total before awaiting
                received_bytes += size

        await asyncio.gather(*(one() for _ in range(concurrency)))  # warm up connections
        cpu_before, client_before, started = cpu_seconds(pid), time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        mock_ms = (cpu_seconds(pid) - cpu_before) * 1000 / requests
        client_ms = (time.process_time() - client_before) * 1000 / requests
    print(
        f"{scenario.name:30s} {requests / elapsed:7.0f} req/s  mock CPU {mock_ms:6.3f} ms/req"
        f"  client CPU {client_ms:6.3f} ms/req  {received_bytes / requests:6.0f} B/resp"
    )


async def main_async(args: argparse.Namespace) -> None:
    process, base_url = start_mock(args.mock_args)
    try:
        print(
            f"mock pid {process.pid} at {base_url}; {args.requests} requests, {args.concurrency} concurrent"
        )
        for scenario in SCENARIOS:
            await run_scenario(
                base_url + "/v1/chat/completions", process.pid, scenario, args.requests, args.concurrency
            )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("mock_args", nargs="*", help="extra mock-upstream flags (after --)")
    args = parser.parse_args()
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main_async(args))


if __name__ == "__main__":
    main()
