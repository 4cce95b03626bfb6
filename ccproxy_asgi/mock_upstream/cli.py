"""Command line of the mock upstream: `ccproxy-asgi mock-upstream` and `python -m ccproxy_asgi.mock_upstream`.

Every flag also reads a default from the environment, `CCPROXY_MOCK_<FLAG>` (dashes as underscores, e.g.
`CCPROXY_MOCK_CHUNK_DELAY=0.05`); flags given on the command line win. `CCPROXY_MOCK_TOOL_CALL` may hold
several specs, one per line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ccproxy_asgi.mock_upstream.config import (
    DEFAULT_MODELS,
    ERROR_SHAPES,
    REASONING_MODES,
    DefaultToolCall,
    MockConfig,
)
from ccproxy_asgi.mock_upstream.faults import parse_fault
from ccproxy_asgi.mock_upstream.server import create_mock_app
from ccproxy_asgi.tokens.encoding import encoding_for_model

LISTENING_PREFIX = "mock-upstream listening on "
_ENV_PREFIX = "CCPROXY_MOCK_"
_DESCRIPTION = "A real OpenAI-compatible server with scriptable replies, latency, tool calls and faults."
_TRUE = frozenset({"1", "true", "yes", "on"})


def _env(dest: str) -> str | None:
    return os.environ.get(_ENV_PREFIX + dest.upper())


def _add(
    parser: argparse.ArgumentParser, flag: str, kind: Callable[[str], Any], default: Any, help: str
) -> None:
    dest = flag.lstrip("-").replace("-", "_")
    raw = _env(dest)
    # argparse runs a string default through `type`, so a bad environment value is reported like a bad flag.
    parser.add_argument(flag, type=kind, default=raw if raw is not None else default, help=help)


def _switch(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    dest = flag.lstrip("-").replace("-", "_")
    default = (_env(dest) or "").lower() in _TRUE
    parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help)


def _non_negative(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{raw} is negative")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise argparse.ArgumentTypeError(f"{raw!r} is not one of {', '.join(options)}")
        return raw

    parse.__name__ = "choice"
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every mock-upstream flag to `parser`."""
    _add(parser, "--host", str, "127.0.0.1", "interface to bind (default 127.0.0.1)")
    _add(parser, "--port", int, 8083, "port to bind; 0 picks a free one (default 8083)")
    _add(parser, "--latency", _non_negative, 0.0, "seconds before the first byte of every response")
    _add(parser, "--chunk-delay", _non_negative, 0.0, "seconds between stream chunks (0: one write)")
    _add(parser, "--chunks", int, 5, "content chunks per streamed reply (default 5)")
    _add(parser, "--tool-arg-chunks", int, 3, "chunks the arguments of each tool call are split into")
    _add(parser, "--reply-words", int, 12, "pad plain replies to this many words (default 12)")
    _add(parser, "--fault", str, None, "fault for every chat request, e.g. 429:retry_after=2 or cut")
    _add(parser, "--fault-rate", _non_negative, 1.0, "fraction of chat requests given --fault (default 1)")
    _add(parser, "--seed", int, None, "seed for --fault-rate draws")
    _add(
        parser,
        "--reasoning",
        _choice(REASONING_MODES),
        "none",
        "reasoning field in replies: none, reasoning_content (DeepSeek) or reasoning (vLLM/OpenRouter)",
    )
    tool_calls = [s for s in (_env("tool_call") or "").splitlines() if s.strip()]
    parser.add_argument(
        "--tool-call",
        action="append",
        default=tool_calls,
        metavar="NAME[={json}]",
        help="tool call made whenever tool NAME is offered (repeatable)",
    )
    _add(parser, "--tool-preamble", str, None, "text content emitted before every tool call")
    _add(parser, "--cached-tokens", int, None, "report this many cached prompt tokens (capped at the prompt)")
    _switch(parser, "--stop-reason", "echo vLLM's choices[].stop_reason (the matched stop string)")
    _add(parser, "--models", str, ",".join(DEFAULT_MODELS), "comma-separated model ids for /v1/models")
    _switch(parser, "--strict-models", "404 model_not_found for chat requests naming an unlisted model")
    _add(parser, "--api-key", str, None, "require 'Authorization: Bearer KEY' (401 otherwise)")
    _add(parser, "--rpm-limit", int, 0, "simulated requests-per-window limit (0: none)")
    _add(parser, "--tpm-limit", int, 0, "simulated tokens-per-window limit (0: none)")
    _add(parser, "--limit-window", _non_negative, 60.0, "sliding window of the simulated limits, seconds")
    _add(
        parser,
        "--error-shape",
        _choice(ERROR_SHAPES),
        "openai",
        "error body: openai envelope or vllm top-level",
    )
    _add(parser, "--record-limit", int, 1000, "chat requests kept for GET /mock/requests (0: none)")
    _switch(parser, "--access-log", "log every request to stderr")
    _add(parser, "--parent-pid", int, None, "exit when the process with this id is gone (for test harnesses)")
    _add(parser, "--shutdown-timeout", _non_negative, 1.0, "seconds granted to open requests on shutdown")


