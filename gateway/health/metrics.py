"""Prometheus metrics: one registry per app (no globals, so several apps can live in one
process), the ASGI middleware that counts requests by route template, and the counters and
gauges other modules feed.

What other modules call (all cheap, safe from any thread):

    m = metrics_of(app)                          # or app_state(app).metrics
    with m.upstream_call("imap"): ...            # latency histogram + errors per upstream
    m.connection_opened("imap"); m.imap_open.inc() / .dec()
    m.send_result(ok=True)                       # sends and send failures
    m.outbox_length.set(n); m.sessions.set(n)

``MetricsMiddleware`` also answers ``GET /metrics`` itself when the metrics are served on the
main port, and only to callers the ``allow`` predicate admits (see ``gateway.web.health``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import StoreUnavailable, UpstreamError
from gateway.health.monitor import CheckResult

MODES = ("standby", "active", "drill")
_STATUS_VALUE = {"pass": 0, "warn": 1, "fail": 2}


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter("gateway_http_requests_total", "HTTP requests by route "
                                "template, method and status.", ["route", "method", "status"],
                                registry=r)
        self.latency = Histogram("gateway_http_request_duration_seconds", "HTTP request "
                                 "latency by route template.", ["route"], registry=r)
        self.upstream_latency = Histogram("gateway_upstream_call_duration_seconds",
                                          "Latency of calls to an upstream.", ["upstream"],
                                          registry=r)
        self.upstream_errors = Counter("gateway_upstream_errors_total",
                                       "Failed calls to an upstream.", ["upstream"], registry=r)
        self.connections = Counter("gateway_upstream_connections_total",
                                   "Connections opened to an upstream (probes included).",
                                   ["upstream"], registry=r)
        self.sessions = Gauge("gateway_active_sessions", "Signed-in sessions.", registry=r)
        self.imap_open = Gauge("gateway_imap_connections_open", "Open IMAP connections.",
                               registry=r)
        self.failover_mode = Gauge("gateway_failover_mode", "1 for the current failover mode.",
                                   ["mode"], registry=r)
        self.sends = Counter("gateway_mail_sends_total", "Messages sent.", registry=r)
        self.send_failures = Counter("gateway_mail_send_failures_total",
                                     "Messages the SMTP server refused or could not take.",
                                     registry=r)
        self.outbox_length = Gauge("gateway_outbox_length", "Messages waiting in the outbox.",
                                   registry=r)
        self.check_status = Gauge("gateway_health_check_status",
                                  "Latest health check: 0 pass, 1 warn, 2 fail.", ["check"],
                                  registry=r)
        self.notifications_failed = Counter(
            "gateway_notifications_failed_total",
            "Notifications (webhook or email) given up after every retry.", registry=r)
        self.history_dropped = Gauge("gateway_health_history_dropped",
                                     "Probe results dropped before reaching the store.",
                                     registry=r)
        # Called with the upstream's name when a member's call to it fails upstream-side
        # (the health monitor re-probes it at once).
        self.on_upstream_failure: list[Callable[[str], object]] = []
        self.check_value = Gauge("gateway_health_check_observed",
                                 "Latest observed value of a numeric health check.",
                                 ["check", "unit"], registry=r)

    @contextlib.contextmanager
    def upstream_call(self, upstream: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            self.upstream_errors.labels(upstream).inc()
            if isinstance(exc, UpstreamError) and not isinstance(exc, StoreUnavailable):
                for hook in self.on_upstream_failure:
                    hook(upstream)
            raise
        finally:
            self.upstream_latency.labels(upstream).observe(time.perf_counter() - started)

    def connection_opened(self, upstream: str) -> None:
        self.connections.labels(upstream).inc()

    def send_result(self, ok: bool) -> None:
        (self.sends if ok else self.send_failures).inc()

    def watch_mode(self, source: Callable[[], str]) -> None:
        """Read the failover mode from ``source`` at every scrape."""
        def reader(mode: str) -> Callable[[], float]:
            return lambda: float(source() == mode)

        for m in MODES:
            self.failover_mode.labels(m).set_function(reader(m))

    def record_check(self, result: CheckResult) -> None:
        """A ``HealthMonitor`` listener."""
        self.check_status.labels(result.key).set(_STATUS_VALUE[result.status])
        if isinstance(result.observed_value, (int, float)):
            self.check_value.labels(result.key, result.observed_unit or "").set(
                result.observed_value)
        if result.key == "sessions:count" and isinstance(result.observed_value, int):
            self.sessions.set(result.observed_value)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def serve_port(self, host: str, port: int) -> Callable[[], None]:
        """Serve /metrics on its own port (``metrics.port``; 0 = not at all); returns the
        function that stops it."""
        if not port:
            return lambda: None
        server, thread = start_http_server(port, addr=host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(5)
        return stop


def metrics_of(app: Any) -> Metrics:
    m: Metrics = app.state.gateway.metrics
    return m


def _template(route: BaseRoute) -> str:
    path = getattr(route, "path", None)
    if path is not None and hasattr(route, "routes"):  # a Mount
        return f"{path}/{{path}}"
    return str(path) if path is not None else "<unnamed>"


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The matching route's path template (``/mail/{folder}``), never the raw path, so that
    labels stay few; unmatched paths share one label."""
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return _template(route)
    return "<unmatched>"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute],
                 serve_path: str | None = "/metrics",
                 allow: Callable[[Scope], bool] = lambda scope: False) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.serve_path = serve_path
        self.allow = allow
        # By identity: Starlette's routes define __eq__ and so cannot be hashed.
        self._templates = {id(route): _template(route) for route in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.serve_path and scope["path"] == self.serve_path and scope["method"] in (
                "GET", "HEAD"):
            await self._serve(scope, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # The router leaves the route it chose in the scope (Starlette's "route"): no
            # second walk over every route's pattern. A request answered before routing (a
            # refusal by the gate) has none and is matched here.
            chosen = scope.get("route")
            route = (self._templates.get(id(chosen)) if chosen is not None else None) \
                or route_template(self.routes, scope)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)

    async def _serve(self, scope: Scope, send: Send) -> None:
        if not self.allow(scope):
            body, status, ctype = b"not allowed\n", 403, "text/plain; charset=utf-8"
        else:
            body, status, ctype = self.metrics.render(), 200, CONTENT_TYPE_LATEST
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype.encode()),
                                (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body",
                    "body": body if scope["method"] == "GET" else b""})
