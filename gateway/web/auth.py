"""Sign-in, its callback, and sign-out.

The sign-in flow's state lives server-side; the browser carries only a random flow id in a
``__Host-`` cookie that is ``SameSite=None``, because Entra returns the member by a
cross-site form POST (``response_mode=form_post``) and a Lax cookie would not come with it.
The flow is single-use and lives ten minutes. The session cookie proper is made only after
the callback, with a new id, and is ``SameSite=Lax``.

A conditional-access claims challenge comes to ``/auth/start`` sealed (AES-GCM with the key
ring, so nobody can make the gateway ask Entra for claims of their choosing) and goes to msal
as ``claims_challenge``. A member in more than 200 groups (group overage) has their groups read
from Graph at sign-in; if Graph cannot say, sign-in stops with a plain message rather than
letting them in without the groups that decide their access. A member landing on the inbox
has its IMAP work begun by the callback, while their browser follows its redirect.
"""

from __future__ import annotations

import base64
import logging
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.auth.access import entitlement
from gateway.auth.blockers import IctFault
from gateway.auth.sessions import (
    FLOW_COOKIE,
    SESSION_COOKIE,
    clear_cookie_header,
    cookie_header,
    new_id,
    read_cookie,
)
from gateway.auth.throttle import address_of
from gateway.crypto import DecryptError
from gateway.errors import (
    BadRequest,
    GatewayError,
    SignInFailed,
    TooManyRequests,
    UpstreamUnavailable,
)
from gateway.graph.client import member_groups, member_token
from gateway.mail import warmed
from gateway.services import app_state, services
from gateway.store.base import AuthFlowRecord
from gateway.web.member import signed_in
from gateway.web.render import render

log = logging.getLogger(__name__)
FLOW_LIFETIME = 600.0
MAX_CALLBACK_FIELD = 16_384
_CLAIMS_CONTEXT = b"claims-challenge"


def claims_start_url(keyring: object, claims: str, next_url: str) -> str:
    """Where a claims challenge sends the member: /auth/start with the claims sealed."""
    sealed = keyring.encrypt(claims.encode(), _CLAIMS_CONTEXT)  # type: ignore[attr-defined]
    token = base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()
    return "/auth/start?" + urlencode({"next": safe_next(next_url), "claims": token})


def _unseal_claims(keyring: object, token: str | None) -> str | None:
    if not token or len(token) > 8192:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return bytes(keyring.decrypt(raw, _CLAIMS_CONTEXT)).decode()  # type: ignore[attr-defined]
    except (DecryptError, ValueError):
        raise BadRequest("This sign-in link was altered or is out of date. Please start "
                         "again.") from None


def safe_next(value: str | None) -> str:
    """A same-site path to return to after sign-in; anything else becomes ``/``. Refuses
    scheme-relative (``//host``), backslash tricks, schemes and control characters."""
    if not value or len(value) > 2000 or not value.startswith("/"):
        return "/"
    if value.startswith(("//", "/\\")) or "\\" in value:
        return "/"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "/"
    if value.startswith("/auth/"):
        return "/"
    return value


async def sign_in_page(request: Request) -> Response:
    nxt = safe_next(request.query_params.get("next"))
    if signed_in(request) is not None:
        return RedirectResponse(nxt, status_code=303)
    return render(request, "signin.html", {"next": nxt,
                                           "start_url": "/auth/start?next=" + quote(nxt, "")})


async def start(request: Request) -> Response:
    svc = services(request)
    # Rule: bounded pre-sign-in state. Each start keeps a flow (~1 KB) for FLOW_LIFETIME; an
    # address (and everyone together) may start only so many in that time.
    wait = app_state(request).limits.signin.hit(address_of(request.scope))
    if wait is not None:
        raise TooManyRequests("Too many sign-ins were started from your address just now. "
                              "Wait a few minutes and try again.", retry_after=wait)
    nxt = safe_next(request.query_params.get("next"))
    hint = request.query_params.get("login_hint")
    if hint is not None and (len(hint) > 254 or "@" not in hint):
        hint = None
    # fresh=1: the admin page asks for a recent sign-in; make Entra ask for credentials
    # again rather than answer silently from its own session.
    fresh = request.query_params.get("fresh") == "1"
    claims = _unseal_claims(svc.keyring, request.query_params.get("claims"))
    flow = await svc.entra.start_sign_in(login_hint=hint, prompt="login" if fresh else None,
                                         claims_challenge=claims)
    flow_id = new_id()
    await svc.store.put_flow(AuthFlowRecord(flow_id, flow.flow_json, nxt, svc.clock()))
    response = RedirectResponse(flow.auth_uri, status_code=303)
    response.headers.append("Set-Cookie", cookie_header(
        FLOW_COOKIE, flow_id, max_age=int(FLOW_LIFETIME), same_site="None"))
    return response


