"""The signed-in home page. For now it is the proof of the whole chain: the member's name
from Entra and their INBOX message count read through IMAP with their own XOAUTH2 token.
The mail pages proper (issue 3) take over from here."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.mail import imap
from gateway.services import services
from gateway.web.render import render


async def home(request: Request) -> Response:
    svc = services(request)
    session = request.scope["state"]["session"]
    token = await svc.entra.imap_token(session.account_id)
    async with imap.connect(svc.imap, session.email, token) as conn:
        count = await imap.select_count(conn, "INBOX")
    return render(request, "home.html", {"name": session.user_name, "inbox_count": count})


routes = [Route("/", home, methods=["GET"])]
