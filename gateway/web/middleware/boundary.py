"""The error boundary: the one place an exception that escaped the routes and the inner
middlewares becomes a plain page (or JSON), inside the security headers."""

from __future__ import annotations

import logging
import traceback

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import GatewayError
from gateway.web.render import error_response

log = logging.getLogger("gateway.web")


class ErrorBoundaryMiddleware:
    """Catches whatever escaped the routes and the inner middlewares, inside the security
    headers, so even a 500 page carries them. Logs the exception type and where, not its
    arguments (which could hold mail content)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except GatewayError as err:
            if started:
                raise
            await error_response(scope, err)(scope, receive, send)
        except Exception as exc:
            frames = traceback.extract_tb(exc.__traceback__)
            where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
            log.error("unhandled %s at %s on %s %s", type(exc).__name__, where,
                      scope.get("method"), scope.get("path"))
            if started:
                raise
            await error_response(scope, GatewayError())(scope, receive, send)
