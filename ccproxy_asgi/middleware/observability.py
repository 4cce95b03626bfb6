"""`ObservabilityRoutes`: `GET /metrics` (Prometheus text), `GET /health` and `GET /health/ready` (JSON).

Two ways to use it:
- as the outermost layer, `ObservabilityRoutes(app, collector=..., health=...)` around the assembled
  pipeline: it answers its own paths and passes everything else (lifespan included) to `app`, so probes
  and scrapes skip auth, rate limits and the access log (inside the correlation layer instead, they
  would get request ids and access-log lines);
- alone, `ObservabilityRoutes(collector=..., health=...)`, mounted anywhere (`Mount("/ops", app=...)`);
  then an unknown path is a 404.

A path set to None is not served (and passes through). Paths are matched below the mount point.
"""

from __future__ import annotations

from typing import ClassVar

from ccproxy_asgi import jsonutil
from ccproxy_asgi.errors import MethodNotAllowedError, NotFoundError
from ccproxy_asgi.observability.collector import MetricsCollector
from ccproxy_asgi.observability.health import HealthMonitor
from ccproxy_asgi.observability.prometheus import CONTENT_TYPE
from ccproxy_asgi.plumbing.pipeline import LayerKind
from ccproxy_asgi.plumbing.responses import send_error
from ccproxy_asgi.plumbing.routes import route_path
from ccproxy_asgi.types import ASGIApp, Receive, Scope, Send

_JSON = b"application/json"
_NO_STORE = {"cache-control": "no-store"}


async def _answer(send: Send, status: int, content_type: bytes, body: bytes, *, head: bool = False) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


class ObservabilityRoutes:
    """See the module docstring. `collector` serves `/metrics`, `health` the two health routes."""

    kind: ClassVar[LayerKind] = LayerKind.OBSERVABILITY_ROUTES

    def __init__(
        self,
        app: ASGIApp | None = None,
        *,
        collector: MetricsCollector | None = None,
        health: HealthMonitor | None = None,
        metrics_path: str | None = "/metrics",
        health_path: str | None = "/health",
        ready_path: str | None = "/health/ready",
    ) -> None:
        self.app = app
        self.collector = collector
        self.health = health
        self._routes: dict[str, str] = {}
        if collector is not None and metrics_path:
            self._routes[metrics_path] = "metrics"
        if health is not None and health_path:
            self._routes[health_path] = "health"
        if health is not None and ready_path:
            self._routes[ready_path] = "ready"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = self._routes.get(route_path(scope)) if scope["type"] == "http" else None
        if kind is None:
            if self.app is not None:
                await self.app(scope, receive, send)
            elif scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            elif scope["type"] == "http":
                await send_error(send, NotFoundError("not found", headers=_NO_STORE), None)
            return
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            await send_error(send, MethodNotAllowedError("use GET", headers=_NO_STORE), None)
            return
        head = method == "HEAD"
        if kind == "metrics":
            assert self.collector is not None
            # Rendered on the event loop: the collector is not thread-safe, and a scrape is a few ms.
            text = self.collector.render_prometheus()
            await _answer(send, 200, CONTENT_TYPE.encode(), text.encode(), head=head)
            return
        assert self.health is not None
        if kind == "health":
            await _answer(send, 200, _JSON, jsonutil.dumps(self.health.liveness()), head=head)
            return
        readiness = await self.health.readiness()
        await _answer(
            send, 200 if readiness.ready else 503, _JSON, jsonutil.dumps(readiness.as_dict()), head=head
        )

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


__all__ = ["ObservabilityRoutes"]
