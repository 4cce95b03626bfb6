"""`OpenAIProvider`: chat completions from an OpenAI-compatible upstream, with the retry policy.

Retries happen here and only here (no SDK underneath with a retry loop of its own), and only before a
response is handed to the endpoint, so nothing is ever retried after a byte reached the client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from opentelemetry.trace import Tracer
from pydantic import SecretStr

from ccproxy_asgi import jsonutil
from ccproxy_asgi._version import __version__
from ccproxy_asgi.context import RequestContext, UpstreamAttempt
from ccproxy_asgi.errors import FirstByteTimeoutError, ProxyError, UpstreamError
from ccproxy_asgi.headers import Headers
from ccproxy_asgi.observability.tracing import traced_send
from ccproxy_asgi.provider.error_mapping import map_upstream_error
from ccproxy_asgi.provider.retry import RetryPolicy
from ccproxy_asgi.tokens.counter import TokenCounter
from ccproxy_asgi.upstream.base import (
    FirstByteTimeoutClient,
    HTTPClientConfig,
    UpstreamClient,
    UpstreamResponse,
)

_MODELS_TTL_SECONDS = 300.0
logger = logging.getLogger(__name__)


class OpenAIProvider:
    """Implements `ChatProvider` over an `UpstreamClient`."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: SecretStr | None,
        client: UpstreamClient,
        token_counter: TokenCounter,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        tracer: Tracer | None = None,
        read_timeout: Callable[[], float | None] | None = None,
        provider_name: str = "openai",
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._completions_url = self._base_url + "/chat/completions"
        self._api_key = api_key
        self._client = client
        self._token_counter = token_counter
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        # Observability: a CLIENT span per attempt (its traceparent sent upstream), and a per-attempt
        # read timeout (the adaptive one; None from it means the client's static timeout).
        self._tracer = tracer
        self._read_timeout = read_timeout
        self._provider_name = provider_name
        self._models: tuple[float, list[str]] | None = None

    def __repr__(self) -> str:
        return f"OpenAIProvider(base_url={self._base_url!r})"

    @property
    def base_url(self) -> str:
        return self._base_url

    def _headers(self, ctx: RequestContext, client_key: str | None) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "user-agent": f"ccproxy-asgi/{__version__}",
        }
        key = (
            client_key
            if client_key is not None
            else (self._api_key.get_secret_value() if self._api_key is not None else None)
        )
        if key:
            headers["authorization"] = f"Bearer {key}"
        if ctx.request_id:
            headers["x-request-id"] = ctx.request_id
        if ctx.traceparent is not None:
            headers["traceparent"] = ctx.traceparent
        return headers

    async def _send(
        self, ctx: RequestContext, attempt: int, headers: dict[str, str], content: bytes
    ) -> UpstreamResponse:
        """One attempt: traced when there is a tracer, with the adaptive read timeout when there is one,
        and for a stream the client's first-byte timeout, counted from the first attempt."""
        timeout = self._read_timeout() if self._read_timeout is not None else None
        client = self._client
        config = getattr(client, "config", None)  # clients written before first-byte timeouts have none
        if ctx.stream and isinstance(config, HTTPClientConfig) and config.first_byte_timeout is not None:
            # Until the head arrives a streaming client has had nothing, not even a ping, and a retry
            # does not change that: the budget runs from the first attempt, so a silent upstream costs
            # the client one first-byte timeout, not one per attempt. (A non-streaming head usually
            # comes with the whole completion, so only the read timeout can apply to it.)
            now = self._clock()
            deadline = now + config.first_byte_timeout
            if attempt == 0:
                ctx.first_byte_deadline = deadline
            elif ctx.first_byte_deadline is not None:
                deadline = ctx.first_byte_deadline
            left = deadline - now
            if left <= 0:
                raise FirstByteTimeoutError(
                    f"upstream timeout: first byte timed out after {config.first_byte_timeout:g} s "
                    "(no response head, retries included)"
                )
            client = FirstByteTimeoutClient(client, left)
        if self._tracer is None:
            return await client.send(
                "POST", self._completions_url, headers=headers, content=content, timeout=timeout
            )
        return await traced_send(
            self._tracer,
            client,
            ctx,
            method="POST",
            url=self._completions_url,
            headers=headers,
            content=content,
            timeout=timeout,
            attempt=attempt,
            provider_name=self._provider_name,
        )

    async def _post(
        self, payload: dict[str, Any], ctx: RequestContext, client_key: str | None
    ) -> UpstreamResponse:
        """POST to the completions URL until a 200 arrives or the retry policy gives up (`ccproxy_asgi.provider.retry`:
        a client that announces its own retries gets a retryable status back at once)."""
        await ctx.admit()
        content = jsonutil.dumps(payload)
        headers = self._headers(ctx, client_key)
        attempts = 1 if ctx.probe else self._retry.max_attempts
        last = attempts - 1
        retries = self._retry.start(self._clock)
        announced = ctx.client_retry_count
        for attempt in range(attempts):
            record = UpstreamAttempt(url=self._completions_url)
            ctx.attempts.append(record)
            started = self._clock()
            try:
                response = await self._send(ctx, attempt, headers, content)
            except ProxyError as exc:
                record.duration_s = self._clock() - started
                record.error = type(exc).__name__
                delay = (
                    None
                    if attempt == last or isinstance(exc, FirstByteTimeoutError)
                    else retries.after_failure(attempt, exc, client_retry_count=announced)
                )
                if delay is None:
                    raise
                logger.info(
                    "upstream attempt %d failed (%s); retrying in %.2fs", attempt + 1, record.error, delay
                )
                await self._sleep(delay)
                continue
            record.status = status = response.status
            record.headers = Headers(response.headers)
            if status == 200:
                record.duration_s = self._clock() - started
                return response
            try:
                body = await response.read()
            except ProxyError:
                body = b""
            finally:
                await response.aclose()
            record.duration_s = self._clock() - started
            error = map_upstream_error(
                status,
                record.headers,
                body,
                client_key_forwarded=client_key is not None,
                secrets=(client_key, self._secret_key()),
                estimate=self._retry.estimate((announced or 0) + attempt),
            )
            delay = (
                None
                if attempt == last
                else retries.after_status(
                    attempt,
                    status,
                    record.headers,
                    should_retry=error.should_retry,
                    client_retry_count=announced,
                )
            )
            if delay is None:
                raise error
            logger.info("upstream answered %d on attempt %d; retrying in %.2fs", status, attempt + 1, delay)
            await self._sleep(delay)
        raise UpstreamError("upstream retries exhausted")  # unreachable: the last attempt raises

    def _secret_key(self) -> str | None:
        return None if self._api_key is None else self._api_key.get_secret_value()

    async def complete(
        self, payload: dict[str, Any], ctx: RequestContext, *, client_key: str | None = None
    ) -> dict[str, Any]:
        response = await self._post(payload, ctx, client_key)
        try:
            body = await response.read()
        finally:
            await response.aclose()
        try:
            data = jsonutil.loads(body)
        except ValueError as exc:
            raise UpstreamError("invalid upstream response: body is not JSON") from exc
        if not isinstance(data, dict):
            raise UpstreamError("invalid upstream response: body is not a JSON object")
        return data

    @asynccontextmanager
    async def stream(
        self, payload: dict[str, Any], ctx: RequestContext, *, client_key: str | None = None
    ) -> AsyncIterator[UpstreamResponse]:
        response = await self._post(payload, ctx, client_key)
        try:
            yield response
        finally:
            await response.aclose()

    async def count_tokens(self, body: dict[str, Any], *, upstream_model: str) -> int:
        return await self._token_counter.acount_request(body, model=upstream_model)

    async def list_models(self) -> list[str]:
        now = self._clock()
        if self._models is not None and now - self._models[0] < _MODELS_TTL_SECONDS:
            return self._models[1]
        headers = self._headers(RequestContext(), None)
        response = await self._client.send("GET", self._base_url + "/models", headers=headers)
        try:
            body = await response.read()
        finally:
            await response.aclose()
        if response.status != 200:
            raise map_upstream_error(
                response.status, Headers(response.headers), body, secrets=(self._secret_key(),)
            )
        try:
            data = jsonutil.loads(body)
            ids = [str(item["id"]) for item in data["data"] if isinstance(item, dict) and "id" in item]
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamError("invalid upstream response to GET /models") from exc
        self._models = (now, ids)
        return ids

    async def aclose(self) -> None:
        await self._client.aclose()


__all__ = ["OpenAIProvider"]
