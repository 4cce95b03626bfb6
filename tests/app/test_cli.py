"""The `ccproxy-asgi` command, run as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import anthropic
import pytest

from tests.support.proxy_server import free_port

REPO = Path(__file__).resolve().parents[2]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCPROXY_") and not k.startswith("OPENAI_")}
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccproxy_asgi", *args],
        capture_output=True,
        text=True,
        env=env or cli_env(),
        timeout=timeout,
        cwd=REPO / "tests",  # no .env here
    )


@pytest.mark.parametrize("args", [(), ("serve",), ("config",), ("mock-upstream",)])
def test_help_everywhere(args: tuple[str, ...]) -> None:
    result = run_cli(*args, "--help")
    assert result.returncode == 0
    assert "usage:" in result.stdout


def test_no_command_is_a_usage_error() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_config_masks_secrets() -> None:
    env = cli_env(
        CCPROXY_UPSTREAM_API_KEY="sk-very-secret-upstream-key",
        CCPROXY_API_KEYS="client-secret-a,client-secret-b",
        CCPROXY_BIG_MODEL="gpt-5",
    )
    result = run_cli("config", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["CCPROXY_BIG_MODEL"] == "gpt-5"
    assert values["CCPROXY_UPSTREAM_API_KEY"] == "***"
    assert values["CCPROXY_API_KEYS"] == ["***", "***"]
    assert "secret" not in result.stdout + result.stderr


def test_invalid_configuration_stops_with_one_line() -> None:
    result = run_cli("config", env=cli_env(CCPROXY_RATE_LIMIT_RPM="many"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "CCPROXY_RATE_LIMIT_RPM" in lines[0]
    assert "Traceback" not in result.stderr


def test_invalid_json_setting_stops_with_one_line() -> None:
    result = run_cli("config", env=cli_env(CCPROXY_MODEL_MAP="{not json"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "model_map" in result.stderr.lower()


def test_serve_without_upstream_runs_the_mock_and_answers() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ccproxy_asgi", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=REPO / "tests",
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                    assert response.status == 200
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"serve did not answer: {process.communicate(timeout=5)}") from None
                time.sleep(0.1)
        client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="anything", max_retries=0)
        message = client.messages.create(
            model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "ping from the cli test"}]
        )
        assert message.content[0].type == "text"
        assert "ping from the cli test" in message.content[0].text  # the mock echoes the prompt
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
    assert process.returncode == 0, stderr
    assert "MOCK upstream" in stderr
    assert "CCPROXY_UPSTREAM_BASE_URL" in stderr
    assert "Traceback" not in stderr


def test_serve_reports_a_taken_port() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        env = cli_env(CCPROXY_UPSTREAM_BASE_URL="http://127.0.0.1:9/v1")
        result = run_cli("serve", "--port", str(port), env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [("config",), ("serve", "--port", "0")])
@pytest.mark.parametrize(
    ("variable", "value", "names"),
    [
        ("CCPROXY_UPSTREAM_BASE_URL", "https://user:pw-s3cr3t@example.com/v1", "CCPROXY_UPSTREAM_BASE_URL"),
        (
            "CCPROXY_FALLBACK_UPSTREAMS",
            '[{"name":"local","base_url":"http://admin:s3cr3t@127.0.0.1:8000/v1"}]',
            "CCPROXY_FALLBACK_UPSTREAMS",
        ),
    ],
)
def test_a_base_url_with_credentials_stops_start_up_without_printing_them(
    command: tuple[str, ...], variable: str, value: str, names: str
) -> None:
    env = cli_env(**{"CCPROXY_UPSTREAM_BASE_URL": "https://api.example.com/v1", variable: value})
    result = run_cli(*command, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert names in lines[0]
    assert "api_key" in lines[0].lower()
    assert "Traceback" not in result.stderr
    output = result.stdout + result.stderr
    assert "s3cr3t" not in output
    assert "user:pw" not in output
    assert "admin" not in output
