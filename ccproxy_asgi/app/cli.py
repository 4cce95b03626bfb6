"""The `ccproxy-asgi` command: `serve`, `mock-upstream`, `config`.

Exit codes: 0 success (including Ctrl-C), 1 a runtime failure (e.g. the port is taken), 2 bad usage or
invalid configuration (one line per problem, naming the variable).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError

from ccproxy_asgi._version import __version__
from ccproxy_asgi.app.settings import Settings, describe_validation_error, env_name

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
SERVERS = ("uvicorn", "hypercorn", "granian")
APP_TARGET = "ccproxy_asgi.asgi:app"
_LISTENING = re.compile(r"listening on (http://\S+)")


class ConfigurationError(Exception):
    """Invalid settings, already described in one line per problem."""


def load_settings_or_fail() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc)) from None
    except SettingsError as exc:
        # pydantic-settings raises this when a JSON-valued variable (CCPROXY_MODEL_MAP) is not JSON.
        cause = exc.__cause__
        raise ConfigurationError(f"invalid configuration: {exc}{f' ({cause})' if cause else ''}") from None


def masked_config(settings: Settings) -> dict[str, Any]:
    """Every setting by its variable name, secrets masked."""
    out: dict[str, Any] = {}
    for field in Settings.model_fields:
        value = getattr(settings, field)
        if isinstance(value, SecretStr):
            value = "***" if value.get_secret_value() else ""
        elif isinstance(value, list) and value and isinstance(value[0], SecretStr):
            value = ["***"] * len(value)
        out[env_name(field)] = value
    return out


@contextlib.contextmanager
def mock_upstream_process() -> Iterator[str]:
    """Start the built-in mock upstream on a free port; yield its OpenAI base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ccproxy_asgi.mock_upstream", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = _LISTENING.search(line)
        if match is None:
            raise RuntimeError(f"the mock upstream did not start: {line.strip() or 'no output'}")
        yield match.group(1) + "/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _uvicorn_http(settings: Settings) -> type[asyncio.Protocol] | str:
    """uvicorn's HTTP protocol: httptools with the limits uvicorn lacks, or h11 without httptools."""
    try:
        from ccproxy_asgi.app.uvicorn_protocol import HeadLimits, LimitedHttpToolsProtocol, configure
    except ImportError:  # no httptools: h11 bounds the head's size (below), not the time it takes
        print(
            "WARNING: httptools is not installed: uvicorn runs h11, which does not bound the time a request "
            "head may take (CCPROXY_SERVER_HEADER_TIMEOUT_SECONDS). Install ccproxy-asgi[server].",
            file=sys.stderr,
        )
        return "h11"
    configure(
        HeadLimits(
            keepalive_timeout=settings.server_keepalive_timeout_seconds,
            header_timeout=settings.server_header_timeout_seconds,
            max_header_bytes=settings.server_max_header_bytes,
        )
    )
    return LimitedHttpToolsProtocol


def _one_timer_seconds(settings: Settings) -> float:
    """hypercorn and granian run one timer from the moment a connection is idle (opened, or its response
    sent) until a request head is complete: the smaller setting bounds both the idle wait and the head."""
    return min(settings.server_keepalive_timeout_seconds, settings.server_header_timeout_seconds)


def _run_server(server: str, host: str, port: int, workers: int, settings: Settings) -> None:
    log_level = settings.log_level
    if server == "uvicorn":
        import signal

        import uvicorn

        # uvicorn re-raises the signal it shut down on once it has drained; SIGTERM's default action
        # would then kill the process (exit -15). As a KeyboardInterrupt, like SIGINT, it exits 0.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        uvicorn.run(
            APP_TARGET,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            loop="auto",
            http=_uvicorn_http(settings),
            # Whole seconds here; the httptools protocol above applies the exact value.
            timeout_keep_alive=max(1, math.ceil(settings.server_keepalive_timeout_seconds)),
            h11_max_incomplete_event_size=settings.server_max_header_bytes,
            lifespan="on",
            access_log=False,
            log_config=None,
        )
    elif server == "hypercorn":
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        if workers > 1:
            raise ConfigurationError(
                "--workers > 1 with hypercorn: run `hypercorn -w N ccproxy_asgi.asgi:app`"
            )
        import logging

        config = Config()
        config.bind = [f"{host}:{port}"]
        config.loglevel = log_level.upper()
        config.keep_alive_timeout = _one_timer_seconds(settings)
        config.h11_max_incomplete_size = settings.server_max_header_bytes
        config.h2_max_header_list_size = settings.server_max_header_bytes
        # `read_timeout` stays off: it counts silence from the client during a response too, and a client
        # sends nothing while a stream runs for minutes.
        # A Logger (not the default "-") makes hypercorn add no handler of its own: its lines go once,
        # through the root handler `configure_logging` set up, instead of twice (once unformatted).
        config.errorlog = logging.getLogger("hypercorn.error")
        from ccproxy_asgi.asgi import app

        def _exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            # Python < 3.12: asyncio's stream callback calls `task.exception()` on a cancelled task, so
            # each connection hypercorn cancels after `graceful_timeout` logs a CancelledError traceback.
            if not isinstance(context.get("exception"), asyncio.CancelledError):
                loop.default_exception_handler(context)

        async def _serve() -> None:
            asyncio.get_running_loop().set_exception_handler(_exception_handler)
            await serve(app, config)  # type: ignore[arg-type]

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve())
    else:
        from granian import Granian
        from granian.constants import HTTPModes, Interfaces
        from granian.http import HTTP1Settings
        from granian.log import LogLevels

        # Granian's own lines go to the root handler `configure_logging` set up (stderr, the configured
        # format), not to granian's default handlers on stdout; forked workers inherit that handler.
        to_root = {"handlers": [], "propagate": True}
        Granian(
            APP_TARGET,
            address=host,
            port=port,
            interface=Interfaces.ASGI,
            # HTTP/1 only: in its auto mode granian first waits, with no timeout, to see whether the client
            # speaks HTTP/2, so a connection that sends nothing is held forever. Clients speak HTTP/1.1
            # to the proxy; terminate HTTP/2 at a reverse proxy in front if needed.
            http=HTTPModes.http1,
            http1_settings=HTTP1Settings(
                header_read_timeout=max(1, round(_one_timer_seconds(settings) * 1000)),
                # hyper answers 431 when the head outgrows its read buffer (8192 at the least).
                max_buffer_size=settings.server_max_header_bytes,
            ),
            workers=workers,
            log_level=LogLevels(log_level),
            log_dictconfig={"loggers": {"_granian": dict(to_root), "granian.access": dict(to_root)}},
        ).serve()


