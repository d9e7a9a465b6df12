"""The signed-in member of a request, as the views see them: their session record, their
mail session (the pooled IMAP connection, held once per request when a view asks), and the
way back to sign-in that keeps where they were going."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse

from gateway.graph.client import GraphHttp, TokenSource, member_token
from gateway.health.metrics import metrics_of
from gateway.mail.imap import ImapConn
from gateway.mail.outbox import Outbox, lease_for
from gateway.mail.sender import Sender
from gateway.mail.session import MailSession
from gateway.services import services
from gateway.store.base import SessionRecord

T = TypeVar("T")
_MAIL_SESSION, _OUTBOX = "mail_session", "outbox"


def member(request: Request) -> SessionRecord:
    """The session of the signed-in member (the session gate lets no one else reach a
    member's view)."""
    session: SessionRecord = request.scope["state"]["session"]
    return session


def signed_in(request: Request) -> SessionRecord | None:
    """The member's session on a page anyone may open (sign-in, sign-out), or None."""
    session: SessionRecord | None = request.scope["state"].get("session")
    return session


def ended_session(request: Request) -> SessionRecord | None:
    """The session that ended just before this form arrived, on a path that keeps such a
    form for its member (``keep_on_expiry`` in gateway.web.middleware.paths), or None."""
    session: SessionRecord | None = request.scope["state"].get("ended_session")
    return session


def graph_client(request: Request) -> GraphHttp:
    """The app's one Graph client (``gateway.graph.client``), which the calendar and automatic
    replies call with the member's own token (``graph_token``)."""
    return services(request).graph


def graph_token(request: Request) -> TokenSource:
    """The signed-in member's own delegated Graph token source (calendar, automatic
    replies): refreshed through msal as needed, never the app-only token."""
    return member_token(services(request).entra, member(request).account_id)


def csp_nonce(request: Request) -> str:
    """This response's CSP nonce (gateway.web.middleware.security), for a page that is not
    rendered through gateway.web.render."""
    return str(request.scope.get("state", {}).get("csp_nonce", ""))


def mail_session(request: Request) -> MailSession:
    """This request's mail session, made on first use. ``async with`` it to hold the
    member's connection across several steps of one page."""
    state = request.scope["state"]
    ms: MailSession | None = state.get(_MAIL_SESSION)
    if ms is None:
        s = member(request)
        # One connection per member, shared by their sessions (iPad and laptop): Exchange
        # allows only about 20 per mailbox.
        ms = MailSession(services(request).imap_pool, s.account_id, s.email, s.account_id,
                         measure=lambda: metrics_of(request.app).upstream_call("imap"))
        state[_MAIL_SESSION] = ms
    return ms


def outbox(request: Request) -> Outbox:
    """This request's outbox (one per request: it remembers the records it has read)."""
    state = request.scope["state"]
    box: Outbox | None = state.get(_OUTBOX)
    if box is None:
        svc = services(request)
        box = Outbox(svc.store, svc.keyring,
                     lease_for(svc.settings.smtp.send_deadline_seconds), remember=True)
        state[_OUTBOX] = box
    return box


def sender(request: Request, user_oid: str) -> Sender:
    """Sends and saves for ``user_oid`` (the member, or the one whose sign-in just ended)."""
    return Sender(mail_session(request), outbox(request), user_oid, services(request).clock)


async def imap_run(request: Request, fn: Callable[[ImapConn], Awaitable[T]]) -> T:
    """Run ``fn`` on the member's connection (within the request's held session, if any)."""
    return await mail_session(request).run(fn)


def sign_in_redirect(target: str, status: int = 303) -> RedirectResponse:
    """To sign-in, coming back to ``target`` (a path of ours) afterwards."""
    return RedirectResponse(sign_in_url(target), status)


def sign_in_url(target: str) -> str:
    return "/auth/signin?next=" + quote(target, safe="")
