"""The gateway's request gates and compression, as pure-ASGI middlewares that read what a
path is from the one path table (``gateway.web.middleware.paths``).

- ``GateMiddleware``: body limit, session, CSRF and access, four steps of one layer; each
  step answers the request itself when it refuses.
- ``CompressMiddleware``: gzip for pages, styles and scripts.
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
from gateway.web.middleware.paths import PathRule, rule_for

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


class GateMiddleware:
    """The four request gates as one layer (one ASGI hop and one path-table lookup per
    request, instead of four), each a step that either answers the request itself or lets
    it on, in this order:

    1. body limit: a body over ``server.max_body_bytes`` is refused (413), by its
       Content-Length or, without one, as it arrives;
    2. session: the session named by the cookie is loaded into ``scope["state"]``, and for
       a path that keeps a form after expiry, the ended one too;
    3. CSRF: an unsafe method needs a same-origin Origin and the session's CSRF token (form
       field, ``X-CSRF-Token`` header, or for multipart forms the query string);
    4. access: anything not public needs a session, and the access policy (failover mode)
       must admit it.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, sessions: SessionManager,
                 public_origin: str, policy_source: Callable[[], AccessPolicy],
                 render_error: ErrorRenderer,
                 render_refusal: Callable[[Scope, Admission], Awaitable[Callable[
                     [Receive, Send], Awaitable[None]]]]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.sessions = sessions
        self.public_origin = public_origin
        self.policy_source = policy_source
        self.render_error = render_error
        self.render_refusal = render_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = rule_for(scope["path"])
        limited = await self._limit(scope, receive, send)
        if limited is None:
            return
        await self._load_session(scope, rule)
        checked = await self._csrf(scope, rule, limited, send)
        if checked is None:
            return
        if await self._admit(scope, rule, checked, send):
            await self.app(scope, checked, send)

    async def _refuse(self, scope: Scope, error: GatewayError, receive: Receive,
                      send: Send) -> None:
        await (await self.render_error(scope, error))(receive, send)

    async def _limit(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(scope, PayloadTooLarge(), receive, send)
            return None
        if scope["method"] in SAFE_METHODS and length is None and \
                _header(scope, b"transfer-encoding") is None:
            return receive           # no body is coming: nothing to count
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge()
            return message

        return counting_receive

    async def _load_session(self, scope: Scope, rule: PathRule) -> None:
        sid = read_cookie(scope.get("headers", []), SESSION_COOKIE)
        state = scope.setdefault("state", {})
        state["session"] = None
        state["ended_session"] = None
        if sid and rule.loads_session:
            state["session"], ended = await self.sessions.load_or_expired(sid)
            # The ended session's CSRF token and the Origin check still apply.
            if rule.keep_on_expiry and scope["method"] == "POST":
                state["ended_session"] = ended

    async def _csrf(self, scope: Scope, rule: PathRule, receive: Receive,
                    send: Send) -> Receive | None:
        if scope["method"] in SAFE_METHODS or rule.csrf_exempt or (
                rule.bearer_skips_csrf and bearer(scope)):
            return receive
        if not self._origin_ok(scope):
            await self._refuse(scope, CsrfFailed(), receive, send)
            return None
        state = scope["state"]
        session = state["session"] or state["ended_session"]
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
                await self._refuse(scope, BadRequest("That form has too many fields."),
                                   receive, send)
                return None
            supplied = values[0] if values else None
        elif supplied is None:
            qs = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("csrf_token")
            supplied = qs[0] if qs else None
        if supplied is not None and expected:
            supplied = csrf.unmask(supplied, len(expected))
        if not expected or not supplied or not hmac.compare_digest(expected, supplied):
            await self._refuse(scope, CsrfFailed(), receive, send)
            return None
        if not replay:
            return receive

        async def replaying_receive() -> Message:
            if replay:
                return replay.pop(0)
            return await receive()

        return replaying_receive

    def _origin_ok(self, scope: Scope) -> bool:
        origin = _header(scope, b"origin")
        if origin is not None and origin != "null":
            return origin == self.public_origin
        # Browsers send "Origin: null" for form posts from our pages because of our
        # Referrer-Policy: no-referrer, and some older ones send none. Then Fetch Metadata
        # must not say cross-site; the token check applies either way.
        site = _header(scope, b"sec-fetch-site")
        return site in (None, "same-origin", "none")

    async def _admit(self, scope: Scope, rule: PathRule, receive: Receive,
                     send: Send) -> bool:
        """True when the request may go on to the route; otherwise it was answered."""
        if rule.public:
            return True
        # Routes that authenticate a bearer API key themselves (gateway.web.api): a request
        # to them without a cookie carries no session to gate, so the route answers it (401
        # without a valid key). With a key, its key decides, whatever cookie came along (a
        # valid key with a stale cookie was refused).
        if rule.key_authenticated and (bearer(scope) or _header(scope, b"cookie") is None):
            return True
        state = scope["state"]
        session = state["session"]
        if session is None and state["ended_session"] is not None:
            return True          # the route only keeps the message
        if session is None:
            await self._to_sign_in(scope, rule.sign_in_redirect, receive, send)
            return False
        admission = await self.policy_source().admit(session, scope["path"])
        if not admission.admitted:
            await (await self.render_refusal(scope, admission))(receive, send)
            return False
        return True

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
