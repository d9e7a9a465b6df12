"""``create_app``: the only place that knows the middleware order and wires the services.

Middleware, outermost first: security headers -> error boundary -> body limit -> session ->
CSRF -> access gate -> routes. Long-lived objects (store, msal http client, key ring, purge
loop) are built in the lifespan and handed to routes as typed ``Services`` on app.state.
Seams for tests and the dev stack are keyword arguments, never patches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.auth.access import AccessPolicy, AdmitAll
from gateway.auth.entra import Entra
from gateway.auth.sessions import SESSION_COOKIE, SessionManager, clear_cookie_header
from gateway.config import Settings
from gateway.crypto import KeyRing
from gateway.errors import GatewayError, MethodNotAllowed, NotFound, NotSignedIn
from gateway.mail.imap import ImapTarget, ssl_context
from gateway.services import Services
from gateway.store.base import Store
from gateway.store.sqlite import SqliteStore
from gateway.web import auth as auth_routes
from gateway.web import health as health_routes
from gateway.web import home as home_routes
from gateway.web.middleware import (
    AccessGateMiddleware,
    BodyLimitMiddleware,
    CsrfMiddleware,
    SessionMiddleware,
)
from gateway.web.render import ErrorBoundaryMiddleware, error_response, render_error, render_refusal
from gateway.web.security import SecurityHeadersMiddleware

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "web" / "static"
PURGE_INTERVAL = 300.0


def _keyring(settings: Settings) -> KeyRing:
    keys = settings.crypto_keys
    if not keys:
        # Development only (production refuses to start without keys): an ephemeral key,
        # so token caches do not survive a restart and members simply sign in again.
        import os
        log.warning("crypto.keys is empty: using a temporary key (development only)")
        keys = [os.urandom(32)]
    return KeyRing(keys)


def create_app(settings: Settings, *, store: Store | None = None,
               clock: Callable[[], float] = time.time, entra_http: Any = None,
               policy: AccessPolicy | None = None) -> Starlette:
    keyring = _keyring(settings)
    the_store: Store = store or SqliteStore(settings.get("store.sqlite_path"))
    sessions = SessionManager(the_store, settings, clock)
    entra = Entra(settings, the_store, keyring, http_client=entra_http, clock=clock)
    imap = ImapTarget(settings.get("imap.host"), settings.get("imap.port"),
                      ssl_context(settings.get("imap.ca_file")),
                      settings.get("imap.timeout_seconds"))
    svc = Services(settings=settings, store=the_store, sessions=sessions, entra=entra,
                   keyring=keyring, imap=imap, clock=clock, policy=policy or AdmitAll())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await the_store.open()
        app.state.ready = True

        async def purge_loop() -> None:
            while True:
                await asyncio.sleep(PURGE_INTERVAL)
                with contextlib.suppress(GatewayError):
                    await sessions.purge()
                    await the_store.purge_flows(clock() - auth_routes.FLOW_LIFETIME)

        task = asyncio.create_task(purge_loop())
        try:
            yield
        finally:
            app.state.ready = False
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await the_store.close()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        err: GatewayError
        if exc.status_code == 404:
            err = NotFound()
        elif exc.status_code == 405:
            err = MethodNotAllowed()
        else:
            err = GatewayError()
            err.status = exc.status_code
        return error_response(request.scope, err)

    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        session = request.scope.get("state", {}).get("session")
        if isinstance(exc, NotSignedIn) and session is not None:
            # The member's tokens can no longer be refreshed: end this session and send them
            # through sign-in, back to the page they wanted.
            await sessions.end(session)
            request.scope["state"]["session"] = None
            if request.method == "GET" and not request.url.path.startswith("/api/"):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response = RedirectResponse("/auth/signin?next=" + quote(target, safe=""), 303)
                response.headers.append("Set-Cookie", clear_cookie_header(SESSION_COOKIE))
                return response
        return error_response(request.scope, exc)

    routes = [
        *health_routes.routes,
        *auth_routes.routes,
        *home_routes.routes,
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        Route("/favicon.ico", lambda r: Response(status_code=204)),
    ]
    middleware = [
        Middleware(SecurityHeadersMiddleware, entra_authority=settings.get("entra.authority")),
        Middleware(ErrorBoundaryMiddleware),
        Middleware(BodyLimitMiddleware, max_bytes=settings.get("server.max_body_bytes"),
                   render_error=render_error),
        Middleware(SessionMiddleware, sessions=sessions),
        Middleware(CsrfMiddleware, public_origin=settings.public_url, render_error=render_error),
        Middleware(AccessGateMiddleware, policy_source=lambda: svc.policy,
                   render_error=render_error, render_refusal=render_refusal),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error, GatewayError: gateway_error})
    app.state.services = svc
    app.state.ready = False
    return app
