"""Security headers on every response, and the per-request CSP nonce.

The page CSP allows only the gateway's own origin and nonce-carrying scripts and styles:
no ``unsafe-inline`` script, nothing external. ``form-action`` also names the Entra origin
because sign-out is a POST answered by a redirect to Entra's end-session endpoint, and
browsers apply ``form-action`` to that redirect."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.web.middleware.paths import PathKind, rule_for


def page_csp(nonce: str, entra_origin: str) -> str:
    form_action = "'self'" + (f" {entra_origin}" if entra_origin else "")
    return "; ".join([
        "default-src 'none'",
        f"script-src 'self' 'nonce-{nonce}'",
        f"style-src 'self' 'nonce-{nonce}'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "frame-src 'self'",
        "manifest-src 'self'",
        f"form-action {form_action}",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ])


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, entra_authority: str = "") -> None:
        self.app = app
        parts = urlsplit(entra_authority)
        self.entra_origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        csp = page_csp(nonce, self.entra_origin)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # A route that serves untrusted content (a mail frame, an attachment) sets its
                # own, stricter CSP; keep it.
                if "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = csp
                headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                # The mail frame may be framed by our own page and says so itself
                # (frame-ancestors 'self', SAMEORIGIN); everything else: DENY.
                headers.setdefault("X-Frame-Options", "DENY")
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                headers["Cross-Origin-Resource-Policy"] = "same-origin"
                headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
                if rule_for(scope["path"]).kind is PathKind.STATIC:
                    # Static URLs carry a content hash (?v=): cache them for a year.
                    versioned = b"v=" in scope.get("query_string", b"")
                    headers["Cache-Control"] = ("public, max-age=31536000, immutable"
                                                if versioned else "public, max-age=300")
                else:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)
