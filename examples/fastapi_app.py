"""A platform team's FastAPI service with ccproxy-asgi inside it: the whole proxy under a prefix, and
single layers on routes of its own.

    /anthropic/...            the whole proxy (`build_proxy`): every layer the `CCPROXY_*` settings ask
                              for. Claude Code: ANTHROPIC_BASE_URL=http://127.0.0.1:8000/anthropic
                              Prometheus: /anthropic/metrics; probes: /anthropic/health[/ready]
    /assistant/v1/messages    the team's own FastAPI route: adds the team's system prompt and calls the
                              model through the proxy mounted in this same process. Its sub-app sits
                              behind the error layer (FastAPI's own 404/405/422 leave as Anthropic error
                              envelopes, which the anthropic SDK understands) and a token rate limiter
                              with a small budget per client key of its own.
    /batch/v1/messages        the terminal endpoint alone behind its own circuit breaker: batch jobs get
                              an immediate 529 while the upstream fails, instead of piling up retries.
    /healthz, /teams/{id}     ordinary FastAPI routes, no layer at all.

FastAPI has no per-route middleware; a layer goes on a route by mounting a sub-application wrapped in it
(`app.mount(path, Layer(sub_app, ...))`), or on a Starlette `Route(..., middleware=[...])` (see
starlette_app.py). Starlette does not run the lifespan of mounted apps, so this app's own lifespan drives
theirs with `run_lifespan`: that opens and closes the upstream clients and the limiter's store.

    CCPROXY_UPSTREAM_BASE_URL=https://api.openai.com/v1 CCPROXY_UPSTREAM_API_KEY=sk-... \\
        uvicorn --app-dir examples --factory fastapi_app:create_platform_app --port 8000
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ccproxy_asgi.app import build_breaker, build_endpoint, build_proxy
from ccproxy_asgi.app.settings import Settings
from ccproxy_asgi.context import Usage, get_context
from ccproxy_asgi.middleware.breaker import CircuitBreakerMiddleware
from ccproxy_asgi.middleware.error_normalization import ErrorNormalizationMiddleware
from ccproxy_asgi.middleware.ratelimit import TokenRateLimitMiddleware
from ccproxy_asgi.plumbing.lifespan import LifespanHooks, run_lifespan
from ccproxy_asgi.plumbing.pipeline import Pipeline
from ccproxy_asgi.ratelimit import Budget, RateLimiter
from ccproxy_asgi.types import ASGIApp

#: What one client key may spend on the assistant per minute (the proxy's own budget is CCPROXY_*).
ASSISTANT_BUDGET = Budget(requests=30, tokens=50_000, window=60.0)
TEAM_SYSTEM_PROMPT = "You are the Acme platform assistant. Answer briefly."


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str = Field(min_length=1)


class AssistantRequest(BaseModel):
    """The subset of the Messages API the assistant accepts (FastAPI answers 422 for anything else)."""

    model: str
    max_tokens: int = Field(gt=0, le=4096)
    messages: list[Turn] = Field(min_length=1)


def assistant_app(llm: httpx.AsyncClient) -> FastAPI:
    """The team's assistant: its own validation and system prompt, the model reached through `llm`."""
    assistant = FastAPI(title="assistant", openapi_url=None)

    @assistant.post("/v1/messages")
    async def ask(body: AssistantRequest, request: Request) -> JSONResponse:
        ctx = get_context(request.scope)
        payload = {**body.model_dump(), "system": TEAM_SYSTEM_PROMPT}
        # The caller's own key goes on (the proxy may check it), and the request id ties both log lines.
        headers = {k: v for k, v in request.headers.items() if k in ("x-api-key", "authorization")}
        if ctx.request_id:
            headers["request-id"] = ctx.request_id
        answer = await llm.post("/v1/messages", json=payload, headers=headers)
        data: dict[str, Any] = answer.json()
        usage = data.get("usage") if answer.status_code == 200 else None
        if isinstance(usage, dict):
            # The rate limiter in front of this route reconciles its reservation with what was spent.
            ctx.usage = Usage(
                input_tokens=int(usage.get("input_tokens", 0)),
                output_tokens=int(usage.get("output_tokens", 0)),
            )
        # Errors of the proxy are Anthropic envelopes already; pass them on with their retry hints.
        kept = {k: v for k, v in answer.headers.items() if k in ("retry-after", "x-should-retry")}
        return JSONResponse(data, status_code=answer.status_code, headers=kept)

    return assistant


def create_platform_app(
    settings: Settings | None = None, *, assistant_budget: Budget = ASSISTANT_BUDGET
) -> FastAPI:
    """The team's app. `settings` configure the proxy (default: `CCPROXY_*` from the environment)."""
    settings = settings or Settings()
    proxy = build_proxy(settings)

    # The assistant calls the mounted proxy in process: no network hop, same breaker and budgets.
    llm = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=proxy.app), base_url="http://proxy", timeout=600.0
    )
    limiter = RateLimiter(budget=assistant_budget, max_wait=5.0)
    assistant: ASGIApp = (
        Pipeline()  # checks the order: the error layer must wrap the limiter
        .add(ErrorNormalizationMiddleware, max_body_bytes=1 << 20)
        .add(TokenRateLimitMiddleware, limiter=limiter, key="client")
        .wrap(assistant_app(llm))
    )

    batch_breaker = build_breaker(settings)
    batch: ASGIApp = LifespanHooks(
        CircuitBreakerMiddleware(
            build_endpoint(settings),
            breaker=batch_breaker,
            upstream=str(settings.upstream_base_url),
            name="batch",
        ),
        on_shutdown=[batch_breaker.aclose],
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Startup in this order, shutdown in reverse; the limiter layer closes its store on shutdown.
        async with run_lifespan(proxy.app), run_lifespan(batch), run_lifespan(assistant), llm:
            yield

    app = FastAPI(title="acme platform", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/teams/{team_id}")
    async def team(team_id: int) -> dict[str, Any]:
        return {"id": team_id, "name": f"team-{team_id}"}

    app.mount("/anthropic", proxy.app)
    app.mount("/assistant", assistant)
    app.mount("/batch", batch)
    return app


__all__ = ["ASSISTANT_BUDGET", "AssistantRequest", "assistant_app", "create_platform_app"]
