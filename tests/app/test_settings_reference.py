"""docs/configuration.md is the rendering of Settings; README's variables all exist."""

from __future__ import annotations

import re
from pathlib import Path

from ccproxy_asgi.app.settings import Settings, env_name
from ccproxy_asgi.app.settings_reference import render_reference

DOCS = Path(__file__).resolve().parents[2] / "docs"
README = Path(__file__).resolve().parents[2] / "README.md"


def test_configuration_reference_matches_settings() -> None:
    committed = (DOCS / "configuration.md").read_text()
    assert committed == render_reference(), (
        "docs/configuration.md is stale: regenerate it with `ccproxy-asgi config --format markdown`"
    )


def test_every_setting_is_in_the_reference() -> None:
    text = render_reference()
    for field in Settings.model_fields:
        assert f"`{env_name(field)}`" in text


def test_readme_names_only_real_variables() -> None:
    known = {env_name(field) for field in Settings.model_fields}
    mentioned = set(re.findall(r"CCPROXY_[A-Z0-9_]+", README.read_text()))
    mentioned.discard("CCPROXY_DISABLE_CYTHON")  # read by ccproxy_asgi._cython at import, not a setting
    assert mentioned <= known, mentioned - known
