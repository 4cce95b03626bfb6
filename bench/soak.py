"""Soak: tens of thousands of mixed requests against `ccproxy-asgi serve` (default settings), watching the
proxy process for leaks and for failures it causes itself.

Starts, as subprocesses of this script and the way the tests do (`tests/support/mock_process.py`,
`tests/support/server_process.py`): the mock upstream, and the proxy with `ccproxy-asgi serve
--log-level warning` (uvicorn, one worker, every other setting at its default) in front of it. With
`taskset` and at least two CPUs, the proxy is pinned to CPU 0 and the mock and this load generator to
CPU 1, so the proxy has a core of its own.

Load: `--concurrency` workers send `--requests` requests (after `--warmup` more), each request's kind
drawn from the mix (`--mix`, weights in %) and its body distinct (`soak#N` in the text):

    json, stream            healthy Messages requests (aiohttp): 200, the whole message, echoing `soak#N`
    sdk-json, sdk-stream    the same through the official `anthropic` SDK (max_retries=0)
    500-json, 500-stream    `[[fault:500:message=soak-500-N]]`: the upstream fails this request (every
                            attempt); expected 500 carrying the upstream's message `soak-500-N`
    cut-json, cut-stream    `[[fault:cut]]`: the upstream drops the connection mid-body / after 3 chunks;
                            expected 502, or (stream) 200 ending in an `error` event
    malformed-json/-stream  `[[fault:malformed]]`: truncated JSON body / an invalid chunk; same as cut
    bad-json, no-max-tokens client mistakes: expected 400 invalid_request_error
    disconnect              a slow stream (40 chunks, 10 ms apart) the client closes after 3 events

Anything else is UNEXPECTED and printed with its body (a 529 from the breaker, a 500 without the
upstream's message, i.e. one the proxy made itself, a timeout, a wrong echo, ...).

Sampled every `--sample-interval` seconds from /proc/<pid>: the proxy's RSS (VmRSS), open fds, threads,
and its asyncio tasks. The product has no way to report its task count, so this script puts a
`sitecustomize.py` on the proxy's PYTHONPATH (the package is unchanged) that installs a SIGUSR2 handler;
the handler writes `len(asyncio.all_tasks())` of the running loop to a file (`--no-task-probe` skips it).
Open fds are counted by kind, TCP sockets as listen / client / upstream (from /proc/<pid>/net/tcp).
Baseline: after the warm-up, client connections closed, `--idle` seconds idle (35: the upstream pool
closes a connection idle for 15 s, on a 15 s timer, so after 30 s it is empty). End: the same after the
load, then up to `--settle` more seconds for fds and tasks to come back down.

Exit status 1 when: RSS grew >= `--max-rss-growth` % (10), fds or tasks did not return to the baseline,
or any response was unexpected.

    .venv/bin/python bench/soak.py --quick                     # 5,000 requests, smoke run
    .venv/bin/python bench/soak.py                             # 50,000 requests at 16 concurrent
    .venv/bin/python bench/soak.py --mix sdk-json=0,sdk-stream=0,disconnect=20

Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = "claude-sonnet-4-5-20250929"
HEADERS = {"content-type": "application/json", "x-api-key": "soak", "anthropic-version": "2023-06-01"}
CLIENT_TIMEOUT = 120.0
DISCONNECT_AFTER_EVENTS = 3

#: Default mix, in % (any non-negative weights work; they need not add up to 100).
DEFAULT_MIX: dict[str, float] = {
    "json": 38,
    "stream": 36,
    "sdk-json": 1.5,
    "sdk-stream": 1.5,
    "500-json": 1,
    "500-stream": 1,
    "cut-json": 1,
    "cut-stream": 1,
    "malformed-json": 1,
    "malformed-stream": 1,
    "bad-json": 3,
    "no-max-tokens": 3,
    "disconnect": 11,
}

#: Installed in the proxy process via PYTHONPATH: SIGUSR2 -> the running loop's task count, to a file.
TASK_PROBE = '''\
"""soak.py's task probe: on SIGUSR2, write len(asyncio.all_tasks()) of the running loop to a file."""
import os
import signal

