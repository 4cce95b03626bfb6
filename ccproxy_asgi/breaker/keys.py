"""Breaker keys: what one breaker state is kept per (an upstream, or an upstream and one of its models)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def upstream_key(base_url: str, model: str | None = None) -> str:
    """The breaker key of an upstream (and optionally one of its models): the base URL without
    credentials, query or fragment, so it can be logged and shown on a health page."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return base if model is None else f"{base}|{model}"


__all__ = ["upstream_key"]