def cmd_serve(args: argparse.Namespace) -> int:
    from ccproxy_asgi.logs import configure_logging

    # Flags win over the environment; the server's workers read the environment, so flags go there.
    if args.log_level:
        os.environ["CCPROXY_LOG_LEVEL"] = args.log_level
    if args.log_format:
        os.environ["CCPROXY_LOG_FORMAT"] = args.log_format
    settings = load_settings_or_fail()
    configure_logging(settings.log_level, settings.log_format)
    if (
        args.workers > 1
        and settings.state_backend == "memory"
        and (settings.rate_limit_rpm or settings.rate_limit_tpm)
    ):
        print(
            f"WARNING: {args.workers} workers with the memory state backend: rate limits apply per process "
            f"({args.workers}x the budget in total). Set CCPROXY_STATE_BACKEND=redis to share them.",
            file=sys.stderr,
        )
    with contextlib.ExitStack() as stack:
        if settings.uses_mock_upstream:
            url = stack.enter_context(mock_upstream_process())
            os.environ["CCPROXY_UPSTREAM_BASE_URL"] = url
            os.environ.setdefault("CCPROXY_UPSTREAM_API_KEY", "mock-key")
            print(
                "=" * 72 + "\n"
                f"No upstream configured: serving the built-in MOCK upstream at {url}.\n"
                "Replies are canned. To use a real model, set CCPROXY_UPSTREAM_BASE_URL (or OPENAI_BASE_URL)\n"
                "and CCPROXY_UPSTREAM_API_KEY (or OPENAI_API_KEY), e.g.\n"
                "  CCPROXY_UPSTREAM_BASE_URL=https://api.openai.com/v1 CCPROXY_UPSTREAM_API_KEY=sk-... \\\n"
                "  ccproxy-asgi serve\n" + "=" * 72,
                file=sys.stderr,
                flush=True,
            )
        print(
            f"ccproxy-asgi {__version__} on http://{args.host}:{args.port} ({args.server}, "
            f"{args.workers} worker{'s' if args.workers != 1 else ''}); "
            f"point clients at it with ANTHROPIC_BASE_URL=http://{args.host}:{args.port}",
            file=sys.stderr,
            flush=True,
        )
        try:
            _run_server(args.server, args.host, args.port, args.workers, settings)
        except KeyboardInterrupt:
            pass
        except OSError as exc:
            print(
                f"error: could not serve on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr
            )
            return EXIT_FAILURE
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    from ccproxy_asgi import jsonutil

    if args.format == "markdown":
        from ccproxy_asgi.app.settings_reference import render_reference

        print(render_reference(), end="")
        return EXIT_OK
    settings = load_settings_or_fail()
    values = masked_config(settings)
    if args.format == "json":
        print(jsonutil.dumps(values).decode())
    else:
        for name, value in values.items():
            shown = (
                ""
                if value is None
                else (jsonutil.dumps(value).decode() if isinstance(value, (dict, list)) else value)
            )
            print(f"{name}={shown}")
    if settings.uses_mock_upstream:
        print("# no upstream configured: `serve` will start the built-in mock upstream", file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from ccproxy_asgi.mock_upstream.cli import register_cli as register_mock_upstream

    parser = argparse.ArgumentParser(
        prog="ccproxy-asgi",
        description="Anthropic Messages API proxy for OpenAI-compatible upstreams, as composable ASGI layers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    serve = sub.add_parser(
        "serve",
        help="serve the proxy",
        description="Serve the proxy. With no upstream "
        "configured, the built-in mock upstream is started and used.",
    )
    serve.add_argument(
        "--host", default=os.environ.get("CCPROXY_HOST", "127.0.0.1"), help="bind address (default 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, default=int(os.environ.get("CCPROXY_PORT", "8082")), help="port (default 8082)"
    )
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--server", choices=SERVERS, default="uvicorn", help="ASGI server (default uvicorn)")
    serve.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error", "critical"], help="log level"
    )
    serve.add_argument("--log-format", choices=["text", "json"], help="log line format")
    serve.set_defaults(handler=cmd_serve)

    config = sub.add_parser("config", help="print the effective configuration (secrets masked)")
    config.add_argument(
        "--format",
        choices=["env", "json", "markdown"],
        default="env",
        help="env or json: the effective values; markdown: the reference of every setting (default env)",
    )
    config.set_defaults(handler=cmd_config)

    register_mock_upstream(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigurationError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    return code


__all__ = ["main"]
