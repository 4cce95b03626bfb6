"""End to end: the real proxy against a bare pass-through baseline, on the same machine, in one run.

Starts one mock upstream (`python -m ccproxy_asgi.mock_upstream`), the proxy (`ccproxy_asgi.asgi:app`)
and the pass-through baseline (`bench/passthrough.py`, the same `UpstreamClient`, aiohttp by default)
as subprocesses. Both servers run under uvicorn with the same configuration (1 worker, uvloop,
httptools, lifespan on, log level warning, no access log, a pre-bound socket with backlog 2048): the
baseline's `main()` does exactly that, and `--serve-proxy` below does the same for the proxy.

An aiohttp load generator in this process then drives each server with `--concurrency` concurrent
requests, rounds interleaved (proxy, baseline, then baseline, proxy in the next round, …). The proxy
gets Anthropic bodies at `/v1/messages`; the baseline gets at `/v1/chat/completions` the OpenAI body the
proxy's own translation makes of the same request (translated once, up front), so both upstream calls
carry the same payload. The mock is scripted by prompt directives (`[[chunks:20]]`, `[[chunk-delay:…]]`),
which survive the translation and are equally present in both bodies.

Reported per scenario and target: requests/s; CPU ms per request of the server process, of the mock and
of this load generator (utime+stime deltas from /proc/<pid>/stat); p50/p99 latency; errors (every
response is checked: 200, a complete JSON message, or a stream read to `message_stop` / `[DONE]`); the
network reads per streamed response; and the CPU the rest of the machine used meanwhile (other users'
load, in cores). Then the ratios proxy/baseline for throughput (target >= 0.6) and CPU per request.

    .venv/bin/python bench/bench_e2e.py                          # all scenarios, 2000 requests, 2 rounds
    .venv/bin/python bench/bench_e2e.py --requests 3000 --rounds 3 --scenarios small-json,cc-stream
    .venv/bin/python bench/bench_e2e.py --profile-proxy /tmp/proxy.prof --scenarios cc-json
        # proxy only, run in-process under cProfile; prints the top functions, keeps the .prof file

Linux only (/proc). Scenarios: small-json, small-stream, stream-delay, cc-json, cc-stream.

Caveat: bench/passthrough.py builds its client with `HTTPClientConfig(trust_env=False)`, while the proxy
uses the default `trust_env=True` (aiohttp then looks up netrc and the proxy variables in a worker
thread on every request). That difference is part of what the ratios show.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import ctypes
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
MOCK_MARKER = "mock-upstream listening on "
PASSTHROUGH_MARKER = "passthrough listening on "
PROXY_MARKER = "bench-proxy listening on "
BACKLOG = 2048  # what bench/passthrough.py listens with
UPSTREAM_KEY = "x"


# --- scenarios -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    stream: bool
    claude_code: bool
    directives: str
    description: str


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("small-json", False, False, "[[words:30]]", "non-stream, one user message, ~30-word reply"),
        Scenario(
            "small-stream", True, False, "[[words:60]] [[chunks:20]]", "stream, one user message, 20 chunks"
        ),
        Scenario(
            "stream-delay",
            True,
            False,
            "[[words:60]] [[chunks:20]] [[chunk-delay:0.005]]",
            "stream, 20 chunks 5 ms apart (events arrive one by one)",
        ),
        Scenario(
            "cc-json",
            False,
            True,
            "[[words:30]]",
            "non-stream, Claude Code request (24 tools, 6 KB system, 40 msgs)",
        ),
        Scenario(
            "cc-stream", True, True, "[[words:60]] [[chunks:20]]", "stream, Claude Code request, 20 chunks"
        ),
    )
}


def anthropic_body(scenario: Scenario) -> dict[str, Any]:
    """The Messages request the proxy gets; the directives go into the last user message."""
    if not scenario.claude_code:
        return {
            "model": "claude-sonnet-4-5-20250929",
            "max_tokens": 1024,
            "messages": [
                {"role": "user", "content": f"Write a short note about the weather. {scenario.directives}"}
            ],
            "stream": scenario.stream,
        }
    from tests.fixtures.claude_code_request import build_claude_code_request

    body = copy.deepcopy(
        build_claude_code_request(n_tools=24, system_bytes=6000, n_messages=40, stream=scenario.stream)
    )
    last = body["messages"][-1]
    assert last["role"] == "user"
    if isinstance(last["content"], str):
        last["content"] += " " + scenario.directives
    else:
        last["content"].append({"type": "text", "text": scenario.directives})
    return body


def openai_payload(body: dict[str, Any]) -> dict[str, Any]:
    """The upstream body the proxy makes of `body`, built the way `ccproxy_asgi.app.build_endpoint` wires
    the translation from `Settings` (read from this process's environment, the proxy's)."""
    from ccproxy_asgi.app.settings import Settings
    from ccproxy_asgi.translate.models import ModelMapper
    from ccproxy_asgi.translate.options import ProfileResolver, TranslationOptions
    from ccproxy_asgi.translate.request import translate_request

    settings = Settings()
    models = ModelMapper(
        big_model=settings.big_model, small_model=settings.small_model, mapping=settings.model_map
    )
    profile_for = ProfileResolver.from_settings(
        reasoning_globs=settings.reasoning_models,
        max_tokens_field=settings.max_tokens_field,
        forward_top_k=settings.forward_top_k,
    )
    upstream_model = models.resolve(body["model"])
    translated = translate_request(
        copy.deepcopy(body),
        upstream_model=upstream_model,
        profile=profile_for(upstream_model),
        options=TranslationOptions(server_tools=settings.server_tools),
    )
    return translated.payload


# --- processes -----------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the benchmark dies, however it dies (Linux prctl)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _drain(stream: Any) -> None:
    with contextlib.suppress(Exception):
        while stream.read(65536):
            pass


def start_server(name: str, args: list[str], marker: str, env: dict[str, str], logdir: Path) -> Server:
    """Start a server subprocess, wait for its `<marker>http://host:port` line on stdout."""
    log = logdir / f"{name}.stderr.log"
    with open(log, "wb") as err:
        process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
            start_new_session=True,  # Ctrl-C reaches only the benchmark, which then stops the children
            preexec_fn=_die_with_parent,
        )
    server = Server(name, process, "", log)
    assert process.stdout is not None
    buffer = b""
    deadline = time.monotonic() + 60
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline and marker.encode() not in buffer:
            if not selector.select(timeout=0.5):
                if process.poll() is not None:
                    break
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            buffer += chunk
    text = buffer.decode(errors="replace")
    if marker not in text:
        stop_process(process)
        raise RuntimeError(f"{name} did not start ({args}):\n{text}\n{server.log_tail()}")
    server.url = text.split(marker, 1)[1].split()[0].rstrip("/")
    # Nothing should write to stdout after this, but never let a full pipe block a child.
    threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
    return server


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()


def wait_ready(url: str, timeout: float = 30.0) -> None:
    """Wait until `url` answers HTTP at all (any status)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s: {last}")