def config_from_namespace(namespace: argparse.Namespace) -> MockConfig:
    """Build the `MockConfig` the parsed flags describe; raises ValueError on an invalid value."""
    if namespace.fault:
        parse_fault(namespace.fault)
    return MockConfig(
        models=tuple(m.strip() for m in namespace.models.split(",") if m.strip()),
        strict_models=namespace.strict_models,
        api_key=namespace.api_key,
        reply_words=namespace.reply_words,
        chunks=namespace.chunks,
        tool_arg_chunks=namespace.tool_arg_chunks,
        reasoning=namespace.reasoning,
        default_tool_calls=tuple(DefaultToolCall.parse(spec) for spec in namespace.tool_call),
        tool_preamble=namespace.tool_preamble,
        cached_tokens=namespace.cached_tokens,
        echo_stop_reason=namespace.stop_reason,
        latency=namespace.latency,
        chunk_delay=namespace.chunk_delay,
        fault=namespace.fault,
        fault_rate=namespace.fault_rate,
        seed=namespace.seed,
        error_shape=namespace.error_shape,
        rpm_limit=namespace.rpm_limit,
        tpm_limit=namespace.tpm_limit,
        limit_window=namespace.limit_window,
        record_limit=namespace.record_limit,
    )


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    return sock


async def _watch_parent(pid: int, stop: asyncio.Event) -> None:
    was_parent = os.getppid() == pid
    while not stop.is_set():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            pass  # alive, owned by someone else
        if was_parent and os.getppid() != pid:
            break
        await asyncio.sleep(0.5)
    stop.set()


async def _serve(namespace: argparse.Namespace, config: MockConfig) -> None:
    # Load the tokenizer before announcing the port, so the first request is not the slow one.
    encoding_for_model("gpt-4o")
    encoding_for_model("gpt-4")
    runner = web.AppRunner(
        create_mock_app(config),
        handler_cancellation=True,
        access_log=logging.getLogger("aiohttp.access") if namespace.access_log else None,
        shutdown_timeout=namespace.shutdown_timeout,
    )
    await runner.setup()
    sock = _bind(namespace.host, namespace.port)
    try:
        await web.SockSite(runner, sock, backlog=1024).start()
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"{LISTENING_PREFIX}http://{shown}:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        watcher = (
            asyncio.create_task(_watch_parent(namespace.parent_pid, stop)) if namespace.parent_pid else None
        )
        await stop.wait()
        if watcher is not None:
            watcher.cancel()
    finally:
        await runner.cleanup()
        sock.close()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def serve(namespace: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM (or the watched parent exits); 0 on a clean stop, 2 on bad flags."""
    try:
        config = config_from_namespace(namespace)
    except ValueError as exc:
        print(f"mock-upstream: {exc}", file=sys.stderr)
        return 2
    if namespace.access_log:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(namespace, config))
    return 0


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `mock-upstream` subcommand to an argparse subparsers object (handler in `handler`)."""
    parser = subparsers.add_parser(
        "mock-upstream",
        help="run a scriptable OpenAI-compatible upstream for tests and benchmarks",
        description=_DESCRIPTION,
    )
    add_arguments(parser)
    parser.set_defaults(handler=serve)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m ccproxy_asgi.mock_upstream`."""
    parser = argparse.ArgumentParser(
        prog="python -m ccproxy_asgi.mock_upstream",
        description=_DESCRIPTION,
    )
    add_arguments(parser)
    return serve(parser.parse_args(argv))


__all__ = ["LISTENING_PREFIX", "add_arguments", "config_from_namespace", "main", "register_cli", "serve"]
