"""The configuration reference (docs/configuration.md), rendered from `Settings` so the two cannot drift.

`ccproxy-asgi config --format markdown` prints it; a test compares it with the committed file.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from ccproxy_asgi.app.settings import Settings, env_name

_FALLBACKS = {"upstream_base_url": "OPENAI_BASE_URL", "upstream_api_key": "OPENAI_API_KEY"}

_HEADER = """# Configuration reference

Every setting is an environment variable (or a line in a `.env` file in the working directory).
`ccproxy-asgi config` prints the effective values with secrets masked. An invalid value stops start-up
with one line naming the variable and what is wrong. List-valued variables take `a,b,c` or a JSON list;
`CCPROXY_MODEL_MAP` takes a JSON object.

This page is generated from `ccproxy_asgi/app/settings.py` (`ccproxy-asgi config --format markdown`); a test
keeps the two in agreement.

| variable | default | meaning |
|---|---|---|
"""


def _default(field: Any) -> str:
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, SecretStr):
        return "(secret)"
    if value is None:
        return "unset"
    if value == [] or value == {}:
        return "empty"
    return f"`{value}`"


def render_reference() -> str:
    rows = []
    for name, field in Settings.model_fields.items():
        variable = f"`{env_name(name)}`"
        if name in _FALLBACKS:
            variable += f" (fallback `{_FALLBACKS[name]}`)"
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| {variable} | {_default(field)} | {description} |")
    return _HEADER + "\n".join(rows) + "\n"


__all__ = ["render_reference"]