def clean_env(mock_url: str) -> dict[str, str]:
    """The environment for the servers (and this process's Settings): no stray CCPROXY_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCPROXY_")}
    for key in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        env.pop(key, None)
    env.update(
        CCPROXY_UPSTREAM_BASE_URL=mock_url + "/v1",
        CCPROXY_UPSTREAM_API_KEY=UPSTREAM_KEY,
        CCPROXY_LOG_LEVEL="warning",
        PYTHONPATH=str(ROOT),
    )
    return env


# --- CPU accounting ------------------------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    """utime + stime of a whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def machine_busy_ticks() -> int:
    """Busy ticks of all CPUs (everything but idle and iowait), from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest is counted in user already.
    return sum(values[:8]) - values[3] - values[4]


def code_version() -> str:
    """The commit and whether the work tree differs from it (the proxy is measured as checked out)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "ccproxy_asgi"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head or 'unknown'}" + (f" + {len(changed)} changed paths in ccproxy_asgi/" if changed else "")


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# --- the load generator --------------------------------------------------------------------------------


@dataclass
class Target:
    name: str  # "proxy" or "baseline"
    server: Server
    path: str
    headers: dict[str, str]
    bodies: dict[str, bytes]  # scenario name → request body


@dataclass
class Phase:
    scenario: str
    target: str
    round: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_ms: float
    mock_cpu_ms: float
    loadgen_cpu_ms: float
    other_cores: float  # CPU used meanwhile by processes outside this benchmark, in cores
    reads_per_response: float
    bytes_per_response: float
    error_samples: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def check_response(target: str, stream: bool, status: int, body: bytes) -> str | None:
    """None when the response is complete and successful, else what is wrong with it."""
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    if stream:
        if target == "proxy":
            if b"event: error" in body:
                return f"error event: {body[-300:]!r}"
            if b"event: message_stop" not in body[-300:]:
                return f"stream without message_stop: {body[-200:]!r}"
        elif not body.rstrip().endswith(b"data: [DONE]"):
            return f"stream without [DONE]: {body[-200:]!r}"
        return None
    import orjson

    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return f"bad JSON: {exc}: {body[:200]!r}"
    if target == "proxy":
        if data.get("type") != "message" or not data.get("content") or not data.get("stop_reason"):
            return f"incomplete message: {body[:300]!r}"
    else:
        choices = data.get("choices") or [{}]
        if not choices[0].get("finish_reason") or not choices[0].get("message"):
            return f"incomplete completion: {body[:300]!r}"
    return None


