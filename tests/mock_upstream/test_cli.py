"""The mock upstream's command line: flags, environment defaults, signals."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from ccproxy_asgi.mock_upstream import register_cli
from ccproxy_asgi.mock_upstream.cli import config_from_namespace, serve
from ccproxy_asgi.mock_upstream.config import DefaultToolCall
from tests.support.mock_process import REPO_ROOT, MockUpstreamError, start_mock_upstream


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccproxy-asgi")
    register_cli(parser.add_subparsers(dest="command", required=True))
    return parser


def test_help_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ccproxy_asgi.mock_upstream", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    assert "--chunk-delay" in result.stdout
    assert "--rpm-limit" in result.stdout


def test_sigint_stops_quickly_without_traceback() -> None:
    mock = start_mock_upstream()
    mock.process.send_signal(signal.SIGINT)
    started = time.monotonic()
    assert mock.process.wait(timeout=5) == 0
    assert time.monotonic() - started < 3
    mock.stop()
    assert "Traceback" not in mock.output()


def test_invalid_fault_flag_fails_to_start() -> None:
    with pytest.raises(MockUpstreamError, match="unknown fault kind"):
        start_mock_upstream("--fault", "explode")


def test_register_cli_builds_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCPROXY_MOCK_CHUNKS", "7")
    monkeypatch.setenv("CCPROXY_MOCK_TOOL_CALL", 'a={"x":1}\nb')
    namespace = _parser().parse_args(
        [
            "mock-upstream",
            "--port",
            "0",
            "--latency",
            "0.5",
            "--models",
            "m1, m2",
            "--fault",
            "cut:after_chunks=1",
            "--reasoning",
            "reasoning",
            "--stop-reason",
            "--tpm-limit",
            "100",
        ]
    )
    assert namespace.handler is serve
    config = config_from_namespace(namespace)
    assert config.chunks == 7
    assert config.default_tool_calls == (DefaultToolCall("a", {"x": 1}), DefaultToolCall("b"))
    assert config.latency == 0.5
    assert config.models == ("m1", "m2")
    assert config.fault == "cut:after_chunks=1"
    assert config.reasoning == "reasoning"
    assert config.echo_stop_reason is True
    assert config.tpm_limit == 100


def test_bad_flag_values_are_argparse_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["mock-upstream", "--reasoning", "loud"])
    monkeypatch.setenv("CCPROXY_MOCK_LATENCY", "-1")
    with pytest.raises(SystemExit):
        _parser().parse_args(["mock-upstream"])


def test_exits_when_its_parent_dies() -> None:
    # A harness killed with SIGKILL cannot stop its mock; --parent-pid makes the mock notice and leave.
    script = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-m', 'ccproxy_asgi.mock_upstream', '--port', '0',"
        " '--parent-pid', str(__import__('os').getpid())], stdout=subprocess.PIPE, text=True)\n"
        "print(p.stdout.readline().rsplit(':', 1)[1].strip(), flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=_env_with_repo()
    )
    assert parent.stdout is not None
    port = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.1)
    pytest.fail("the orphaned mock upstream kept serving")


def _env_with_repo() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
