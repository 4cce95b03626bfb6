"""The error classes and the status table derived from them (docs/protocol.md#errors-status-and-type)."""

from __future__ import annotations

import pytest

from ccproxy_asgi.errors import (
    ERROR_CLASS_BY_STATUS,
    STATUS_ALIASES,
    ApiError,
    AuthenticationError,
    BillingError,
    FirstByteTimeoutError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProxyError,
    RateLimitError,
    RequestTimeoutError,
    RequestTooLargeError,
    UpstreamError,
    UpstreamTimeoutError,
    error_class_for_status,
)


def test_the_table_is_every_class_by_its_own_status() -> None:
    assert dict(ERROR_CLASS_BY_STATUS) == {
        400: InvalidRequestError,
        401: AuthenticationError,
        402: BillingError,
        403: PermissionDeniedError,
        404: NotFoundError,
        405: MethodNotAllowedError,
        408: RequestTimeoutError,
        413: RequestTooLargeError,
        429: RateLimitError,
        500: ApiError,
        502: UpstreamError,
        504: UpstreamTimeoutError,  # not FirstByteTimeoutError: a subclass keeps its parent's row
        529: OverloadedError,
    }
    for status, cls in ERROR_CLASS_BY_STATUS.items():
        assert cls.status == status
    assert FirstByteTimeoutError.status == 504


def test_no_error_class_is_missing_from_the_table() -> None:
    pending = list(ProxyError.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__ == "ccproxy_asgi.errors":
            assert issubclass(cls, ERROR_CLASS_BY_STATUS[cls.status]), cls


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, InvalidRequestError),
        (404, NotFoundError),
        (408, RequestTimeoutError),
        (409, ApiError),  # Anthropic has no 409; the SDKs retry it, as they retry a 500
        (418, InvalidRequestError),
        (422, InvalidRequestError),  # a framework's validation error is a malformed request
        (503, OverloadedError),
        (507, ApiError),
        (529, OverloadedError),
        (302, ApiError),
    ],
)
def test_error_class_for_status(status: int, cls: type[ProxyError]) -> None:
    assert error_class_for_status(status) is cls


def test_aliases_are_statuses_no_class_has() -> None:
    assert not set(STATUS_ALIASES) & set(ERROR_CLASS_BY_STATUS)
