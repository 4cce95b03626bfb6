"""`create_app`: the whole proxy as one ASGI app, built from `Settings`."""

from __future__ import annotations

from ccproxy_asgi.endpoint.app import AnthropicEndpoint
from ccproxy_asgi.logs import register_secrets
from ccproxy_asgi.middleware.correlation import CorrelationMiddleware
from ccproxy_asgi.middleware.errors import ErrorNormalizationMiddleware
from ccproxy_asgi.provider.openai import OpenAIProvider
from ccproxy_asgi.retry import RetryPolicy
from ccproxy_asgi.retry_budget import RetryBudget
from ccproxy_asgi.settings import Settings
from ccproxy_asgi.tokens.counter import TokenCounter
from ccproxy_asgi.translate.models import ModelMapper
from ccproxy_asgi.translate.options import ProfileResolver, TranslationOptions
from ccproxy_asgi.types import ASGIApp
from ccproxy_asgi.upstream import HTTPClientConfig, create_upstream_client

MOCK_UPSTREAM_HINT = "set CCPROXY_UPSTREAM_BASE_URL (or OPENAI_BASE_URL) and CCPROXY_UPSTREAM_API_KEY"


def build_endpoint(settings: Settings) -> AnthropicEndpoint:
    """The terminal endpoint with its provider, wired from settings."""
    if settings.upstream_base_url is None:
        raise ValueError(f"no upstream configured: {MOCK_UPSTREAM_HINT}")
    client = create_upstream_client(
        settings.http_client,
        HTTPClientConfig(
            max_connections=settings.http_max_connections,
            connect_timeout=settings.http_connect_timeout_seconds,
            read_timeout=settings.http_read_timeout_seconds,
            http2=settings.http2,
        ),
    )
    provider = OpenAIProvider(
        base_url=settings.upstream_base_url,
        api_key=settings.upstream_api_key,
        client=client,
        token_counter=TokenCounter(),
        retry=RetryPolicy(
            max_attempts=settings.retry_max_attempts,
            max_delay=settings.retry_max_backoff_seconds,
            max_retry_after=settings.retry_max_retry_after_seconds,
            total_timeout=settings.retry_total_timeout_seconds,
            budget=RetryBudget(
                ratio=settings.retry_budget_ratio,
                min_per_second=settings.retry_budget_min_per_second,
                window=settings.retry_budget_window_seconds,
            ),
        ),
    )
    return AnthropicEndpoint(
        provider=provider,
        models=ModelMapper(
            big_model=settings.big_model, small_model=settings.small_model, mapping=settings.model_map
        ),
        profile_for=ProfileResolver.from_settings(
            reasoning_globs=settings.reasoning_models,
            max_tokens_field=settings.max_tokens_field,
            forward_top_k=settings.forward_top_k,
            max_tool_description_chars=settings.max_tool_description_chars or None,
        ),
        options=TranslationOptions(server_tools=settings.server_tools),
        ping_interval=settings.ping_interval_seconds,
        max_request_bytes=settings.max_request_bytes,
        list_upstream_models=settings.upstream_list_models,
        forward_client_key=settings.forward_client_key,
    )


def create_app(settings: Settings | None = None) -> ASGIApp:
    """The proxy as one ASGI app with a lifespan that opens and closes the upstream client.

    Layers, outermost first: correlation (request id, access log), error normalization, the endpoint.
    The configured keys are registered with the log formatters so no log line can show them.
    """
    settings = settings or Settings()
    register_secrets(settings.upstream_api_key, *settings.api_keys)
    app: ASGIApp = build_endpoint(settings)
    app = ErrorNormalizationMiddleware(app, max_body_bytes=settings.max_request_bytes)
    return CorrelationMiddleware(app, header_name=settings.request_id_header, access_log=settings.access_log)


__all__ = ["build_endpoint", "create_app"]
