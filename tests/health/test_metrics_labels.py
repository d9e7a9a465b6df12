"""The route label MetricsMiddleware gives each request: the template of the route the router
chose (read from the scope, not matched again), the same template when a middleware answered
before the router ran, and one shared label for paths no route knows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.health.metrics import Metrics, MetricsMiddleware


class _Refuse:
    """Answers /refused/... itself, as the gate does with a refusal, before any routing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/refused/"):
            await PlainTextResponse("no", status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _count(metrics: Metrics, route: str, method: str, status: str) -> float:
    value = metrics.registry.get_sample_value(
        "gateway_http_requests_total", {"route": route, "method": method, "status": status})
    return value or 0.0


def test_each_request_is_labelled_by_its_route_template(tmp_path: Path) -> None:
    metrics = Metrics()
    routes = [
        Route("/mail/{folder}", lambda r: Response("ok"), methods=["GET"]),
        Route("/refused/{what}", lambda r: Response("never")),
        Mount("/static", app=StaticFiles(directory=str(tmp_path))),
    ]
    app = Starlette(routes=routes, middleware=[
        Middleware(MetricsMiddleware, metrics=metrics, routes=routes, serve_path=None),
        Middleware(_Refuse)])

    async def visit() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://gateway.test") as client:
            return [(await client.request(method, path)).status_code for method, path in (
                ("GET", "/mail/INBOX"), ("GET", "/mail/Sent%20Items"), ("POST", "/mail/INBOX"),
                ("GET", "/refused/this"), ("GET", "/static/none.css"), ("GET", "/nowhere"))]

    assert asyncio.run(visit()) == [200, 200, 405, 403, 404, 404]
    assert _count(metrics, "/mail/{folder}", "GET", "200") == 2
    # The method is wrong but the route is known: counted under it, not as unmatched.
    assert _count(metrics, "/mail/{folder}", "POST", "405") == 1
    assert _count(metrics, "/refused/{what}", "GET", "403") == 1
    assert _count(metrics, "/static/{path}", "GET", "404") == 1
    assert _count(metrics, "<unmatched>", "GET", "404") == 1
    # No raw path became a label.
    assert "INBOX" not in metrics.render().decode()