async def drive(
    session: Any, target: Target, scenario: Scenario, count: int, concurrency: int
) -> tuple[list[float], int, float, int, int, list[str]]:
    """`count` requests from `concurrency` workers: latencies (ms), errors, wall seconds, reads, bytes,
    up to 3 error descriptions."""
    import aiohttp

    url = target.server.url + target.path
    body = target.bodies[scenario.name]
    headers = target.headers
    latencies: list[float] = []
    errors = 0
    reads = 0
    received = 0
    samples: list[str] = []
    remaining = count

    async def worker() -> None:
        nonlocal remaining, errors, reads, received
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            problem: str | None
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    parts = []
                    async for chunk in response.content.iter_any():
                        parts.append(chunk)
                    data = b"".join(parts)
                    reads += len(parts)
                    received += len(data)
                    problem = check_response(target.name, scenario.stream, response.status, data)
            except (TimeoutError, aiohttp.ClientError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            latencies.append((time.perf_counter() - started) * 1000)
            if problem is not None:
                errors += 1
                if len(samples) < 3:
                    samples.append(problem)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started, reads, received, samples


async def measure(
    session: Any, target: Target, scenario: Scenario, round_no: int, args: argparse.Namespace, mock_pid: int
) -> Phase:
    pids = (target.server.pid, mock_pid, os.getpid())
    before = [cpu_ticks(pid) for pid in pids]
    machine_before = machine_busy_ticks()
    latencies, errors, seconds, reads, received, samples = await drive(
        session, target, scenario, args.requests, args.concurrency
    )
    after = [cpu_ticks(pid) for pid in pids]
    machine = machine_busy_ticks() - machine_before
    deltas = [a - b for a, b in zip(after, before, strict=True)]
    per_request = [d * 1000 / CLK_TCK / args.requests for d in deltas]
    other = max(0, machine - sum(deltas)) / CLK_TCK / seconds
    return Phase(
        scenario.name,
        target.name,
        round_no,
        args.requests,
        errors,
        seconds,
        latencies,
        per_request[0],
        per_request[1],
        per_request[2],
        other,
        reads / args.requests,
        received / args.requests,
        samples,
    )


def log_phase(phase: Phase) -> None:
    print(
        f"  round {phase.round} {phase.scenario:13} {phase.target:8} {phase.rps:7.0f} req/s  "
        f"server {phase.server_cpu_ms:6.3f} ms/req  mock {phase.mock_cpu_ms:5.3f}  "
        f"loadgen {phase.loadgen_cpu_ms:5.3f}  p50 {phase.percentile(0.5):6.1f}  p99 {phase.percentile(0.99):6.1f}  "
        f"errors {phase.errors}  other load {phase.other_cores:.2f} cores  load {loadavg()}",
        file=sys.stderr,
        flush=True,
    )
    for sample in phase.error_samples:
        print(f"    error: {sample}", file=sys.stderr)


async def run_load(
    targets: list[Target], scenarios: list[Scenario], args: argparse.Namespace, mock_pid: int
) -> list[Phase]:
    import aiohttp

    sessions = {
        t.name: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=args.concurrency),
            timeout=aiohttp.ClientTimeout(total=120),
        )
        for t in targets
    }
    phases: list[Phase] = []
    # Inside the event loop a Python-level handler's KeyboardInterrupt can surface in any callback and be
    # swallowed by the HTTP library; cancelling this task instead unwinds cleanly.
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        if args.warmup:
            print(f"warm-up: {args.warmup} requests per scenario and target", file=sys.stderr, flush=True)
            for scenario in scenarios:
                for target in targets:
                    _, errors, _, _, _, samples = await drive(
                        sessions[target.name], target, scenario, args.warmup, args.concurrency
                    )
                    if errors:
                        raise RuntimeError(f"warm-up of {target.name} / {scenario.name} failed: {samples}")
        for round_no in range(1, args.rounds + 1):
            # Alternate which target goes first, so neither always follows the other.
            order = targets if round_no % 2 else targets[::-1]
            for scenario in scenarios:
                for target in order:
                    phase = await measure(sessions[target.name], target, scenario, round_no, args, mock_pid)
                    log_phase(phase)
                    phases.append(phase)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
            signal.signal(sig, _interrupt)
        for session in sessions.values():
            await session.close()
    return phases


