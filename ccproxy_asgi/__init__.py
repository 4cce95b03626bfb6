"""ccproxy-asgi: composable ASGI layers in front of an Anthropic Messages API endpoint backed by an
OpenAI-compatible upstream."""

__version__ = "0.1.0"
