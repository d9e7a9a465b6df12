"""The Outbox: the messages kept after a failure (a send that failed, was perhaps sent, was
held, or was cut off; a form kept when the sign-in expired), each with Send and Discard.

Rule: a message is never lost; what the compose form cannot give back stays listed here
until the member sends or discards it, or it reaches ``outbox.MAX_AGE`` and is purged. The
page reads only the store, so it works while the mail server is out of reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.errors import BadRequest, NotFound
from gateway.mail.outbox import STATES
from gateway.services import services
from gateway.web import compose, send
from gateway.web.mailviews import human_size
from gateway.web.member import member, outbox
from gateway.web.render import render


@dataclass(frozen=True)
class KeptRow:
    id: str
    subject: str
    to: str
    state: str
    says: str
    updated: str
    until: str
    files: str
    open_url: str


async def _form_id(request: Request) -> str:
    form = await request.form(max_files=0, max_fields=10)
    outbox_id = str(form.get("outbox_id", ""))
    if not compose.OUTBOX_ID.fullmatch(outbox_id):
        raise BadRequest("That message reference is not valid.")
    return outbox_id


async def outbox_page(request: Request) -> Response:
    svc = services(request)
    session = member(request)
    tz = ZoneInfo(svc.settings.general.timezone)
    rows = []
    for k in await outbox(request).kept(session.user_oid):
        d = k.draft
        names = ", ".join(f.name for f in d.files)
        rows.append(KeptRow(
            id=k.id, subject=d.subject or "(no subject)",
            to=", ".join(x for x in (d.to, d.cc) if x) or "(no recipients yet)",
            state=k.state, says=STATES[k.state],
            updated=f"{datetime.fromtimestamp(k.updated_at, tz):%d %b %Y %H:%M}",
            until=f"{datetime.fromtimestamp(k.expires_at, tz):%d %b %Y}",
            files=f"{names} ({human_size(d.total_bytes())})" if d.files else "",
            open_url="/mail/compose?" + urlencode({"outbox": k.id})))
    notice = {"discarded": "The message was discarded."}.get(
        request.query_params.get("done", ""), "")
    return render(request, "outbox.html", {"rows": rows, "notice": notice})


async def send_kept(request: Request) -> Response:
    session = member(request)
    outbox_id = await _form_id(request)
    draft = await outbox(request).load(outbox_id, session.user_oid)
    if draft is None:
        raise NotFound("That message is no longer being kept.")
    return await send.deliver(request, outbox_id, draft, "send")


async def discard_kept(request: Request) -> Response:
    session = member(request)
    outbox_id = await _form_id(request)
    await outbox(request).discard(outbox_id, session.user_oid)
    return RedirectResponse("/mail/outbox?done=discarded", status_code=303)


routes = [
    Route("/mail/outbox", outbox_page, methods=["GET"]),
    Route("/mail/outbox/send", send_kept, methods=["POST"]),
    Route("/mail/outbox/discard", discard_kept, methods=["POST"]),
]
