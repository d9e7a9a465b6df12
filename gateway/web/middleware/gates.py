"""The gateway's request gates, as small pure-ASGI middlewares. ``create_app`` puts them in
order; each answers the request itself when it refuses, and each reads what a path is from
the one path table (``gateway.web.middleware.paths``).

- ``BodyLimitMiddleware``: refuses bodies over ``server.max_body_bytes`` (413).
- ``SessionMiddleware``: loads the session named by the cookie into ``scope["state"]``.
- ``CsrfMiddleware``: every unsafe method needs a same-origin Origin and the session's CSRF
  token (form field, ``X-CSRF-Token`` header, or for multipart forms the query string).
- ``AccessGateMiddleware``: anything not public needs a session, and the access policy
  (failover mode) must admit it.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth import csrf
from gateway.auth.access import AccessPolicy, Admission
from gateway.auth.sessions import SESSION_COOKIE, SessionManager, read_cookie
from gateway.errors import BadRequest, CsrfFailed, GatewayError, NotSignedIn, PayloadTooLarge
from gateway.web.member import sign_in_url
from gateway.web.middleware.paths import rule_for

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# No form of ours has more than a few dozen fields.
MAX_FORM_FIELDS = 1000

ErrorRenderer = Callable[[Scope, GatewayError], Awaitable[Callable[[Receive, Send],
                                                                   Awaitable[None]]]]


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return str(v.decode("latin-1"))
    return None


def bearer(scope: Scope) -> bool:
    """The request carries ``Authorization: Bearer ...`` (the scheme in any case, RFC 9110
    11.1, as ``gateway.auth.apikeys`` reads it)."""
    scheme, _, secret = (_header(scope, b"authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and bool(secret.strip())


class CompressMiddleware:
    """gzip for pages, styles and scripts, which iPads on poor signal feel most. Not for
    attachments (mostly compressed already, and streamed) nor event streams. Pages carry
    their CSRF token masked afresh each time, so compression does not leak it (BREACH)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Level 1, by bench/cpu_per_page.py (2026-12-02): the 30 KB inbox costs 0.25 ms at
        # level 1 (5.7 KB) against 0.55 ms at 6 (4.8 KB), a fifth of the CPU the gateway
        # aims to spend on a page, for 0.9 KB. Under 512 bytes gzip saves under 190 bytes.
        self.gzip = GZipMiddleware(app, minimum_size=512, compresslevel=1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and rule_for(scope["path"]).compress:
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, render_error: ErrorRenderer) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.render_error = render_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            respond = await self.render_error(scope, PayloadTooLarge())
            await respond(receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge()
            return message

        await self.app(scope, counting_receive, send)


class SessionMiddleware:
    def __init__(self, app: ASGIApp, sessions: SessionManager) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            sid = read_cookie(scope.get("headers", []), SESSION_COOKIE)
            state = scope.setdefault("state", {})
            state["session"] = None
            state["ended_session"] = None
            rule = rule_for(scope["path"])
            if sid and rule.loads_session:
                state["session"], ended = await self.sessions.load_or_expired(sid)
                # The ended session's CSRF token and the Origin check still apply.
                if rule.keep_on_expiry and scope["method"] == "POST":
                    state["ended_session"] = ended
        await self.app(scope, receive, send)


class CsrfMiddleware:
    def __init__(self, app: ASGIApp, public_origin: str, render_error: ErrorRenderer) -> None:
        self.app = app
        self.public_origin = public_origin
        self.render_error = render_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        rule = rule_for(scope["path"])
        if rule.csrf_exempt or (rule.bearer_skips_csrf and bearer(scope)):
            await self.app(scope, receive, send)
            return
        if not self._origin_ok(scope):
            await (await self.render_error(scope, CsrfFailed()))(receive, send)
            return
        session = scope.get("state", {}).get("session") or scope.get("state", {}).get(
            "ended_session")
        expected = session.csrf_token if session is not None else None
        ctype = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        supplied = _header(scope, b"x-csrf-token")
        replay: list[Message] = []
        if supplied is None and ctype == "application/x-www-form-urlencoded":
            body = b""
            while True:
                message = await receive()
                replay.append(message)
                if message["type"] != "http.request":
                    break
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
            try:
                values = parse_qs(body.decode("latin-1"),
                                  max_num_fields=MAX_FORM_FIELDS).get("csrf_token")
            except ValueError:
                # Rule: every refusal is a 4xx with a plain page (1,001 fields was a 500).
                await (await self.render_error(scope, BadRequest(
                    "That form has too many fields.")))(receive, send)
                return
            supplied = values[0] if values else None
        elif supplied is None:
            qs = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("csrf_token")
            supplied = qs[0] if qs else None
        if supplied is not None and expected:
            supplied = csrf.unmask(supplied, len(expected))
        if not expected or not supplied or not hmac.compare_digest(expected, supplied):
            await (await self.render_error(scope, CsrfFailed()))(receive, send)
            return

        async def replaying_receive() -> Message:
            if replay:
                return replay.pop(0)
            return await receive()

        await self.app(scope, replaying_receive, send)

    def _origin_ok(self, scope: Scope) -> bool:
        origin = _header(scope, b"origin")
        if origin is not None and origin != "null":
            return origin == self.public_origin
        # Browsers send "Origin: null" for form posts from our pages because of our
        # Referrer-Policy: no-referrer, and some older ones send none. Then Fetch Metadata
        # must not say cross-site; the token check applies either way.
        site = _header(scope, b"sec-fetch-site")
        return site in (None, "same-origin", "none")


class AccessGateMiddleware:
    def __init__(self, app: ASGIApp, policy_source: Callable[[], AccessPolicy],
                 render_error: ErrorRenderer,
                 render_refusal: Callable[[Scope, Admission], Awaitable[Callable[
                     [Receive, Send], Awaitable[None]]]]) -> None:
        self.app = app
        self.policy_source = policy_source
        self.render_error = render_error
        self.render_refusal = render_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = rule_for(scope["path"])
        if rule.public:
            await self.app(scope, receive, send)
            return
        # Routes that authenticate a bearer API key themselves (gateway.web.api): a request
        # to them without a cookie carries no session to gate, so the route answers it (401
        # without a valid key).
        if rule.key_authenticated and (bearer(scope) or _header(scope, b"cookie") is None):
            # An API call: its key decides, whatever cookie came along (a valid key with a
            # stale cookie was refused).
            await self.app(scope, receive, send)
            return
        session = scope.get("state", {}).get("session")
        if session is None and scope.get("state", {}).get("ended_session") is not None:
            await self.app(scope, receive, send)    # the route only keeps the message
            return
        if session is None:
            await self._to_sign_in(scope, rule.sign_in_redirect, receive, send)
            return
        admission = await self.policy_source().admit(session, scope["path"])
        if not admission.admitted:
            respond = await self.render_refusal(scope, admission)
            await respond(receive, send)
            return
        await self.app(scope, receive, send)

    async def _to_sign_in(self, scope: Scope, redirect: bool, receive: Receive,
                          send: Send) -> None:
        if scope["path"] == "/" and not scope.get("query_string") and scope["method"] in (
                "GET", "HEAD"):
            # The address members are given: show the sign-in page itself (one round trip
            # less on a slow line than a redirect to it).
            from gateway.web.render import render
            await render(scope, "signin.html", {"next": "/", "start_url": "/auth/start?next=%2F"}
                         )(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD") and redirect:
            target = scope["path"]
            if scope.get("query_string"):
                target += "?" + scope["query_string"].decode("latin-1")
            location = sign_in_url(target)
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", location.encode("latin-1")),
                                    (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await (await self.render_error(scope, NotSignedIn()))(receive, send)
