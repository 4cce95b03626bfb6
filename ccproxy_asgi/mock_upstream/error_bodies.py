"""Error payloads as OpenAI (and, on request, vLLM) write them."""

from __future__ import annotations

from dataclasses import dataclass

from ccproxy_asgi import jsonutil
from ccproxy_asgi.mock_upstream.config import ErrorShape
from ccproxy_asgi.mock_upstream.faults import Fault

CONTEXT_WINDOW = 128_000

# status → (type, code, param, message), after the payloads OpenAI's error-code guide shows.
_BY_STATUS: dict[int, tuple[str, str | None, str | None, str]] = {
    400: ("invalid_request_error", None, None, "Mock upstream: bad request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        None,
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    ),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        None,
        "Country, region, or territory not supported",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        None,
        "The model does not exist or you do not have access to it.",
    ),
    408: ("timeout", None, None, "Request timed out."),
    409: (
        "invalid_request_error",
        "conflict",
        None,
        "Conflict with the current state of the target resource.",
    ),
    413: ("invalid_request_error", "request_too_large", None, "Request too large."),
    422: ("invalid_request_error", None, None, "Unprocessable entity."),
    429: (
        "requests",
        "rate_limit_exceeded",
        None,
        "Rate limit reached for requests. Please try again later.",
    ),
    500: (
        "server_error",
        None,
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    502: ("server_error", "bad_gateway", None, "Bad gateway."),
    503: (
        "service_unavailable_error",
        "server_is_overloaded",
        None,
        "The server is overloaded or not ready yet.",
    ),
    504: ("server_error", "timeout", None, "Gateway timeout."),
}


@dataclass(frozen=True, slots=True)
class OpenAIError:
    """One error response: status and the four envelope fields."""

    status: int
    message: str
    type: str
    param: str | None = None
    code: str | None = None

    def body(self, shape: ErrorShape = "openai") -> bytes:
        """The JSON body: `{"error": {...}}`, or vLLM's top-level `{"object": "error", ...}`."""
        if shape == "vllm":
            return jsonutil.dumps(
                {
                    "object": "error",
                    "message": self.message,
                    "type": self.type,
                    "param": self.param,
                    "code": self.status,
                }
            )
        return jsonutil.dumps(
            {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        )


def error_for_status(status: int, message: str | None = None) -> OpenAIError:
    """A generic error of this HTTP status."""
    kind, code, param, default = _BY_STATUS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, None, f"Error {status}.")
    )
    return OpenAIError(status, message or default, kind, param, code)


def error_for_fault(fault: Fault, *, prompt_tokens: int = 0) -> OpenAIError:
    """The error response an error-kind fault stands for."""
    if fault.kind == "quota":
        return OpenAIError(
            429,
            fault.message or "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            None,
            "insufficient_quota",
        )
    if fault.kind == "context_length":
        tokens = max(prompt_tokens, CONTEXT_WINDOW + 1)
        return OpenAIError(
            400,
            fault.message
            or f"This model's maximum context length is {CONTEXT_WINDOW} tokens. However, your messages "
            f"resulted in {tokens} tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "messages",
            "context_length_exceeded",
        )
    return error_for_status(fault.status or 500, fault.message)


def rate_limit_error(exceeded: str, limit: int, used: int, requested: int, retry_after: float) -> OpenAIError:
    """The 429 of the simulated account limits, worded like OpenAI's."""
    unit = "requests per min (RPM)" if exceeded == "requests" else "tokens per min (TPM)"
    return OpenAIError(
        429,
        f"Rate limit reached in organization org-mock on {unit}: Limit {limit}, Used {used}, "
        f"Requested {requested}. Please try again in {retry_after:.3f}s.",
        exceeded,
        None,
        "rate_limit_exceeded",
    )


__all__ = ["CONTEXT_WINDOW", "OpenAIError", "error_for_fault", "error_for_status", "rate_limit_error"]