# --- the report ----------------------------------------------------------------------------------------


def _mean(values: list[float]) -> float:
    return statistics.mean(values) if values else float("nan")


def report(
    phases: list[Phase], scenarios: list[Scenario], args: argparse.Namespace, load: dict[str, str]
) -> None:
    targets = list(dict.fromkeys(p.target for p in phases))
    print()
    print(
        f"ccproxy_asgi end-to-end: {args.requests} requests x {args.rounds} rounds per scenario and target, "
        f"concurrency {args.concurrency}, {NCPU} CPUs"
    )
    print(f"loadavg (1/5/15 min): before {load['before']}, after {load['after']}; code: {code_version()}")
    if args.proxy_env:
        print(f"proxy-only environment: {' '.join(args.proxy_env)}")
    print()
    print(
        "| scenario | target | req/s | server CPU ms/req | mock CPU ms/req | loadgen CPU ms/req | "
        "p50 ms | p99 ms | errors | reads/resp | other load (cores) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scenario in scenarios:
        for target in targets:
            group = [p for p in phases if p.scenario == scenario.name and p.target == target]
            if not group:
                continue
            print(
                f"| {scenario.name} | {target} | {_mean([p.rps for p in group]):.0f} | "
                f"{_mean([p.server_cpu_ms for p in group]):.3f} | {_mean([p.mock_cpu_ms for p in group]):.3f} | "
                f"{_mean([p.loadgen_cpu_ms for p in group]):.3f} | {_mean([p.percentile(0.5) for p in group]):.1f} | "
                f"{_mean([p.percentile(0.99) for p in group]):.1f} | {sum(p.errors for p in group)} | "
                f"{_mean([p.reads_per_response for p in group]):.1f} | {_mean([p.other_cores for p in group]):.2f} |"
            )
    print("\n(means over rounds; errors summed; 'other load' = CPU used by processes outside the benchmark)")
    if set(targets) != {"proxy", "baseline"}:
        return
    print()
    print(
        "| scenario | throughput proxy/baseline | per round | CPU/req proxy/baseline | per round | target |"
    )
    print("|---|---:|---|---:|---|---|")
    lines = []
    for scenario in scenarios:
        pairs = []
        for round_no in range(1, args.rounds + 1):
            got = {p.target: p for p in phases if p.scenario == scenario.name and p.round == round_no}
            if "proxy" in got and "baseline" in got:
                pairs.append((got["proxy"], got["baseline"]))
        if not pairs:
            continue
        rps_ratios = [p.rps / b.rps for p, b in pairs]
        cpu_ratios = [
            p.server_cpu_ms / b.server_cpu_ms if b.server_cpu_ms else float("nan") for p, b in pairs
        ]
        rps_ratio = _mean([p.rps for p, _ in pairs]) / _mean([b.rps for _, b in pairs])
        base_cpu = _mean([b.server_cpu_ms for _, b in pairs])
        cpu_ratio = _mean([p.server_cpu_ms for p, _ in pairs]) / base_cpu if base_cpu else float("nan")
        errors = sum(p.errors + b.errors for p, b in pairs)
        verdict = "OK" if rps_ratio >= 0.6 else "BELOW 0.6"
        if errors:
            verdict += f", {errors} ERRORS"
        print(
            f"| {scenario.name} | {rps_ratio:.2f} | {', '.join(f'{r:.2f}' for r in rps_ratios)} | "
            f"{cpu_ratio:.2f} | {', '.join(f'{r:.2f}' for r in cpu_ratios)} | {verdict} |"
        )
        lines.append(
            f"{scenario.name}: throughput proxy/baseline {rps_ratio:.2f} (target >= 0.6: {verdict}); "
            f"CPU per request proxy/baseline {cpu_ratio:.2f} "
            f"({_mean([p.server_cpu_ms for p, _ in pairs]):.3f} vs {base_cpu:.3f} ms)"
        )
    print()
    for line in lines:
        print(line)


# --- the proxy server (a subprocess of the benchmark) --------------------------------------------------


def serve_proxy(port: int, profile: str | None) -> None:
    """Serve `ccproxy_asgi.asgi:app` exactly as bench/passthrough.py serves the baseline."""
    import uvicorn

    config = uvicorn.Config(
        "ccproxy_asgi.asgi:app",
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(BACKLOG)
    print(f"{PROXY_MARKER}http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(config)
    if profile is None:
        server.run(sockets=[sock])
        return
    import cProfile

    def leave(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    # uvicorn restores this handler after its graceful shutdown and re-raises the signal it caught; with
    # the default SIGTERM action the process would die before the stats are written.
    signal.signal(signal.SIGTERM, leave)
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        server.run(sockets=[sock])
    finally:
        profiler.disable()
        profiler.dump_stats(profile)


def print_profile(path: str, limit: int) -> None:
    import pstats

    for key, title in (("tottime", "own time"), ("cumulative", "cumulative time")):
        print(f"\n=== proxy profile: top {limit} by {title} ({path}) ===")
        pstats.Stats(path).sort_stats(key).print_stats(limit)


# --- main ----------------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (and SIGINT, even when started with it ignored) unwind like Ctrl-C, so the finally blocks
    stop the children."""
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per scenario, target and round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, from: {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests per scenario and target")
    parser.add_argument(
        "--client", choices=["aiohttp", "httpx"], default="aiohttp", help="upstream client of both"
    )
    parser.add_argument("--json", type=Path, help="also write the per-phase results here")
    parser.add_argument(
        "--proxy-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the proxy process only (repeatable), e.g. to try a setting;\n"
        "the baseline's OpenAI bodies are still translated with the common settings",
    )
    parser.add_argument(
        "--profile-proxy",
        metavar="FILE",
        help="proxy only, under cProfile; write the stats to FILE and print the top functions",
    )
    parser.add_argument("--profile-top", type=int, default=25, help="functions shown per profile listing")
    parser.add_argument("--serve-proxy", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    args.scenario_list = [SCENARIOS[n] for n in names]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_proxy:
        serve_proxy(args.port, args.profile_out)
        return 0

    import uvloop

    scenarios: list[Scenario] = args.scenario_list
    load = {"before": loadavg(), "after": ""}
    print(f"loadavg before: {load['before']} ({NCPU} CPUs)", file=sys.stderr, flush=True)
    servers: list[Server] = []
    logdir = Path(tempfile.mkdtemp(prefix="bench_e2e_"))
    phases: list[Phase] = []
    try:
        with sigterm_as_interrupt():
            mock = start_server(
                "mock",
                [
                    PYTHON,
                    "-m",
                    "ccproxy_asgi.mock_upstream",
                    "--port",
                    "0",
                    "--record-limit",
                    "0",
                    "--parent-pid",
                    str(os.getpid()),
                ],
                MOCK_MARKER,
                # No stray CCPROXY_MOCK_* defaults: the mock is scripted by the prompts alone.
                {
                    **{k: v for k, v in os.environ.items() if not k.startswith("CCPROXY_")},
                    "PYTHONPATH": str(ROOT),
                },
                logdir,
            )
            servers.append(mock)
            env = clean_env(mock.url)
            env["CCPROXY_HTTP_CLIENT"] = args.client
            # This process builds the baseline's OpenAI bodies with the proxy's settings.
            os.environ.clear()
            os.environ.update(env)

            anthropic = {s.name: anthropic_body(s) for s in scenarios}
            proxy_bodies = {name: json.dumps(body).encode() for name, body in anthropic.items()}
            baseline_bodies = {
                name: json.dumps(openai_payload(body)).encode() for name, body in anthropic.items()
            }
            for scenario in scenarios:
                print(
                    f"{scenario.name}: {scenario.description}; request {len(proxy_bodies[scenario.name])} B "
                    f"(Anthropic) / {len(baseline_bodies[scenario.name])} B (OpenAI, for the baseline)",
                    file=sys.stderr,
                )

            proxy_cmd = [PYTHON, str(Path(__file__).resolve()), "--serve-proxy", "--port", "0"]
            if args.profile_proxy:
                proxy_cmd += ["--profile-out", str(Path(args.profile_proxy).resolve())]
            proxy_env = dict(env)
            for item in args.proxy_env:
                name, _, value = item.partition("=")
                proxy_env[name] = value
            proxy = start_server("proxy", proxy_cmd, PROXY_MARKER, proxy_env, logdir)
            servers.append(proxy)
            targets = [
                Target(
                    "proxy",
                    proxy,
                    "/v1/messages",
                    {
                        "content-type": "application/json",
                        "x-api-key": "sk-bench",
                        "anthropic-version": "2023-06-01",
                    },
                    proxy_bodies,
                )
            ]
            if not args.profile_proxy:
                baseline = start_server(
                    "baseline",
                    [
                        PYTHON,
                        str(ROOT / "bench" / "passthrough.py"),
                        "--client",
                        args.client,
                        "--upstream",
                        mock.url,
                        "--port",
                        "0",
                    ],
                    PASSTHROUGH_MARKER,
                    env,
                    logdir,
                )
                servers.append(baseline)
                targets.append(
                    Target(
                        "baseline",
                        baseline,
                        "/v1/chat/completions",
                        {"content-type": "application/json", "authorization": f"Bearer {UPSTREAM_KEY}"},
                        baseline_bodies,
                    )
                )
            for server in servers:
                wait_ready(server.url)
            print(
                "servers: " + ", ".join(f"{s.name} pid {s.pid} {s.url}" for s in servers),
                file=sys.stderr,
                flush=True,
            )
            phases = uvloop.run(run_load(targets, scenarios, args, mock.pid))
            load["after"] = loadavg()
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception:
        for server in servers:
            tail = server.log_tail()
            if tail:
                print(f"--- {server.name} stderr ---\n{tail}", file=sys.stderr)
        raise
    finally:
        # Servers in reverse order: the proxy and the baseline before their upstream.
        for server in reversed(servers):
            stop_process(server.process)

    report(phases, scenarios, args, load)
    if args.json:
        rows = [
            {
                "scenario": p.scenario,
                "target": p.target,
                "round": p.round,
                "requests": p.requests,
                "rps": p.rps,
                "server_cpu_ms_per_request": p.server_cpu_ms,
                "mock_cpu_ms_per_request": p.mock_cpu_ms,
                "loadgen_cpu_ms_per_request": p.loadgen_cpu_ms,
                "p50_ms": p.percentile(0.5),
                "p99_ms": p.percentile(0.99),
                "errors": p.errors,
                "reads_per_response": p.reads_per_response,
                "bytes_per_response": p.bytes_per_response,
                "other_load_cores": p.other_cores,
            }
            for p in phases
        ]
        args.json.write_text(json.dumps({"loadavg": load, "phases": rows}, indent=2))
    if args.profile_proxy:
        print_profile(args.profile_proxy, args.profile_top)
    return 1 if any(p.errors for p in phases) else 0


if __name__ == "__main__":
    sys.exit(main())
