"""The aiohttp application: OpenAI-compatible routes plus the `/mock/*` control routes.

Routes:
    POST   /v1/chat/completions     chat, streamed or not
    GET    /v1/models, /v1/models/{id}
    GET    /health
    GET|POST|DELETE /mock/faults    inspect / queue (JSON list or object) / clear scripted faults
    GET|DELETE      /mock/requests  recorded chat requests / forget them
    POST   /mock/reset              clear faults, recorded requests and the account-limit windows
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ccproxy_asgi import jsonutil
from ccproxy_asgi.mock_upstream.config import MockConfig
from ccproxy_asgi.mock_upstream.error_bodies import (
    OpenAIError,
    error_for_fault,
    error_for_status,
    rate_limit_error,
)
from ccproxy_asgi.mock_upstream.faults import Fault, FaultPlan, FaultSpecError, parse_fault, parse_fault_list
from ccproxy_asgi.mock_upstream.ratelimit import (
    AccountLimiter,
    LimitDecision,
    retry_after_headers,
)
from ccproxy_asgi.mock_upstream.recorder import RequestRecorder
from ccproxy_asgi.mock_upstream.reply import Reply, plan_reply
from ccproxy_asgi.mock_upstream.wire import (
    ResponseMeta,
    completion_body,
    error_frame,
    malformed_frame,
    stream_frames,
)

JSON = "application/json"
EVENT_STREAM = "text/event-stream; charset=utf-8"
_MODEL_CREATED = 1_700_000_000
# Faults under which a request is served but delivered late or broken; any other fault (an error status,
# a hang) replaces the response, as does `error_chunk` when the request is not a stream.
_DELIVERY_FAULTS = frozenset({"slow", "cut", "malformed", "error_chunk"})
_HANG_POLL_SECONDS = 0.05


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": _MODEL_CREATED, "owned_by": "mock-upstream"}


def _request_id() -> str:
    return "req_" + os.urandom(16).hex()


def _lower_headers(request: web.Request) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        name = key.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=jsonutil.dumps(payload), status=status, content_type=JSON)


class MockUpstream:
    """The state of one mock server and its request handlers."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        configured = parse_fault(config.fault) if config.fault else None
        self.faults = FaultPlan(configured, config.fault_rate, config.seed)
        self.limiter = AccountLimiter(
            config.rpm_limit,
            config.tpm_limit,
            config.limit_window,
            advertised_rpm=config.advertised_rpm,
            advertised_tpm=config.advertised_tpm,
        )
        self.recorder = RequestRecorder(config.record_limit)
        self._model_ids = frozenset(config.models)
        self._models_body = jsonutil.dumps(
            {"object": "list", "data": [_model_object(m) for m in config.models]}
        )

    # ----- plain routes -------------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type=JSON)

    async def list_models(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        return web.Response(
            body=self._models_body, content_type=JSON, headers={"x-request-id": _request_id()}
        )

    async def get_model(self, request: web.Request) -> web.Response:
        if (denied := self._check_auth(request)) is not None:
            return denied
        model_id = request.match_info["model_id"]
        if model_id not in self._model_ids:
            message = f"The model '{model_id}' does not exist"
            return self._error(error_for_status(404, message), _request_id())
        return _json_response(_model_object(model_id))

    async def not_found(self, request: web.Request) -> web.Response:
        message = f"Invalid URL ({request.method} {request.path})"
        return self._error(OpenAIError(404, message, "invalid_request_error"), _request_id())

    # ----- control routes -----------------------------------------------------------------------------

    async def get_faults(self, request: web.Request) -> web.Response:
        return _json_response({"faults": [f.to_json() for f in self.faults.queued()]})

    async def post_faults(self, request: web.Request) -> web.Response:
        try:
            faults = parse_fault_list(jsonutil.loads(await request.read()))
        except (FaultSpecError, jsonutil.JSONDecodeError) as exc:
            return self._error(OpenAIError(400, f"invalid fault list: {exc}", "invalid_request_error"), "")
        return _json_response({"queued": self.faults.queue(faults)})

    async def delete_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return _json_response({"queued": 0})

    async def get_requests(self, request: web.Request) -> web.Response:
        return _json_response(self.recorder.entries())

    async def delete_requests(self, request: web.Request) -> web.Response:
        self.recorder.clear()
        return _json_response({"recorded": 0})

    async def reset(self, request: web.Request) -> web.Response:
        self.faults.clear()
        self.recorder.clear()
        self.limiter.reset()
        return _json_response({"reset": True})

    # ----- chat ---------------------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        headers = _lower_headers(request)
        try:
            body: Any = jsonutil.loads(raw)
        except jsonutil.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        entry = self.recorder.record(
            method=request.method, path=request.path, query=request.query, headers=headers, body=body
        )
        request_id = _request_id()
        if (denied := self._check_auth(request)) is not None:
            return denied
        if (invalid := self._validate(body)) is not None:
            return self._error(invalid, request_id)
        reply = plan_reply(body, self.config, headers)
        try:
            own_fault = parse_fault(reply.knobs.fault) if reply.knobs.fault else None
        except FaultSpecError as exc:
            return self._error(
                OpenAIError(400, f"invalid mock fault: {exc}", "invalid_request_error"), request_id
            )
        fault = self.faults.choose(own_fault)
        entry["fault"] = None if fault is None else fault.kind
        stream = body.get("stream") is True

        latency = reply.knobs.latency
        if fault is not None and (
            fault.kind not in _DELIVERY_FAULTS or (fault.kind == "error_chunk" and not stream)
        ):
            # Error faults and hangs never reach the account limits: the request is not served.
            if latency > 0:
                await asyncio.sleep(latency)
            if fault.kind == "hang":
                return await self._hang(request)
            return self._fault_error(fault, reply, request_id)
        decision = self.limiter.acquire(reply.total_tokens)
        if not decision.allowed:
            # Answered at once, as a gateway rejects over-limit requests before any model work.
            return self._limited(decision, reply.total_tokens, request_id)
        if fault is not None and fault.kind == "slow":
            latency += fault.delay
        if latency > 0:
            await asyncio.sleep(latency)

        meta = ResponseMeta(
            completion_id="chatcmpl-" + os.urandom(12).hex(),
            created=int(time.time()),
            model=str(body.get("model")),
            include_usage=_include_usage(body),
            echo_stop_reason=self.config.echo_stop_reason,
        )
        response_headers = {"x-request-id": request_id, **decision.headers()}
        if stream:
            return await self._stream(request, reply, meta, response_headers, fault)
        return await self._complete(request, reply, meta, response_headers, fault)

    async def _complete(
        self,
        request: web.Request,
        reply: Reply,
        meta: ResponseMeta,
        headers: dict[str, str],
        fault: Fault | None,
    ) -> web.StreamResponse:
        payload = completion_body(reply, meta)
        kind = None if fault is None else fault.kind
        if kind == "malformed":
            payload = payload[: len(payload) // 2]
        if kind != "cut":
            return web.Response(body=payload, content_type=JSON, headers=headers)
        response = web.StreamResponse(headers={**headers, "content-type": JSON})
        response.content_length = len(payload)
        await response.prepare(request)
        await response.write(payload[: len(payload) // 2])
        _close(request)
        return response

    async def _stream(
        self,
        request: web.Request,
        reply: Reply,
        meta: ResponseMeta,
        headers: dict[str, str],
        fault: Fault | None,
    ) -> web.StreamResponse:
        frames = stream_frames(reply, meta)
        end_cleanly = True
        if fault is not None and fault.kind in ("cut", "malformed", "error_chunk"):
            # The fault lands after `after_chunks` chunks but never after the final [DONE].
            at = min(fault.after_chunks, len(frames) - 1)
            if fault.kind == "cut":
                frames, end_cleanly = frames[:at], False
            elif fault.kind == "malformed":
                frames.insert(at, malformed_frame(meta))
            else:
                error = error_for_status(500, fault.message)
                frames = [*frames[:at], error_frame(error.body("openai"))]
        response = web.StreamResponse(
            headers={**headers, "content-type": EVENT_STREAM, "cache-control": "no-cache"}
        )
        await response.prepare(request)
        pause = reply.knobs.chunk_delay
        try:
            if pause <= 0:
                # One write: the fastest upstream possible; SSE parsers must cope with many events per read.
                await response.write(b"".join(frames))
            else:
                for index, frame in enumerate(frames):
                    if index:
                        await asyncio.sleep(pause)
                    await response.write(frame)
            if not end_cleanly:
                _close(request)
                return response
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away; nothing left to tell it
        return response

    async def _hang(self, request: web.Request) -> web.StreamResponse:
        """Wait, answering nothing, until the client closes the connection."""
        # aiohttp signals a lost connection to a handler only by cancelling it, and only when the server
        # runs with handler_cancellation; polling the transport works under any runner.
        while (transport := request.transport) is not None and not transport.is_closing():  # noqa: ASYNC110
            await asyncio.sleep(_HANG_POLL_SECONDS)
        return web.Response(status=499)  # never delivered: the connection is gone

    # ----- helpers ------------------------------------------------------------------------------------

    def _check_auth(self, request: web.Request) -> web.Response | None:
        expected = self.config.api_key
        if expected is None:
            return None
        authorization = request.headers.get("authorization", "")
        if authorization == f"Bearer {expected}" or request.headers.get("api-key") == expected:
            return None
        return self._error(error_for_status(401), _request_id())

    def _validate(self, body: Any) -> OpenAIError | None:
        if not isinstance(body, Mapping):
            return OpenAIError(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        if not isinstance(body.get("model"), str) or not body["model"]:
            return OpenAIError(400, "you must provide a model parameter", "invalid_request_error", "model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return OpenAIError(
                400, "Invalid 'messages': empty array or not an array.", "invalid_request_error", "messages"
            )
        if self.config.strict_models and body["model"] not in self._model_ids:
            message = f"The model `{body['model']}` does not exist or you do not have access to it."
            return OpenAIError(404, message, "invalid_request_error", None, "model_not_found")
        return None

    def _error(
        self, error: OpenAIError, request_id: str, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        all_headers = {"x-request-id": request_id or _request_id(), **(headers or {})}
        return web.Response(
            body=error.body(self.config.error_shape),
            status=error.status,
            content_type=JSON,
            headers=all_headers,
        )

    def _fault_error(self, fault: Fault, reply: Reply, request_id: str) -> web.Response:
        error = error_for_fault(fault, prompt_tokens=reply.prompt_tokens)
        headers: dict[str, str] = {}
        if error.status == 429:
            wait = fault.retry_after if fault.retry_after is not None else self.config.limit_window
            headers.update(_exhausted(self.config, wait).headers())
            if fault.retry_after is not None:
                headers.update(retry_after_headers(fault.retry_after))
        return self._error(error, request_id, headers)

    def _limited(self, decision: LimitDecision, tokens: int, request_id: str) -> web.Response:
        exceeded = decision.exceeded or "requests"
        limit = decision.limit_requests if exceeded == "requests" else decision.limit_tokens
        used = limit - (decision.remaining_requests if exceeded == "requests" else decision.remaining_tokens)
        error = rate_limit_error(
            exceeded, limit, used, 1 if exceeded == "requests" else tokens, decision.retry_after
        )
        headers = {**decision.headers(), **retry_after_headers(decision.retry_after)}
        return self._error(error, request_id, headers)


def _exhausted(config: MockConfig, reset: float = 1.0) -> LimitDecision:
    """Rate-limit figures for a scripted 429: nothing left until `reset` seconds from now."""
    return LimitDecision(
        allowed=False,
        retry_after=reset,
        limit_requests=config.rpm_limit or config.advertised_rpm,
        limit_tokens=config.tpm_limit or config.advertised_tpm,
        remaining_requests=0,
        remaining_tokens=0,
        reset_requests=reset,
        reset_tokens=reset,
    )


def _include_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def _close(request: web.Request) -> None:
    """Close the connection under a response that is not finished: the client sees a truncated body."""
    transport = request.transport
    if transport is not None:
        transport.close()


MOCK_UPSTREAM = web.AppKey("mock_upstream", MockUpstream)


def create_mock_app(config: MockConfig | None = None) -> web.Application:
    """An aiohttp application serving the mock upstream; its state is `app[MOCK_UPSTREAM]`."""
    mock = MockUpstream(config or MockConfig())
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[MOCK_UPSTREAM] = mock
    router = app.router
    router.add_post("/v1/chat/completions", mock.chat)
    router.add_get("/v1/models", mock.list_models)
    router.add_get("/v1/models/{model_id:.+}", mock.get_model)
    router.add_get("/health", mock.health)
    router.add_get("/mock/faults", mock.get_faults)
    router.add_post("/mock/faults", mock.post_faults)
    router.add_delete("/mock/faults", mock.delete_faults)
    router.add_get("/mock/requests", mock.get_requests)
    router.add_delete("/mock/requests", mock.delete_requests)
    router.add_post("/mock/reset", mock.reset)
    router.add_route("*", "/{tail:.*}", mock.not_found)
    return app


__all__ = ["MOCK_UPSTREAM", "MockUpstream", "create_mock_app"]
