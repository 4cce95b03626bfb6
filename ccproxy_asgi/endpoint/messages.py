"""`POST /v1/messages`: translate, call the provider, translate back — whole or as a stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ccproxy_asgi import jsonutil
from ccproxy_asgi.context import RequestContext, Usage
from ccproxy_asgi.endpoint.disconnect import run_until_disconnect
from ccproxy_asgi.endpoint.sse_writer import SSEWriter
from ccproxy_asgi.errors import ProxyError, UpstreamError, sse_error_event
from ccproxy_asgi.plumbing.responses import send_json
from ccproxy_asgi.provider.base import ChatProvider
from ccproxy_asgi.translate import fields
from ccproxy_asgi.translate.models import ModelMapper
from ccproxy_asgi.translate.options import ModelProfile, TranslationOptions
from ccproxy_asgi.translate.request import TranslatedRequest, translate_request
from ccproxy_asgi.translate.response import translate_response
from ccproxy_asgi.translate.stream import StreamTranslator
from ccproxy_asgi.types import Receive, Send

logger = logging.getLogger("ccproxy_asgi.endpoint")

# Translation is Python code at about 60 us per KB of small messages: 1 MiB of them would hold the event
# loop, and every other request on it, for some 60 ms, 32 MiB for seconds. Past either bound it runs in
# a worker thread, which hands the interpreter back to the loop every few milliseconds; below them the
# thread round trip (about 0.1 ms) costs more than it saves. Parsing the body cannot be helped that way:
# orjson holds the interpreter lock for the whole parse (about 10 ns a byte) wherever it runs.
OFFLOAD_BODY_BYTES = 1024 * 1024
OFFLOAD_MESSAGES = 2048


def _usage_into_context(ctx: RequestContext, usage: dict[str, Any] | None) -> None:
    if not usage:
        return
    ctx.usage = Usage(
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        cache_read_input_tokens=int(usage.get("cache_read_input_tokens") or 0),
        cache_creation_input_tokens=int(usage.get("cache_creation_input_tokens") or 0),
    )


class MessagesHandler:
    """Serves one Messages request with the configured provider and translation."""

    def __init__(
        self,
        *,
        provider: ChatProvider,
        models: ModelMapper,
        profile_for: Callable[[str], ModelProfile],
        options: TranslationOptions,
        ping_interval: float,
    ) -> None:
        self._provider = provider
        self._models = models
        self._profile_for = profile_for
        self._options = options
        self._ping_interval = ping_interval

    def translate(self, body: dict[str, Any], ctx: RequestContext) -> TranslatedRequest:
        model = fields.read_model(body)
        upstream_model = self._models.resolve(model)
        ctx.requested_model = model
        ctx.upstream_model = upstream_model
        translated = translate_request(
            body,
            upstream_model=upstream_model,
            profile=self._profile_for(upstream_model),
            options=self._options,
        )
        for warning in translated.warnings:
            logger.debug("%s", warning)
        ctx.stream = translated.stream
        return translated

    async def translate_off_loop(self, body: dict[str, Any], ctx: RequestContext) -> TranslatedRequest:
        """`translate`, in a worker thread when the request is large (see `OFFLOAD_BODY_BYTES`)."""
        messages = body.get("messages")
        if (ctx.body is not None and len(ctx.body) > OFFLOAD_BODY_BYTES) or (
            isinstance(messages, list) and len(messages) > OFFLOAD_MESSAGES
        ):
            return await asyncio.to_thread(self.translate, body, ctx)
        return self.translate(body, ctx)

    async def handle(
        self, body: dict[str, Any], ctx: RequestContext, receive: Receive, send: Send, client_key: str | None
    ) -> None:
        translated = await self.translate_off_loop(body, ctx)
        if translated.stream:
            await run_until_disconnect(self._stream(translated, ctx, send, client_key), receive)
        else:
            completion = await run_until_disconnect(
                self._provider.complete(translated.payload, ctx, client_key=client_key), receive
            )
            message = translate_response(
                completion,
                requested_model=translated.requested_model,
                tool_names=translated.tool_names,
                stop_sequences=translated.stop_sequences,
            )
            _usage_into_context(ctx, message.get("usage"))
            ctx.stop_reason = message.get("stop_reason")
            ctx.response_started = True
            await send_json(send, 200, jsonutil.dumps(message), request_id=ctx.request_id)

    async def _stream(
        self, translated: TranslatedRequest, ctx: RequestContext, send: Send, client_key: str | None
    ) -> None:
        async with self._provider.stream(translated.payload, ctx, client_key=client_key) as upstream:
            # The 200 goes out only now that the upstream answered 200: earlier failures stayed real
            # HTTP errors that the client SDK can retry.
            translator = StreamTranslator(
                requested_model=translated.requested_model,
                tool_names=translated.tool_names,
                stop_sequences=translated.stop_sequences,
                input_tokens_estimate=ctx.estimated_input_tokens or 0,
            )
            writer = SSEWriter(send, ping_interval=self._ping_interval)
            headers = [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),
            ]
            if ctx.request_id:
                headers.append((b"request-id", ctx.request_id.encode("latin-1")))
            ctx.response_started = True
            await writer.start(headers)
            final = b""
            try:
                await writer.write(translator.start())
                chunks = upstream.aiter_bytes()
                while not translator.done:
                    try:
                        raw = await anext(chunks)
                    except StopAsyncIteration:
                        events = translator.feed_eof()
                        if events:
                            await writer.write(events)
                        break
                    except ProxyError as exc:
                        if not translator.saw_finish:
                            raise
                        # The answer was complete (finish_reason arrived); only the end of the body,
                        # `[DONE]` and perhaps the usage chunk, was lost: close it as a normal end.
                        logger.info("upstream connection lost after finish_reason: %s", exc.message)
                        break
                    events = translator.feed_sse_bytes(raw)
                    if events:
                        await writer.write(events)
                if not translator.done and not translator.ended_cleanly:
                    raise UpstreamError("upstream stream ended before the response was complete")
                final = translator.finish()
                _usage_into_context(ctx, translator.usage)
                ctx.stop_reason = translator.stop_reason
            except ProxyError as exc:
                # Past the 200 an error can only be an SSE `error` event; the stream then ends.
                logger.warning("stream failed after start: %s", exc.message)
                final = sse_error_event(exc.error_type, exc.message, ctx.request_id)
                ctx.stream_error = exc.error_type
            except BaseException:
                await writer.abort()  # cancelled (client gone) or a bug: nothing more goes out
                raise
            await writer.close(final)


__all__ = ["MessagesHandler"]
