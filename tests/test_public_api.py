"""The public face of the package and of each subpackage: exactly the intended names, all importable,
every layer reachable from `ccproxy_asgi.middleware` and from the top level, and the lazy faces cheap
to import (`import ccproxy_asgi` loads no HTTP library)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import ccproxy_asgi
from ccproxy_asgi.plumbing.pipeline import LayerKind, layer_kind

PACKAGE_DIR = Path(ccproxy_asgi.__file__).parent

LAYERS = {
    "APIKeyAuthMiddleware",
    "CircuitBreakerMiddleware",
    "CorrelationMiddleware",
    "ErrorNormalizationMiddleware",
    "MetricsMiddleware",
    "ObservabilityRoutes",
    "TokenRateLimitMiddleware",
    "TracingMiddleware",
    "UpstreamHeaderMiddleware",
}

FACES: dict[str, set[str]] = {
    "ccproxy_asgi": {
        *LAYERS,
        "AnthropicEndpoint",
        "Pipeline",
        "ProxyError",
        "RequestContext",
        "Settings",
        "__version__",
        "build_proxy",
        "create_app",
        "get_context",
        "run_lifespan",
    },
    "ccproxy_asgi.middleware": {*LAYERS, "KeyVerifier", "StaticKeyVerifier", "is_valid_request_id"},
    "ccproxy_asgi.app": {
        "MOCK_UPSTREAM_HINT",
        "Observability",
        "Proxy",
        "Settings",
        "build_breaker",
        "build_endpoint",
        "build_observability",
        "build_proxy",
        "build_rate_limiter",
        "create_app",
        "load_settings",
        "model_mapper",
        "mount_rate_limit",
    },
    "ccproxy_asgi.plumbing": {
        "ClientDisconnected",
        "Layer",
        "LayerFactory",
        "LayerKind",
        "LifespanContext",
        "LifespanError",
        "LifespanHooks",
        "Pipeline",
        "PipelineOrderError",
        "Route",
        "is_messages_call",
        "layer_kind",
        "match_route",
        "parse_json_body",
        "read_body",
        "replay_receive",
        "route_path",
        "run_lifespan",
        "send_error",
        "send_json",
    },
    "ccproxy_asgi.endpoint": {"AnthropicEndpoint", "MessagesHandler"},
    "ccproxy_asgi.provider": {
        "ChatProvider",
        "FallbackProvider",
        "OpenAIProvider",
        "RetryBudget",
        "RetryPolicy",
        "UpstreamEntry",
        "anthropic_ratelimit_headers",
        "map_upstream_error",
        "redact_error_text",
    },
    "ccproxy_asgi.upstream": {
        "DEFAULT_USER_AGENT",
        "AiohttpUpstreamClient",
        "AiohttpUpstreamResponse",
        "FirstByteTimeoutClient",
        "HTTPClientConfig",
        "HttpxUpstreamClient",
        "HttpxUpstreamResponse",
        "UpstreamClient",
        "UpstreamClientKind",
        "UpstreamResponse",
        "create_upstream_client",
    },
    "ccproxy_asgi.breaker": {
        "BreakerPolicy",
        "BreakerSnapshot",
        "BreakerStats",
        "BreakerStore",
        "CircuitBreaker",
        "MemoryBreakerStore",
        "Outcome",
        "RedisBreakerStore",
        "RedisFailureMode",
        "State",
        "Ticket",
        "Transition",
        "TransitionListener",
        "attempt_outcome",
        "request_fingerprint",
        "request_outcome",
        "upstream_key",
    },
    "ccproxy_asgi.ratelimit": {
        "AdaptivePolicy",
        "AdaptiveState",
        "Budget",
        "Clock",
        "Cost",
        "CostEstimator",
        "Decision",
        "EffectiveLimits",
        "FactorChange",
        "FailureMode",
        "KeyMode",
        "LimiterSnapshot",
        "LimiterStore",
        "MemoryStore",
        "MonotonicClock",
        "Observation",
        "RateLimiter",
        "RedisStore",
        "Reservation",
        "Settlement",
        "StoreUnavailableError",
        "Ticket",
        "Waiting",
        "WindowView",
        "client_identity",
        "key_for",
        "observation_from_attempts",
        "ratelimit_headers",
        "settlement_for",
    },
    "ccproxy_asgi.observability": {
        "AdaptiveTimeout",
        "AdaptiveTimeoutPolicy",
        "BreakerSource",
        "HealthMonitor",
        "HealthScore",
        "LimiterSource",
        "MetricsCollector",
        "OTelMetrics",
        "Readiness",
        "ReadinessCheck",
        "RequestRecord",
        "SlidingOutcomes",
        "SlidingPercentiles",
        "get_tracer",
        "ping_check",
        "tcp_check",
        "traced_send",
    },
    "ccproxy_asgi.translate": {
        "EffortThresholds",
        "ModelMapper",
        "ModelProfile",
        "ProfileResolver",
        "SSEDecoder",
        "SSEEvent",
        "StreamTranslator",
        "ToolNameMap",
        "TranslatedRequest",
        "TranslationOptions",
        "default_profile",
        "encode_event",
        "translate_request",
        "translate_response",
    },
    "ccproxy_asgi.tokens": {
        "AsyncTokenCounterProtocol",
        "CacheStats",
        "ChatTokenCounter",
        "CountingRules",
        "TokenCounter",
        "TokenCounterProtocol",
        "encoding_for_model",
    },
    "ccproxy_asgi.mock_upstream": {
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
    },
}

# Every package of ccproxy_asgi, from the files: a face is checked wherever it is declared.
PACKAGES = sorted(
    "ccproxy_asgi" + "".join(f".{part}" for part in init.parent.relative_to(PACKAGE_DIR).parts)
    for init in PACKAGE_DIR.glob("**/__init__.py")
)
LAZY_PACKAGES = [
    "ccproxy_asgi",
    "ccproxy_asgi.middleware",
    "ccproxy_asgi.provider",
    "ccproxy_asgi.breaker",
    "ccproxy_asgi.ratelimit",
    "ccproxy_asgi.upstream",
]
HTTP_LIBRARIES = ("aiohttp", "httpx", "httpx2", "starlette", "fastapi", "uvicorn", "hypercorn", "h11", "h2")


def _init_path(package: str) -> Path:
    return PACKAGE_DIR.joinpath(*package.split(".")[1:], "__init__.py")


@pytest.mark.parametrize("package", sorted(FACES))
def test_each_package_exports_exactly_its_face(package: str) -> None:
    exported = importlib.import_module(package).__all__
    assert set(exported) == FACES[package]
    assert len(exported) == len(FACES[package]), "a name is listed twice in __all__"


def test_every_package_with_public_modules_has_a_face() -> None:
    # Private packages (`_cython`) and nested ones (`app.wiring`, which `app` re-exports) aside.
    top_level = [p for p in PACKAGES if p.count(".") == 1 and not p.split(".")[1].startswith("_")]
    assert sorted(set(top_level) - set(FACES)) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    for name in getattr(module, "__all__", ()):
        assert getattr(module, name) is not None, f"{package}.{name}"
        assert name in dir(module), f"dir({package}) does not list {name}"


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_unknown_attribute_is_an_attribute_error(package: str) -> None:
    module = importlib.import_module(package)
    with pytest.raises(AttributeError, match="does_not_exist"):
        module.does_not_exist  # noqa: B018


def _layers_in_the_code() -> dict[str, LayerKind]:
    """Every class of ccproxy_asgi.middleware that declares a `kind`: the layers, whoever added them."""
    found: dict[str, LayerKind] = {}
    for path in sorted((PACKAGE_DIR / "middleware").glob("*.py")):
        module = importlib.import_module(f"ccproxy_asgi.middleware.{path.stem}")
        for name, value in vars(module).items():
            kind = layer_kind(value)
            if isinstance(value, type) and kind is not None and value.__module__ == module.__name__:
                found[name] = kind
    return found


def test_every_layer_is_exported_from_middleware_and_the_top_level() -> None:
    layers = _layers_in_the_code()
    assert set(layers) == LAYERS
    assert set(layers.values()) == set(LayerKind), "a layer kind without its layer, or the other way"
    middleware = importlib.import_module("ccproxy_asgi.middleware")
    for name in layers:
        assert getattr(middleware, name) is getattr(ccproxy_asgi, name)
        assert layer_kind(getattr(ccproxy_asgi, name)) is layers[name]


def test_every_module_level_getattr_is_the_lazy_helper() -> None:
    hand_rolled = [
        str(path.relative_to(PACKAGE_DIR.parent))
        for path in sorted(PACKAGE_DIR.glob("**/*.py"))
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(node, ast.FunctionDef) and node.name in ("__getattr__", "__dir__")
    ]
    assert hand_rolled == [], "use ccproxy_asgi._lazy.lazy_exports"


def _lazy_table(package: str) -> dict[str, str]:
    tree = ast.parse(_init_path(package).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports":
            table = node.args[1]
            assert isinstance(table, ast.Dict)
            return {
                ast.literal_eval(key): ast.literal_eval(value)
                for key, value in zip(table.keys, table.values, strict=True)
                if key is not None
            }
    return {}


def _type_checking_imports(package: str) -> dict[str, str]:
    tree = ast.parse(_init_path(package).read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                found.update({alias.name: str(statement.module) for alias in statement.names})
    return found


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_lazy_names_are_visible_to_type_checkers(package: str) -> None:
    table = _lazy_table(package)
    assert table, f"{package} exports nothing lazily"
    assert _type_checking_imports(package) == table, "import each lazy name under `if TYPE_CHECKING:` too"
    assert set(table) <= set(importlib.import_module(package).__all__)


def _loaded_after(statement: str, libraries: tuple[str, ...]) -> list[str]:
    code = (
        f"import sys\n{statement}\n"
        f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({libraries!r}))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return result.stdout.split()


@pytest.mark.parametrize(
    "statement",
    [
        "import ccproxy_asgi",
        "import ccproxy_asgi.middleware",
        "import ccproxy_asgi.provider",
        "from ccproxy_asgi.upstream import create_upstream_client",
        "from ccproxy_asgi import __version__",
    ],
)
def test_importing_the_face_loads_no_http_library(statement: str) -> None:
    assert _loaded_after(statement, HTTP_LIBRARIES) == []


def test_importing_the_package_loads_nothing_but_the_package() -> None:
    heavy = (*HTTP_LIBRARIES, "pydantic", "pydantic_settings", "opentelemetry", "tiktoken", "redis", "orjson")
    assert _loaded_after("import ccproxy_asgi", heavy) == []


def test_one_layer_does_not_load_the_dependencies_of_the_others() -> None:
    loaded = _loaded_after(
        "from ccproxy_asgi.middleware import CorrelationMiddleware", ("opentelemetry", "tiktoken", "redis")
    )
    assert loaded == []


@pytest.mark.parametrize("package", ["ccproxy_asgi.breaker", "ccproxy_asgi.ratelimit"])
def test_the_cores_load_redis_only_when_its_store_is_used(package: str) -> None:
    assert _loaded_after(f"import {package}", ("redis",)) == []
