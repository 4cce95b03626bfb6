"""Anthropic-style ids: shape, alphabet, no repeats, and no per-character system calls."""

from __future__ import annotations

import re
from unittest import mock

from ccproxy_asgi.context import new_request_id
from ccproxy_asgi.ids import random_base62
from ccproxy_asgi.translate.identifiers import new_message_id, new_tool_use_id


def test_shapes() -> None:
    assert re.fullmatch(r"req_[A-Za-z0-9]{24}", new_request_id())
    assert re.fullmatch(r"msg_[A-Za-z0-9]{24}", new_message_id())
    assert re.fullmatch(r"toolu_[A-Za-z0-9]{24}", new_tool_use_id())


def test_ids_do_not_repeat_and_use_the_whole_alphabet() -> None:
    ids = [random_base62(24) for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert len(set("".join(ids))) == 62


def test_one_random_read_per_id() -> None:
    with mock.patch("ccproxy_asgi.ids.os.urandom", wraps=__import__("os").urandom) as urandom:
        new_request_id()
        new_message_id()
    assert urandom.call_count == 2
