"""The package's public face: exactly the intended names, importable, and cheap to import."""

from __future__ import annotations

import subprocess
import sys

import ccproxy_asgi

INTENDED = {
    "AnthropicEndpoint",
    "ProxyError",
    "RequestContext",
    "Settings",
    "__version__",
    "create_app",
    "get_context",
}


def test_exported_names_are_exactly_the_intended_ones() -> None:
    assert set(ccproxy_asgi.__all__) == INTENDED
    assert len(ccproxy_asgi.__all__) == len(INTENDED)


def test_every_exported_name_resolves() -> None:
    for name in ccproxy_asgi.__all__:
        assert getattr(ccproxy_asgi, name) is not None


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        ccproxy_asgi.does_not_exist  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError:
        pass
    else:
        raise AssertionError("expected AttributeError")


def test_importing_the_package_loads_no_http_library() -> None:
    code = "import sys, ccproxy_asgi; print(any(m in sys.modules for m in ('aiohttp', 'httpx', 'starlette')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
