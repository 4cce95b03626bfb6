"""The application examples, each run for real: examples/fastapi_app.py and examples/starlette_app.py under
uvicorn on a real socket in front of the mock upstream process, driven with the `anthropic` SDK;
examples/multiprocess_redis/run.sh as real worker processes sharing a private redis-server; and
examples/grafana/ccproxy-dashboard.json checked against the `/metrics` text a real proxy serves.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import anthropic
import httpx
import pytest
import redis

from ccproxy_asgi.app import create_app
from ccproxy_asgi.ratelimit import Budget
from tests.support.mock_process import REPO_ROOT, MockUpstreamProcess, mock_upstream_fixture
from tests.support.proxy_server import free_port, serve_app
from tests.support.redis_server import RedisServer, redis_server_fixture
from tests.support.stack import proxy_settings

EXAMPLES = REPO_ROOT / "examples"

mock = mock_upstream_fixture(scope="module")
redis_server = redis_server_fixture(scope="module")

HELLO: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 32,
    "messages": [{"role": "user", "content": "hello"}],
}


def load_example(name: str) -> ModuleType:
    """Import examples/<name>.py as a module (registered, so FastAPI can resolve its annotations)."""
    module_name = f"ccproxy_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def upstream(mock: MockUpstreamProcess) -> Iterator[MockUpstreamProcess]:
    mock.reset()
    yield mock
    mock.clear_faults()


def sdk(base_url: str, key: str = "client-key") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=20)


def envelope(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert body["type"] == "error", body
    assert body["request_id"] == response.headers["request-id"], (body, response.headers)
    return body


# ----- examples/fastapi_app.py ---------------------------------------------------------------------------


@pytest.fixture
def platform(upstream: MockUpstreamProcess) -> Iterator[str]:
    """The platform app: proxy under /anthropic, assistant with a 3-requests budget per key, batch."""
    example = load_example("fastapi_app")
    settings = proxy_settings(
        upstream, breaker_enabled=True, breaker_failure_threshold=2, retry_max_attempts=1
    )
    app = example.create_platform_app(settings, assistant_budget=Budget(requests=3, window=60.0))
    with serve_app(app) as url:
        yield url


def test_fastapi_mounted_proxy_serves_the_sdk_under_its_prefix(
    upstream: MockUpstreamProcess, platform: str
) -> None:
    client = sdk(platform + "/anthropic")
    message = client.messages.create(**HELLO)
    assert message.content[0].type == "text"
    assert "hello" in message.content[0].text
    assert message._request_id
    assert message._request_id.startswith("req_")
    with client.messages.stream(**HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "hello" in text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    assert client.messages.count_tokens(model=HELLO["model"], messages=HELLO["messages"]).input_tokens > 0
    assert [body["body"]["model"] for body in upstream.requests()] == ["gpt-4o", "gpt-4o"]
    # Claude Code pre-connects with HEAD on its base URL; the lifespan opened the upstream client.
    assert httpx.head(platform + "/anthropic/").status_code == 200
    # The proxy's own metrics and probes, below the mount point too.
    metrics = httpx.get(platform + "/anthropic/metrics")
    assert metrics.status_code == 200
    assert (
        'http_server_request_duration_seconds_count{http_request_method="POST",http_route="/v1/messages"'
        in (metrics.text)
    )
    assert httpx.get(platform + "/anthropic/health/ready").json()["status"] == "ready"


def test_fastapi_own_routes_have_no_layer(platform: str) -> None:
    assert httpx.get(platform + "/healthz").json() == {"status": "ok"}
    assert httpx.get(platform + "/teams/7").json() == {"id": 7, "name": "team-7"}
    plain = httpx.get(platform + "/teams/seven")
    assert plain.status_code == 422
    assert "detail" in plain.json()
    assert "request-id" not in plain.headers


def test_fastapi_error_layer_turns_the_assistants_own_errors_into_envelopes(
    upstream: MockUpstreamProcess, platform: str
) -> None:
    client = sdk(platform + "/assistant", key="validation-key")
    with pytest.raises(anthropic.BadRequestError) as bad:  # FastAPI's 422 -> 400
        client.messages.create(model="claude-sonnet-4-6", max_tokens=32, messages=[])
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "messages" in bad.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as too_many:
        client.messages.create(model="claude-sonnet-4-6", max_tokens=100_000, messages=HELLO["messages"])
    assert "max_tokens" in too_many.value.body["error"]["message"]  # type: ignore[index]

    missing = httpx.get(platform + "/assistant/v1/nothing-here")
    assert missing.status_code == 404
    assert envelope(missing)["error"]["type"] == "not_found_error"
    wrong_method = httpx.get(platform + "/assistant/v1/messages")
    assert wrong_method.status_code == 405
    assert envelope(wrong_method)["error"]["type"] == "invalid_request_error"
    assert upstream.requests() == []

    # Refused requests gave their reservation back: the whole budget of 3 is still there.
    for _ in range(3):
        assert client.messages.create(**HELLO).content


def test_fastapi_assistant_limiter_answers_429_when_its_budget_is_spent(
    upstream: MockUpstreamProcess, platform: str
) -> None:
    example = load_example("fastapi_app")
    client = sdk(platform + "/assistant", key="limited-key")
    for _ in range(3):
        message = client.messages.create(**HELLO)
        assert message.usage.input_tokens > 0
    sent = upstream.requests()
    assert len(sent) == 3
    assert sent[0]["body"]["messages"][0] == {"role": "system", "content": example.TEAM_SYSTEM_PROMPT}

    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(**HELLO)
    response = limited.value.response
    assert float(response.headers["retry-after"]) > 1
    assert response.headers["anthropic-ratelimit-requests-limit"] == "3"
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert limited.value.body["error"]["message"].startswith("rate limited: the budget")  # type: ignore[index]
    assert len(upstream.requests()) == 3  # refused before the model was called

    # The budget is per client key, and the mounted proxy has its own (none here).
    assert sdk(platform + "/assistant", key="another-key").messages.create(**HELLO).content
    assert sdk(platform + "/anthropic", key="limited-key").messages.create(**HELLO).content


def test_fastapi_batch_breaker_opens_on_its_own(upstream: MockUpstreamProcess, platform: str) -> None:
    batch = sdk(platform + "/batch")
    assert batch.messages.create(**HELLO).content
    for index in range(2):  # two distinct requests the upstream answers 503 (overloaded): 529 here
        failing = {**HELLO, "messages": [{"role": "user", "content": f"[[fault:503]] hello {index}"}]}
        with pytest.raises(anthropic.APIStatusError) as overloaded:
            batch.messages.create(**failing)
        assert overloaded.value.status_code == 529
    called = len(upstream.requests())
    with pytest.raises(anthropic.APIStatusError) as opened:
        batch.messages.create(**HELLO)
    assert opened.value.status_code == 529
    assert opened.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert float(opened.value.response.headers["retry-after"]) > 0
    assert len(upstream.requests()) == called  # the upstream was not called
    # The proxy under /anthropic has a breaker of its own, still closed.
    assert sdk(platform + "/anthropic").messages.create(**HELLO).content


# ----- examples/starlette_app.py -------------------------------------------------------------------------


@pytest.fixture
def starlette_url(upstream: MockUpstreamProcess) -> Iterator[str]:
    example = load_example("starlette_app")
    settings = proxy_settings(
        upstream,
        api_keys=["team-key"],
        breaker_enabled=True,
        rate_limit_rpm=4,
        rate_limit_max_wait_seconds=0,
    )
    with serve_app(example.create_starlette_app(settings)) as url:
        yield url


def test_starlette_routes_serve_the_sdk_with_per_route_layers(
    upstream: MockUpstreamProcess, starlette_url: str
) -> None:
    client = sdk(starlette_url, key="team-key")
    message = client.messages.create(**HELLO)
    assert "hello" in message.content[0].text
    with client.messages.stream(**HELLO) as stream:
        assert "hello" in "".join(stream.text_stream)
    assert client.messages.count_tokens(model=HELLO["model"], messages=HELLO["messages"]).input_tokens > 0
    assert client.models.retrieve("claude-sonnet-4-6").id == "claude-sonnet-4-6"
    assert client.models.list().data

    # Auth is on the API routes, not on the pre-connect.
    with pytest.raises(anthropic.AuthenticationError):
        sdk(starlette_url, key="wrong").messages.create(**HELLO)
    with pytest.raises(anthropic.AuthenticationError):
        sdk(starlette_url, key="wrong").messages.count_tokens(
            model=HELLO["model"], messages=HELLO["messages"]
        )
    assert httpx.head(starlette_url + "/").status_code == 200

    # The app-wide error and correlation layers cover Starlette's own answers too.
    missing = httpx.get(starlette_url + "/v2/unknown")
    assert missing.status_code == 404
    assert envelope(missing)["error"]["type"] == "not_found_error"
    wrong_method = httpx.get(starlette_url + "/v1/messages")
    assert wrong_method.status_code == 405
    assert envelope(wrong_method)["error"]["type"] == "invalid_request_error"

    # The limiter sits on POST /v1/messages only: 4 requests per window, no waiting.
    client.messages.create(**HELLO)
    client.messages.create(**HELLO)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(**HELLO)
    assert client.messages.count_tokens(model=HELLO["model"], messages=HELLO["messages"]).input_tokens > 0
    assert len(upstream.requests()) == 4

    metrics = httpx.get(starlette_url + "/ops/metrics")
    assert metrics.status_code == 200
    assert 'ccproxy_ratelimit_rejections_total{ccproxy_ratelimit_reason="rate_limited"} 1' in metrics.text
    assert re.search(r'ccproxy_breaker_state\{[^}]*ccproxy_breaker_state="closed"\} 1', metrics.text)
    ready = httpx.get(starlette_url + "/ops/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


# ----- examples/multiprocess_redis/ ----------------------------------------------------------------------


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def run_sh(env: dict[str, str], tmp_path: Path) -> Iterator[Served]:
    """examples/multiprocess_redis/run.sh in its own process group, stopped with SIGTERM afterwards."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CCPROXY_", "OPENAI_"))}
    full_env.update(
        env, PORT=str(port), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    log = tmp_path / "run.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(EXAMPLES / "multiprocess_redis" / "run.sh")],
            env=full_env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served = Served(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(served.url + "/", timeout=1):
                    break
            except OSError:
                assert process.poll() is None, served.output()
                assert time.monotonic() < deadline, "run.sh did not start serving in 30 s"
                time.sleep(0.05)
        yield served
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_multiprocess_redis_workers_share_one_budget(
    upstream: MockUpstreamProcess, redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = redis_server.unique_prefix()
    env = {
        "WORKERS": "3",
        "CCPROXY_REDIS_URL": redis_server.url,
        "CCPROXY_UPSTREAM_BASE_URL": upstream.openai_base_url,
        "CCPROXY_UPSTREAM_API_KEY": "sk-test-upstream-0123456789abcdef",
        "CCPROXY_RATE_LIMIT_RPM": "5",
        "CCPROXY_RATE_LIMIT_MAX_WAIT_SECONDS": "0",
        "CCPROXY_RATE_LIMIT_REDIS_PREFIX": prefix,
        "CCPROXY_LOG_LEVEL": "warning",
    }
    with run_sh(env, tmp_path) as served:
        assert sdk(served.url).messages.create(**HELLO).content  # smoke: one request through
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / "multiprocess_redis" / "check_budget.py"), served.url, "12"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        # Fresh connections are spread over the workers; together they admit the 4 left of 5.
        assert result.stdout.strip() == 'statuses: {"200": 4, "429": 8}', result.stdout
        client = redis.Redis.from_url(redis_server.url)
        try:
            assert client.keys(f"*{prefix}*"), "no rate-limit state in redis"
            assert client.keys("ccproxy:breaker:*"), "no breaker state in redis"
        finally:
            client.close()
    assert served.process.returncode == 0, served.output()
    assert "(uvicorn, 3 workers)" in served.output()
    assert len(upstream.requests()) == 5


# ----- examples/grafana/ccproxy-dashboard.json ------------------------------------------------------------

DASHBOARD = EXAMPLES / "grafana" / "ccproxy-dashboard.json"
_PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
)
_CLAUSE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"')
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression refers to."""
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)  # Grafana variables
    labels: set[str] = set()
    for selector in re.findall(r"\{([^}]*)\}", expr):
        labels.update(_MATCHER.findall(selector))
    for _, names in _CLAUSE.findall(expr):
        labels.update(name.strip() for name in names.split(",") if name.strip())
    stripped = _CLAUSE.sub(" ", expr)
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', " ", stripped)
    stripped = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", stripped)
    metrics = set()
    for match in _IDENT.finditer(stripped):
        word = match.group(0)
        rest = stripped[match.end() :].lstrip()
        if word in _PROMQL_WORDS or rest.startswith("(") or word.lower() in ("inf", "nan"):
            continue
        metrics.add(word)
    return metrics, labels


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(panel title, expression, legend format) of every query, template variables included."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries: list[tuple[str, str, str]] = []
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            queries.append((panel["title"], target["expr"], target.get("legendFormat", "")))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["query"]["query"])
            assert match, variable
            queries.append((f"${variable['name']}", match.group(1), ""))
    return queries


def test_promql_names_reads_metrics_and_labels() -> None:
    metrics, labels = promql_names(
        'max by (k) (2 * m_state{job=~"$job", s="open"} or m_state{s="half_open"}) / '
        "sum(rate(a_total[$__rate_interval])) + histogram_quantile(0.5, sum by (le) (rate(b_bucket[5m])))"
    )
    assert metrics == {"m_state", "a_total", "b_bucket"}
    assert labels == {"k", "job", "s", "le"}


def test_grafana_dashboard_uses_only_metrics_the_proxy_exposes(upstream: MockUpstreamProcess) -> None:
    queries = dashboard_queries()
    settings = proxy_settings(
        upstream,
        breaker_enabled=True,
        breaker_failure_threshold=2,
        breaker_recovery_seconds=30,
        retry_max_attempts=2,
        rate_limit_rpm=1000,
        adaptive_timeout_enabled=True,
        adaptive_timeout_min_samples=1,
    )
    with serve_app(create_app(settings)) as url:
        client = sdk(url)
        client.messages.create(**HELLO)
        with client.messages.stream(
            **{**HELLO, "messages": [{"role": "user", "content": "[[cached:5]] hi"}]}
        ) as s:
            s.get_final_message()
        upstream.queue_faults("503")  # one retry (by the proxy: a client that retries by itself gets none)
        assert httpx.post(url + "/v1/messages", json=HELLO, timeout=10).status_code == 200
        with pytest.raises(anthropic.BadRequestError):  # an error type
            client.messages.create(**{**HELLO, "messages": [{"role": "user", "content": "[[fault:400]] x"}]})
        with pytest.raises(anthropic.InternalServerError):  # a request error: counted, not a trip
            client.messages.create(**{**HELLO, "messages": [{"role": "user", "content": "[[fault:500]] x"}]})
        for index in range(2):  # the breaker opens on two distinct overloaded answers ...
            with pytest.raises(anthropic.APIStatusError):
                client.messages.create(
                    **{**HELLO, "messages": [{"role": "user", "content": f"[[fault:503]] x {index}"}]}
                )
        with pytest.raises(anthropic.APIStatusError, match="circuit breaker open"):  # ... and refuses
            client.messages.create(**HELLO)
        deadline = time.monotonic() + 5
        while True:  # a request is recorded just after its last byte went out: wait for the last one
            scrape = httpx.get(url + settings.metrics_path)
            if "\nhttp_server_active_requests 0\n" in scrape.text or time.monotonic() > deadline:
                break
            time.sleep(0.01)
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
    exposition = scrape.text

    exposed: set[str] = set()
    exposed_labels = {"job", "instance"}  # added by Prometheus when it scrapes
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", line)
            assert match, line
            exposed.add(match.group(1))
            exposed_labels.update(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', match.group(2) or ""))

    used: set[str] = set()
    for title, expr, legend in queries:
        metrics, labels = promql_names(expr)
        assert metrics, f"{title}: no metric in {expr!r}"
        assert metrics <= exposed, f"{title}: {sorted(metrics - exposed)} not in the proxy's /metrics"
        assert labels <= exposed_labels, f"{title}: labels {sorted(labels - exposed_labels)} never exposed"
        legend_labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
        assert legend_labels <= exposed_labels, (
            f"{title}: legend labels {sorted(legend_labels - exposed_labels)}"
        )
        used |= metrics
    # The dashboard covers what the brief asks for: traffic, errors, latency, TTFB, tokens, in-flight,
    # limiter waits, rejections and limits, breaker state.
    for needed in (
        "http_server_request_duration_seconds_count",
        "gen_ai_client_operation_duration_seconds_bucket",
        "ccproxy_server_time_to_first_byte_seconds_bucket",
        "ccproxy_usage_tokens_total",
        "http_server_active_requests",
        "ccproxy_ratelimit_waits_total",
        "ccproxy_ratelimit_rejections_total",
        "ccproxy_ratelimit_limit",
        "ccproxy_breaker_state",
    ):
        assert needed in used, needed
