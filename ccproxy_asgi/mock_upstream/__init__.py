"""A real OpenAI-compatible upstream for tests and benchmarks, scriptable per request.

It answers `POST /v1/chat/completions` (streamed or not) with deterministic replies (see `reply`), tool
calls on prompt directives (see `directives`), configurable latency, simulated account limits and
injected faults (see `faults`), and records what it received (`GET /mock/requests`).
"""

from ccproxy_asgi.mock_upstream.cli import LISTENING_PREFIX, register_cli
from ccproxy_asgi.mock_upstream.config import DefaultToolCall, MockConfig
from ccproxy_asgi.mock_upstream.faults import Fault, FaultSpecError, parse_fault
from ccproxy_asgi.mock_upstream.reply import Reply, ToolCall, default_reply_text, plan_reply, schema_arguments
from ccproxy_asgi.mock_upstream.server import MOCK_UPSTREAM, MockUpstream, create_mock_app

__all__ = [
    "LISTENING_PREFIX",
    "MOCK_UPSTREAM",
    "DefaultToolCall",
    "Fault",
    "FaultSpecError",
    "MockConfig",
    "MockUpstream",
    "Reply",
    "ToolCall",
    "create_mock_app",
    "default_reply_text",
    "parse_fault",
    "plan_reply",
    "register_cli",
    "schema_arguments",
]