async def callback(request: Request) -> Response:
    svc = services(request)
    form = await request.form(max_files=0, max_fields=20)
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if not isinstance(value, str) or len(value) > MAX_CALLBACK_FIELD:
            raise BadRequest("The sign-in response was malformed.")
        fields[key] = value
    if not fields.get("state") or not (fields.get("code") or fields.get("error")):
        raise BadRequest("The sign-in response was incomplete. Please start again.")
    flow_id = read_cookie(request.scope["headers"], FLOW_COOKIE)
    record = await svc.store.take_flow(flow_id) if flow_id else None
    if record is None or svc.clock() - record.created_at > FLOW_LIFETIME:
        raise SignInFailed("This sign-in had expired or was already used. Please start again.")
    try:
        who = await svc.entra.complete_sign_in(record.flow_json, fields)
    except IctFault as fault:
        await app_state(request).blockers.report(fault.kind, None)
        raise
    groups = who.groups
    if who.groups_overage:
        groups = await _overage_groups(request, who.account_id)
    ent = entitlement(svc.settings, who.roles, groups)
    if not ent.any:
        await svc.entra.forget(who.account_id)
        log.info("sign-in refused: no role or group")
        await svc.audit.try_record("auth.refused", who.email, why="no role or group")
        refusal = render(request, "refused.html", {
            "message": "Your account is not set up to use the mail gateway. Contact ICT if "
                       "you think it should be."}, status=403)
        refusal.headers.append("Set-Cookie", clear_cookie_header(FLOW_COOKIE, "None"))
        return refusal
    old = signed_in(request)
    if old is not None:
        await svc.sessions.end(old)
    session = await svc.sessions.create(
        user_oid=who.oid, user_name=who.name, email=who.email, roles=tuple(who.roles),
        groups=tuple(groups), account_id=who.account_id, is_admin=ent.admin)
    log.info("signed in (admin=%s)", ent.admin)
    await svc.audit.try_record("auth.signin", who.email, admin=ent.admin)
    target = safe_next(record.next_url)
    if target == "/" and await svc.policy.would_admit(session):
        # Most sign-ins land on the inbox: its IMAP work begins now, while the browser
        # follows the redirect (ImapPool.warm), and the page is handed what it built
        # (gateway.mail.warmed). Not for a member the switch would refuse.
        svc.imap_pool.warm(session.account_id, session.email, session.account_id,
                           warmed.begin)
    response = RedirectResponse(target, status_code=303)
    response.headers.append("Set-Cookie", svc.sessions.cookie(session))
    response.headers.append("Set-Cookie", clear_cookie_header(FLOW_COOKIE, "None"))
    return response


async def _overage_groups(request: Request, account_id: str) -> list[str]:
    """The member's groups from Graph (``/me/getMemberObjects``, User.Read) when the ID token
    carried the overage indicator instead of ``groups``."""
    svc = services(request)
    try:
        groups = await member_groups(svc.graph, member_token(svc.entra, account_id))
    except GatewayError:
        await svc.entra.forget(account_id)
        log.warning("group overage: groups could not be read from Graph")
        raise UpstreamUnavailable("You are in more groups than Microsoft puts in a sign-in, "
                                  "and the gateway could not read them from Microsoft 365 just "
                                  "now, so sign-in stopped. Please try again in a minute.",
                                  retry_after=60) from None
    log.info("group overage: %d groups read from Graph", len(groups))
    return groups


async def sign_out(request: Request) -> Response:
    svc = services(request)
    session = signed_in(request)
    target = svc.settings.entra.post_logout_url or svc.settings.public_url + \
        "/auth/signed-out"
    if session is not None:
        await svc.sessions.end(session)
        await svc.imap_pool.drop(session.account_id)
        await svc.entra.forget(session.account_id)
        log.info("signed out")
        await svc.audit.try_record("auth.signout", session.email)
    location = await svc.entra.end_session_url(target)
    response = RedirectResponse(location, status_code=303)
    response.headers.append("Set-Cookie", clear_cookie_header(SESSION_COOKIE))
    return response


async def signed_out(request: Request) -> Response:
    return render(request, "signed_out.html")


routes = [
    Route("/auth/signin", sign_in_page, methods=["GET"]),
    Route("/auth/start", start, methods=["GET"]),
    Route("/auth/callback", callback, methods=["POST"]),
    Route("/auth/signout", sign_out, methods=["POST"]),
    Route("/auth/signed-out", signed_out, methods=["GET"]),
]
