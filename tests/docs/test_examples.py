"""Every example runs against a real proxy and mock upstream."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.mock_process import MockUpstreamProcess, mock_upstream_fixture
from tests.support.stack import running_proxy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

mock_upstream = mock_upstream_fixture(scope="module")


def test_anthropic_sdk_client_example(mock_upstream: MockUpstreamProcess) -> None:
    with running_proxy(mock_upstream) as url:
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / "anthropic_sdk_client.py"), url],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    assert "non-stream: Mock reply to: Say hello in five words." in result.stdout
    assert "stream: stop_reason=end_turn" in result.stdout
    assert "count_tokens:" in result.stdout
