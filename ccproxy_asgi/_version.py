"""The package version, in a module of its own so the cores can name it without importing the package's
public face (`ccproxy_asgi/__init__.py` lazily exports the app, which imports every core)."""

__version__ = "0.1.0"
