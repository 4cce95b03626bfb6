"""Anthropic Messages ⇄ OpenAI Chat Completions, as pure functions and one stream state machine.

No I/O and no ASGI: `translate_request` turns a Messages body into a chat-completions body (refusing a
malformed one with the field's path), `translate_response` turns a completion into a `Message`, and
`StreamTranslator` turns chunks into Anthropic stream events as they arrive. `ModelMapper` and
`ProfileResolver` say which upstream model a request goes to and what that model accepts. Every field of
a request is read through `translate.fields`, by the translation and the token count alike, so both
refuse a malformed request with the same message. The mapping, field by field, is in docs/protocol.md.
"""

from __future__ import annotations

from ccproxy_asgi.translate.identifiers import ToolNameMap
from ccproxy_asgi.translate.models import ModelMapper
from ccproxy_asgi.translate.options import (
    EffortThresholds,
    ModelProfile,
    ProfileResolver,
    TranslationOptions,
    default_profile,
)
from ccproxy_asgi.translate.request import TranslatedRequest, translate_request
from ccproxy_asgi.translate.response import translate_response
from ccproxy_asgi.translate.sse import SSEDecoder, SSEEvent, encode_event
from ccproxy_asgi.translate.stream import StreamTranslator

__all__ = [
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
]
