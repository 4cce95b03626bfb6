"""The pure-ASGI layers. Each works alone, on one route of any ASGI app, or stacked by `create_app`."""

from ccproxy_asgi.middleware.correlation import CorrelationMiddleware, is_valid_request_id
from ccproxy_asgi.middleware.error_normalization import ErrorNormalizationMiddleware

__all__ = ["CorrelationMiddleware", "ErrorNormalizationMiddleware", "is_valid_request_id"]