_DIR = os.environ.get("SOAK_TASK_PROBE_DIR")
if _DIR:

    def _soak_task_probe(signum, frame):
        import asyncio

        try:
            loop = asyncio.events._get_running_loop()
            count = len(asyncio.all_tasks(loop)) if loop is not None else -1
        except Exception:
            count = -2
        path = os.path.join(_DIR, f"tasks.{os.getpid()}")
        with open(path + ".tmp", "w") as out:
            out.write(f"{count}\\n")
        os.replace(path + ".tmp", path)

    signal.signal(signal.SIGUSR2, _soak_task_probe)
    with open(os.path.join(_DIR, f"ready.{os.getpid()}"), "w"):
        pass
'''


# --- requests -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    label: str  # e.g. "200", "200 error-event", "500 upstream", "400", "exception"
    expected: bool
    detail: str = ""  # for unexpected ones: what was wrong, and the body


def _messages_body(n: int, directives: str, *, stream: bool, max_tokens: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"soak#{n} tell me about the weather {directives}"}],
        "stream": stream,
    }
    if max_tokens:
        body["max_tokens"] = 256
    return body


def request_body(kind: str, n: int, rng: random.Random) -> bytes:
    import orjson

    words = rng.randint(12, 60)
    chunks = rng.randint(4, 20)
    if kind in ("json", "sdk-json"):
        body = _messages_body(n, f"[[words:{words}]]", stream=False)
    elif kind in ("stream", "sdk-stream"):
        body = _messages_body(n, f"[[words:{words}]] [[chunks:{chunks}]]", stream=True)
    elif kind.startswith("500-"):
        body = _messages_body(n, f"[[fault:500:message=soak-500-{n}]]", stream=kind.endswith("stream"))
    elif kind == "cut-json":
        body = _messages_body(n, "[[fault:cut]]", stream=False)
    elif kind == "cut-stream":
        body = _messages_body(n, "[[fault:cut:after_chunks=3]] [[chunks:8]]", stream=True)
    elif kind == "malformed-json":
        body = _messages_body(n, "[[fault:malformed]]", stream=False)
    elif kind == "malformed-stream":
        body = _messages_body(n, "[[fault:malformed:after_chunks=2]] [[chunks:8]]", stream=True)
    elif kind == "bad-json":
        whole = orjson.dumps(_messages_body(n, "", stream=False))
        return whole[: rng.randint(10, len(whole) - 2)]  # cut short: not JSON
    elif kind == "no-max-tokens":
        body = _messages_body(n, "", stream=False, max_tokens=False)
    elif kind == "disconnect":
        body = _messages_body(n, "[[words:80]] [[chunks:40]] [[chunk-delay:0.01]]", stream=True)
    else:
        raise ValueError(kind)
    return orjson.dumps(body)


def _error_of(body: bytes) -> tuple[str, str]:
    """(error type, message) of an Anthropic error body, or ("", "") if it is not one."""
    import orjson

    try:
        data = orjson.loads(body)
        error = data["error"]
        return str(error.get("type", "")), str(error.get("message", ""))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return "", ""


def _stream_parts(body: bytes) -> tuple[set[str], str]:
    """The SSE event names and the concatenated text deltas of a Messages stream."""
    import orjson

    events: set[str] = set()
    text: list[str] = []
    for line in body.split(b"\n"):
        if line.startswith(b"event: "):
            events.add(line[7:].strip().decode(errors="replace"))
        elif line.startswith(b"data: ") and b'"text_delta"' in line:
            with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                text.append(orjson.loads(line[6:])["delta"]["text"])
    return events, "".join(text)


def _unexpected(label: str, status: int, body: bytes, why: str) -> Outcome:
    return Outcome(label, False, f"{why}; status {status}; body {body[:600]!r}")


def check(kind: str, n: int, status: int, content_type: str, body: bytes) -> Outcome:
    """Is this response what `kind` should get?"""
    marker = f"soak#{n}"
    is_stream = content_type.startswith("text/event-stream")
    if status == 200 and is_stream:
        events, text = _stream_parts(body)
        label = "200 error-event" if "error" in events else "200"
        if kind == "stream":
            if "error" in events or "message_stop" not in events:
                return _unexpected(label, status, body[-600:], "stream without message_stop or with an error")
            if marker not in text:
                return _unexpected(label, status, body[-600:], f"stream text does not echo {marker}")
            return Outcome(label, True)
        if kind in ("cut-stream", "malformed-stream"):
            if "error" in events and "message_stop" not in events:
                return Outcome(label, True)
            return _unexpected(
                label, status, body[-600:], "faulty upstream stream ended without an error event"
            )
        return _unexpected(label, status, body, "a stream where none was expected")
    error_type, message = _error_of(body)
    if status == 200:
        import orjson

        if kind != "json":
            return _unexpected("200", status, body, "a 200 where an error was expected")
        try:
            data = orjson.loads(body)
            text = "".join(b.get("text", "") for b in data.get("content", []) if isinstance(b, dict))
            complete = data.get("type") == "message" and bool(data.get("stop_reason"))
        except orjson.JSONDecodeError:
            return _unexpected("200", status, body, "200 body is not JSON")
        if not complete:
            return _unexpected("200", status, body, "incomplete message")
        if marker not in text:
            return _unexpected("200", status, body, f"reply does not echo {marker}")
        return Outcome("200", True)
    if kind.startswith("500-") and status == 500:
        if error_type == "api_error" and f"soak-500-{n}" in message:
            return Outcome("500 upstream", True)
        return _unexpected(
            "500 not upstream's", status, body, f"500 without the upstream message soak-500-{n}"
        )
    if kind in ("cut-json", "malformed-json", "cut-stream", "malformed-stream") and status == 502:
        if error_type == "api_error":
            return Outcome("502", True)
        return _unexpected("502", status, body, "502 without an api_error body")
    if kind in ("bad-json", "no-max-tokens") and status == 400:
        if error_type == "invalid_request_error":
            return Outcome("400", True)
        return _unexpected("400", status, body, "400 without an invalid_request_error body")
    return _unexpected(str(status), status, body, f"status {status} for a {kind} request")


@dataclass
class Tally:
    """Outcomes of one phase."""

    counts: Counter[tuple[str, str, bool]] = field(default_factory=Counter)  # (kind, label, expected)
    unexpected: list[str] = field(default_factory=list)
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    done: int = 0

    def add(self, kind: str, n: int, outcome: Outcome, ms: float) -> None:
        self.done += 1
        self.counts[(kind, outcome.label, outcome.expected)] += 1
        self.latencies_ms.setdefault(kind, []).append(ms)
        if not outcome.expected:
            line = f"UNEXPECTED #{n} {kind}: {outcome.label}: {outcome.detail}"
            self.unexpected.append(line)
            if len(self.unexpected) <= 20:
                print(line, file=sys.stderr, flush=True)

    @property
    def unexpected_count(self) -> int:
        return sum(c for (_, _, ok), c in self.counts.items() if not ok)


class Load:
    """The HTTP clients (an aiohttp session, an `anthropic.AsyncAnthropic`) and one request of each kind."""

    def __init__(self, base_url: str, concurrency: int) -> None:
        import aiohttp

        self.url = base_url + "/v1/messages"
        self.base_url = base_url
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency),
            timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT),
        )
        self._sdk: Any = None

    @property
    def sdk(self) -> Any:
        if self._sdk is None:
            import anthropic

            self._sdk = anthropic.AsyncAnthropic(
                base_url=self.base_url, api_key="soak", max_retries=0, timeout=CLIENT_TIMEOUT
            )
        return self._sdk

    async def close(self) -> None:
        await self.session.close()
        if self._sdk is not None:
            await self._sdk.close()
            self._sdk = None

    async def one(self, kind: str, n: int, body: bytes) -> Outcome:
        import aiohttp

        try:
            if kind.startswith("sdk-"):
                return await self._sdk_request(kind, n, body)
            if kind == "disconnect":
                return await self._disconnect(n, body)
            async with self.session.post(self.url, data=body, headers=HEADERS) as response:
                data = await response.read()
                return check(kind, n, response.status, response.headers.get("content-type", ""), data)
        except (TimeoutError, aiohttp.ClientError) as exc:
            return Outcome("exception", False, f"{type(exc).__name__}: {exc}")

    async def _disconnect(self, n: int, body: bytes) -> Outcome:
        async with self.session.post(self.url, data=body, headers=HEADERS) as response:
            content_type = response.headers.get("content-type", "")
            if response.status != 200 or not content_type.startswith("text/event-stream"):
                data = await response.read()
                return _unexpected(str(response.status), response.status, data, "disconnect: no stream")
            seen = b""
            async for chunk in response.content.iter_any():
                seen += chunk
                if seen.count(b"\n\n") >= DISCONNECT_AFTER_EVENTS:
                    break
            response.close()  # drop the connection mid-stream
            if b"event: message_stop" in seen:
                return Outcome("200 finished before close", True)
            return Outcome(f"200 closed after {DISCONNECT_AFTER_EVENTS} events", True)

    async def _sdk_request(self, kind: str, n: int, body: bytes) -> Outcome:
        import anthropic
        import orjson

        params = orjson.loads(body)
        params.pop("stream")
        marker = f"soak#{n}"
        try:
            if kind == "sdk-json":
                message = await self.sdk.messages.create(**params)
            else:
                async with self.sdk.messages.stream(**params) as stream:
                    message = await stream.get_final_message()
        except anthropic.APIStatusError as exc:
            return _unexpected(str(exc.status_code), exc.status_code, exc.response.content, "SDK error")
        except anthropic.APIError as exc:
            return Outcome("exception", False, f"SDK {type(exc).__name__}: {exc}")
        text = "".join(getattr(block, "text", "") for block in message.content)
        if marker not in text or not message.stop_reason:
            return Outcome("200", False, f"SDK message incomplete or not echoing {marker}: {message!r}")
        return Outcome("200", True)


async def drive(
    load: Load,
    kinds: list[str],
    first: int,
    concurrency: int,
    seed: int,
    tally: Tally,
    on_progress: Callable[[], None] | None = None,
) -> float:
    """Send one request per entry of `kinds` (numbered from `first`); return the wall time."""
    rng = random.Random(seed)
    position = 0

    async def worker() -> None:
        nonlocal position
        while position < len(kinds):
            index = position
            position += 1
            kind, n = kinds[index], first + index
            body = request_body(kind, n, rng)
            started = time.perf_counter()
            outcome = await load.one(kind, n, body)
            tally.add(kind, n, outcome, (time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


# --- the proxy process, from /proc ----------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    at: float
    done: int
    rss_kb: int
    fds: int
    threads: int
    tasks: int | None
    fd_kinds: dict[str, int]


class Probe:
    """Reads the proxy's RSS, fds, threads (and asyncio tasks, via the SIGUSR2 probe) from /proc."""

    def __init__(self, pid: int, probe_dir: Path | None, port: int, upstream_port: int) -> None:
        self.pid = pid
        self.port = port
        self.upstream_port = upstream_port
        self.probe_dir = probe_dir
        self.started = time.monotonic()

    def status(self) -> dict[str, str]:
        fields = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        return fields

    def tcp_sockets(self) -> dict[int, tuple[int, int, str]]:
        """Socket inode -> (local port, remote port, state) of the TCP sockets in the proxy's namespace."""
        sockets = {}
        for table in ("tcp", "tcp6"):
            with contextlib.suppress(OSError), open(f"/proc/{self.pid}/net/{table}") as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
                    sockets[inode] = (
                        int(local.rsplit(":", 1)[1], 16),
                        int(remote.rsplit(":", 1)[1], 16),
                        state,
                    )
        return sockets

    def fd_kinds(self) -> dict[str, int]:
        """Open fds by kind; TCP sockets as listen / client (to the proxy's port) / upstream (to the mock)."""
        kinds: Counter[str] = Counter()
        tcp: dict[int, tuple[int, int, str]] | None = None
        for fd in Path(f"/proc/{self.pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            kind = target.split(":", 1)[0] if ":" in target else "file"
            if kind == "socket":
                tcp = self.tcp_sockets() if tcp is None else tcp
                local, remote, state = tcp.get(int(target[8:-1]), (0, 0, ""))
                if state == "0A":
                    kind = "listen"
                elif remote and remote == self.upstream_port:
                    kind = "upstream"
                elif local and local == self.port:
                    kind = "client"
                else:
                    kind = "tcp" if state else "socket"
            kinds[kind] += 1
        return dict(sorted(kinds.items()))

    async def tasks(self) -> int | None:
        if self.probe_dir is None or not (self.probe_dir / f"ready.{self.pid}").exists():
            return None
        out = self.probe_dir / f"tasks.{self.pid}"
        with contextlib.suppress(FileNotFoundError):
            out.unlink()
        os.kill(self.pid, signal.SIGUSR2)
        for _ in range(100):
            await asyncio.sleep(0.02)
            with contextlib.suppress(FileNotFoundError, ValueError):
                count = int(out.read_text())
                return count if count >= 0 else None
        return None

    async def sample(self, done: int) -> Sample:
        status = self.status()
        kinds = self.fd_kinds()
        return Sample(
            at=time.monotonic() - self.started,
            done=done,
            rss_kb=int(status["VmRSS"].split()[0]),
            fds=sum(kinds.values()),
            threads=int(status["Threads"]),
            tasks=await self.tasks(),
            fd_kinds=kinds,
        )


def _tasks(sample: Sample) -> str:
    return "n/a" if sample.tasks is None else str(sample.tasks)


def _max_tasks(samples: list[Sample]) -> str:
    counts = [s.tasks for s in samples if s.tasks is not None]
    return str(max(counts)) if counts else "n/a"


def show(sample: Sample, label: str) -> str:
    tasks = _tasks(sample)
    kinds = " ".join(f"{k}={v}" for k, v in sample.fd_kinds.items())
    return (
        f"{label:>9} t={sample.at:6.0f}s done={sample.done:6d} rss={sample.rss_kb / 1024:6.1f} MB "
        f"fds={sample.fds:3d} ({kinds}) threads={sample.threads:2d} tasks={tasks}"
    )


async def sampler(probe: Probe, tally: Tally, interval: float, samples: list[Sample]) -> None:
    last_done, last_at = 0, time.monotonic()
    while True:
        await asyncio.sleep(interval)
        sample = await probe.sample(tally.done)
        now = time.monotonic()
        rate = (sample.done - last_done) / (now - last_at)
        last_done, last_at = sample.done, now
        samples.append(sample)
        print(f"{show(sample, 'sample')} {rate:6.0f} req/s load {loadavg()}", file=sys.stderr, flush=True)


async def settle(probe: Probe, done: int, idle: float, extra: float, baseline: Sample | None) -> Sample:
    """Wait `idle` seconds, then up to `extra` more until fds and tasks are back at `baseline`."""
    await asyncio.sleep(idle)
    deadline = time.monotonic() + extra
    while True:
        sample = await probe.sample(done)
        back = baseline is None or (
            sample.fds <= baseline.fds
            and (sample.tasks is None or baseline.tasks is None or sample.tasks <= baseline.tasks)
        )
        if back or time.monotonic() >= deadline:
            return sample
        await asyncio.sleep(1.0)


# --- set-up and report ----------------------------------------------------------------------------------


def parse_mix(text: str | None) -> dict[str, float]:
    mix = dict(DEFAULT_MIX)
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, sep, weight = item.partition("=")
        if not sep or name.strip() not in DEFAULT_MIX:
            raise SystemExit(f"--mix: {item!r} is not KIND=WEIGHT with KIND one of {', '.join(DEFAULT_MIX)}")
        mix[name.strip()] = float(weight)
        if mix[name.strip()] < 0:
            raise SystemExit(f"--mix: negative weight in {item!r}")
    if not any(mix.values()):
        raise SystemExit("--mix: all weights are 0")
    return mix


def pin(pid: int, cpu: int) -> bool:
    """All threads of `pid` onto `cpu` with `taskset -a -p -c`; False if that failed."""
    result = subprocess.run(
        ["taskset", "-a", "-p", "-c", str(cpu), str(pid)], capture_output=True, text=True, check=False
    )
    return result.returncode == 0


def write_lines(path: str, lines: list[str]) -> None:
    Path(path).write_text("\n".join(lines) + "\n")


def print_tally(name: str, tally: Tally, seconds: float) -> None:
    print(f"\n{name}: {tally.done} requests in {seconds:.1f} s = {tally.done / seconds:.0f} req/s")
    by_kind: dict[str, list[tuple[str, bool, int]]] = {}
    for (kind, label, ok), count in sorted(tally.counts.items()):
        by_kind.setdefault(kind, []).append((label, ok, count))
    for kind in DEFAULT_MIX:
        if kind not in by_kind:
            continue
        latencies = sorted(tally.latencies_ms[kind])
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        outcomes = ", ".join(
            f"{label}: {count}" + ("" if ok else " UNEXPECTED") for label, ok, count in by_kind[kind]
        )
        total = sum(count for _, _, count in by_kind[kind])
        print(f"  {kind:17} {total:6d}  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  {outcomes}")
    print(f"  unexpected: {tally.unexpected_count}")


def summarize_log(text: str) -> None:
    lines = text.splitlines()
    levels: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    notable: list[str] = []
    for line in lines:
        parts = line.split(" ", 4)
        level = parts[2] if len(parts) > 2 and parts[2].isupper() else ""
        if level:
            levels[level] += 1
            rest = parts[4] if len(parts) > 4 else ""
            # "[req_...]: message: details" -> "message"
            messages[f"{level} {rest.split(': ', 2)[1] if rest.count(': ') >= 1 else rest}"[:100]] += 1
        if level in ("ERROR", "CRITICAL") or "Traceback" in line:
            notable.append(line)
    print(f"\nproxy stderr: {len(lines)} lines; by level: {dict(levels) or '-'}")
    for message, count in messages.most_common(6):
        print(f"  {count:6d} x {message}")
    for line in notable[:20]:
        print(f"  NOTABLE: {line[:400]}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=50_000, help="requests after the warm-up (50000)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument("--quick", action="store_true", help="a 5,000-request smoke run")
    parser.add_argument(
        "--warmup", type=int, default=1000, help="warm-up requests before the baseline (1000)"
    )
    parser.add_argument("--mix", help=f"KIND=WEIGHT,... over the defaults {DEFAULT_MIX}")
    parser.add_argument("--seed", type=int, default=11, help="seed of the mix and the request shapes")
    parser.add_argument("--sample-interval", type=float, default=5.0, help="seconds between samples (5)")
    parser.add_argument("--idle", type=float, default=35.0, help="idle seconds before baseline and end (35)")
    parser.add_argument(
        "--settle", type=float, default=30.0, help="extra seconds for fds/tasks to settle (30)"
    )
    parser.add_argument("--max-rss-growth", type=float, default=10.0, help="failing RSS growth in %% (10)")
    parser.add_argument("--server", default="uvicorn", choices=["uvicorn", "hypercorn", "granian"])
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--no-task-probe", action="store_true", help="do not count the proxy's asyncio tasks")
    parser.add_argument("--unexpected-log", help="write every unexpected response to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests = 5000
    args.mix = parse_mix(args.mix)
    return args


async def run(args: argparse.Namespace, probe: Probe, proxy_url: str, cpu_pids: dict[str, int]) -> int:
    from bench_e2e import cpu_ticks, machine_busy_ticks

    names = list(args.mix)
    weights = [args.mix[name] for name in names]
    plan = random.Random(args.seed).choices(names, weights, k=args.warmup + args.requests)

    fresh = await probe.sample(0)
    print(show(fresh, "started"), file=sys.stderr, flush=True)

    warm = Tally()
    warm_seconds = 0.0
    if args.warmup:
        load = Load(proxy_url, args.concurrency)
        try:
            warm_seconds = await drive(load, plan[: args.warmup], 0, args.concurrency, args.seed, warm)
        finally:
            await load.close()
        print(f"warm-up: {warm.done} requests, {warm.unexpected_count} unexpected", file=sys.stderr)
    baseline = await settle(probe, warm.done, args.idle, 0.0, None)
    print(show(baseline, "baseline"), file=sys.stderr, flush=True)

    main = Tally()
    samples: list[Sample] = []
    sampling = asyncio.create_task(sampler(probe, main, args.sample_interval, samples))
    ticks_before = {name: cpu_ticks(pid) for name, pid in cpu_pids.items()}
    machine_before = machine_busy_ticks()
    load = Load(proxy_url, args.concurrency)
    try:
        seconds = await drive(load, plan[args.warmup :], args.warmup, args.concurrency, args.seed + 1, main)
    finally:
        await load.close()
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
    cpu = {name: (cpu_ticks(pid) - ticks_before[name]) / CLK_TCK for name, pid in cpu_pids.items()}
    machine = (machine_busy_ticks() - machine_before) / CLK_TCK
    after = await probe.sample(main.done)
    print(show(after, "after"), file=sys.stderr, flush=True)
    end = await settle(probe, main.done, args.idle, args.settle, baseline)
    print(show(end, "end"), file=sys.stderr, flush=True)

    # --- the report (stdout) ---
    if args.warmup:
        print_tally("warm-up", warm, warm_seconds)
    print_tally("soak", main, seconds)
    print(
        "  CPU over the soak (cores): "
        + ", ".join(f"{name} {value / seconds:.2f}" for name, value in cpu.items())
        + f", whole machine {machine / seconds:.2f} of {os.cpu_count()}; "
        f"proxy {cpu['proxy'] * 1000 / max(1, main.done):.2f} ms CPU per request"
    )
    during = samples or [after]
    peak = max(during, key=lambda s: s.rss_kb)
    growth = (end.rss_kb - baseline.rss_kb) * 100 / baseline.rss_kb
    print(f"\nproxy process (pid {probe.pid}):")
    print(
        f"  RSS      start {fresh.rss_kb / 1024:.1f} MB, baseline {baseline.rss_kb / 1024:.1f} MB, "
        f"peak {peak.rss_kb / 1024:.1f} MB, end {end.rss_kb / 1024:.1f} MB: growth {growth:+.1f} %"
    )
    max_fds = max(s.fds for s in during)
    max_threads = max(s.threads for s in during)
    print(
        f"  fds      baseline {baseline.fds} {baseline.fd_kinds}, max during the load {max_fds}, "
        f"end {end.fds} {end.fd_kinds}"
    )
    print(f"  threads  baseline {baseline.threads}, max during the load {max_threads}, end {end.threads}")
    print(
        f"  tasks    baseline {_tasks(baseline)}, max during the load {_max_tasks(during)}, end {_tasks(end)}"
        + ("" if baseline.tasks is not None else " (no task probe)")
    )
    unexpected = warm.unexpected + main.unexpected
    if unexpected:
        print(f"\nUNEXPECTED responses ({len(unexpected)}; first 50):")
        for line in unexpected[:50]:
            print(f"  {line}")
        if args.unexpected_log:
            write_lines(args.unexpected_log, unexpected)
            print(f"  all of them in {args.unexpected_log}")

    failures = []
    if growth >= args.max_rss_growth:
        failures.append(f"RSS grew {growth:.1f} % (limit {args.max_rss_growth:g} %)")
    if end.fds > baseline.fds:
        failures.append(f"fds {baseline.fds} -> {end.fds}")
    if end.tasks is not None and baseline.tasks is not None and end.tasks > baseline.tasks:
        failures.append(f"asyncio tasks {baseline.tasks} -> {end.tasks}")
    if unexpected:
        failures.append(f"{len(unexpected)} unexpected responses")
    print("\nRESULT: " + ("FAIL: " + "; ".join(failures) if failures else "PASS"))
    return 1 if failures else 0


CLK_TCK = os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    from bench_e2e import loadavg as _loadavg

    return _loadavg()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bench_e2e import code_version

    from tests.support.mock_process import start_mock_upstream
    from tests.support.server_process import start_server

    probe_dir = None if args.no_task_probe else Path(tempfile.mkdtemp(prefix="soak-probe-"))
    env = {"CCPROXY_UPSTREAM_BASE_URL": "", "CCPROXY_UPSTREAM_API_KEY": "soak-upstream-key"}
    if probe_dir is not None:
        (probe_dir / "sitecustomize.py").write_text(TASK_PROBE)
        env.update(SOAK_TASK_PROBE_DIR=str(probe_dir), PYTHONPATH=str(probe_dir))
    mock = start_mock_upstream()
    server = None
    try:
        env["CCPROXY_UPSTREAM_BASE_URL"] = mock.openai_base_url
        server = start_server(args.server, env=env, args=("--log-level", "warning"))
        pinned = ""
        if not args.no_pin and shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
            ok = all(pin(pid, 0) for pid in server.pids())
            ok = pin(mock.pid, 1) and pin(os.getpid(), 1) and ok
            pinned = "proxy on CPU 0, mock and load generator on CPU 1" if ok else "pinning FAILED"
        else:
            pinned = "not pinned"
        print(
            f"soak: {args.requests} requests (+{args.warmup} warm-up) at {args.concurrency} concurrent; "
            f"proxy `ccproxy-asgi serve --server {args.server} --log-level warning` pid {server.pid} "
            f"{server.base_url}; mock pid {mock.pid}; {pinned}; code {code_version()}; load {loadavg()}\n"
            f"mix (%): {', '.join(f'{k}={v * 100 / sum(args.mix.values()):.3g}' for k, v in args.mix.items() if v)}",
            flush=True,
        )
        if len(server.pids()) > 1:
            print(f"note: the proxy runs as {len(server.pids())} processes; only pid {server.pid} is sampled")
        probe = Probe(server.pid, probe_dir, server.port, mock.port)
        cpu_pids = {"proxy": server.pid, "mock": mock.pid, "loadgen": os.getpid()}
        if args.mix["sdk-json"] or args.mix["sdk-stream"]:
            import anthropic  # noqa: F401  (imported here: importing it takes seconds, not in the load)

        status = asyncio.run(run(args, probe, server.base_url, cpu_pids))
    finally:
        if server is not None:
            code = server.stop()
            summarize_log(server.stderr)
            if code != 0:
                print(f"proxy exit status {code} (stopped by {server.stopped_by})")
        mock.stop()
        if probe_dir is not None:
            shutil.rmtree(probe_dir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
