"""Settings: environment names, fallbacks, parsing and the one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ccproxy_asgi.app.settings import Settings, describe_validation_error, env_name


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("CCPROXY_") or name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # so a developer's own .env is not read


def test_defaults_serve_the_mock_upstream() -> None:
    settings = Settings()
    assert settings.upstream_base_url is None
    assert settings.uses_mock_upstream
    assert settings.http_client == "aiohttp"
    assert settings.rate_limit_window_seconds == 60
    assert settings.log_format == "text"


@pytest.mark.parametrize(
    ("variable", "field", "raw", "expected"),
    [
        ("CCPROXY_BIG_MODEL", "big_model", "gpt-5", "gpt-5"),
        ("CCPROXY_SMALL_MODEL", "small_model", "gpt-5-mini", "gpt-5-mini"),
        ("CCPROXY_HTTP_CLIENT", "http_client", "httpx", "httpx"),
        ("CCPROXY_RATE_LIMIT_RPM", "rate_limit_rpm", "120", 120),
        ("CCPROXY_RATE_LIMIT_TPM", "rate_limit_tpm", "90000", 90000),
        ("CCPROXY_RATE_LIMIT_WINDOW_SECONDS", "rate_limit_window_seconds", "5", 5.0),
        ("CCPROXY_RATE_LIMIT_MAX_WAIT_SECONDS", "rate_limit_max_wait_seconds", "2.5", 2.5),
        ("CCPROXY_STATE_BACKEND", "state_backend", "redis", "redis"),
        ("CCPROXY_BREAKER_FAILURE_THRESHOLD", "breaker_failure_threshold", "3", 3),
        ("CCPROXY_BREAKER_RECOVERY_SECONDS", "breaker_recovery_seconds", "12", 12.0),
        ("CCPROXY_LOG_FORMAT", "log_format", "json", "json"),
        ("CCPROXY_MODEL_MAP", "model_map", '{"claude-3-*": "gpt-4o"}', {"claude-3-*": "gpt-4o"}),
        ("CCPROXY_REASONING_MODELS", "reasoning_models", "gpt-oss*, qwq*", ["gpt-oss*", "qwq*"]),
    ],
)
def test_documented_variables(
    monkeypatch: pytest.MonkeyPatch, variable: str, field: str, raw: str, expected: object
) -> None:
    assert env_name(field) == variable
    monkeypatch.setenv(variable, raw)
    assert getattr(Settings(), field) == expected


def test_upstream_falls_back_to_openai_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "https://example.test/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fallback-0123456789")
    settings = Settings()
    assert settings.upstream_base_url == "https://example.test/v1"
    assert settings.upstream_api_key is not None
    assert settings.upstream_api_key.get_secret_value() == "sk-fallback-0123456789"


def test_ccproxy_variables_win_over_openai_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "https://fallback.test/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fallback-0123456789")
    monkeypatch.setenv("CCPROXY_UPSTREAM_BASE_URL", "https://primary.test/v1")
    monkeypatch.setenv("CCPROXY_UPSTREAM_API_KEY", "sk-primary-0123456789")
    settings = Settings()
    assert settings.upstream_base_url == "https://primary.test/v1"
    assert settings.upstream_api_key is not None
    assert settings.upstream_api_key.get_secret_value() == "sk-primary-0123456789"


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory) -> None:
    (tmp_path / ".env").write_text("CCPROXY_BIG_MODEL=from-dotenv\n")  # type: ignore[operator]
    assert Settings().big_model == "from-dotenv"
    monkeypatch.setenv("CCPROXY_BIG_MODEL", "from-env")
    assert Settings().big_model == "from-env"


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCPROXY_UPSTREAM_API_KEY", "sk-upstream-secret-0123456789")
    monkeypatch.setenv("CCPROXY_API_KEYS", "client-key-one,client-key-two")
    monkeypatch.setenv("CCPROXY_REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0")
    settings = Settings()
    assert [key.get_secret_value() for key in settings.api_keys] == ["client-key-one", "client-key-two"]
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "sk-upstream-secret" not in text
        assert "client-key-one" not in text
        assert "hunter2" not in text


@pytest.mark.parametrize(
    ("variable", "raw", "fragment"),
    [
        ("CCPROXY_RATE_LIMIT_RPM", "lots", "CCPROXY_RATE_LIMIT_RPM"),
        ("CCPROXY_RATE_LIMIT_TPM", "-5", "CCPROXY_RATE_LIMIT_TPM"),
        ("CCPROXY_HTTP_CLIENT", "curl", "CCPROXY_HTTP_CLIENT"),
        ("CCPROXY_UPSTREAM_BASE_URL", "ftp://nope", "must start with http:// or https://"),
        ("CCPROXY_STATE_BACKEND", "etcd", "CCPROXY_STATE_BACKEND"),
    ],
)
def test_invalid_values_give_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ValidationError) as info:
        Settings()
    message = describe_validation_error(info.value)
    assert len(message.splitlines()) == 1
    assert variable in message
    assert fragment in message


# ----- base URLs with credentials (issue 11) -----------------------------------------------------------------


@pytest.mark.parametrize("variable", ["CCPROXY_UPSTREAM_BASE_URL", "OPENAI_BASE_URL"])
@pytest.mark.parametrize(
    "url",
    [
        "https://user:pw-s3cr3t@example.com/v1",
        "https://s3cr3t-token@example.com/v1",
        "http://:s3cr3t@127.0.0.1:8000/v1",
    ],
)
def test_a_base_url_with_credentials_is_refused_without_showing_them(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str
) -> None:
    monkeypatch.setenv(variable, url)
    with pytest.raises(ValidationError) as info:
        Settings()
    message = describe_validation_error(info.value)
    assert len(message.splitlines()) == 1
    assert "CCPROXY_UPSTREAM_BASE_URL" in message
    assert "put the key in CCPROXY_UPSTREAM_API_KEY" in message
    assert "s3cr3t" not in message
    assert "user" not in message.split("got", 1)[-1]


def test_a_fallback_base_url_with_credentials_is_refused_without_showing_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "CCPROXY_FALLBACK_UPSTREAMS",
        '[{"name":"local","base_url":"http://admin:s3cr3t@127.0.0.1:8000/v1","api_key":"k"}]',
    )
    with pytest.raises(ValidationError) as info:
        Settings()
    message = describe_validation_error(info.value)
    assert len(message.splitlines()) == 1
    assert "CCPROXY_FALLBACK_UPSTREAMS" in message
    assert "api_key of fallback upstream 'local'" in message
    assert "s3cr3t" not in message
    assert "admin" not in message


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "http://127.0.0.1:8000/v1",
        "https://example.com/v1/deployments/a@b",  # an "@" in the path is not a credential
        "https://[::1]:8443/v1",
    ],
)
def test_base_urls_without_credentials_still_pass(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("CCPROXY_UPSTREAM_BASE_URL", url)
    assert Settings().upstream_base_url == url


def test_server_limits_have_defaults_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.server_keepalive_timeout_seconds == 75.0
    assert settings.server_header_timeout_seconds == 20.0
    assert settings.server_max_header_bytes == 64 * 1024
    monkeypatch.setenv("CCPROXY_SERVER_MAX_HEADER_BYTES", "4096")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "CCPROXY_SERVER_MAX_HEADER_BYTES" in describe_validation_error(info.value)
