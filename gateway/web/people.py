"""``GET /mail/people?q=...``: address suggestions as JSON for the compose page's script
(``static/suggest.js``). Without JavaScript nothing calls it and To/Cc stay plain fields.

From Microsoft Graph people search when the member's token carries People.Read
(``gateway.graph.people``). When Graph refuses (People.Read not consented: 403) or is away,
from the member's own recent correspondents instead: the To and Cc of the newest
``RECENT`` messages in Sent Items, one bounded FETCH of envelopes, kept for a minute per
member in memory only (never in the store, never logged), and forgotten when the
gateway sends for that member.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import GatewayError, NotSignedIn
from gateway.graph import people
from gateway.graph.client import member_token
from gateway.graph.people import Suggestion
from gateway.mail import mailbox
from gateway.mail.imap import ImapConn
from gateway.services import services
from gateway.web.member import imap_run, member

RECENT = 50            # Sent Items messages looked at
TOP = 8                # suggestions shown
RECENT_TTL = 60.0
_RECENT_KEEP = 256     # members whose recent correspondents are held at once
_recent: OrderedDict[str, tuple[float, list[Suggestion]]] = OrderedDict()


async def _sent_correspondents(conn: ImapConn) -> list[Suggestion]:
    folders = await mailbox.list_folders(conn, counts=False)
    sent = next((f.name for f in folders if f.special == "sent"), None)
    if sent is None:
        return []
    await conn.select(mailbox.mailbox_arg(sent), readonly=True)
    total = conn.exists
    if total < 1:
        return []
    items = await mailbox._fetch(conn, f"{max(1, total - RECENT + 1)}:{total}",
                                 "(UID ENVELOPE)", by_uid=False)
    items.sort(key=lambda i: i.seq, reverse=True)
    out: dict[str, Suggestion] = {}
    for item in items:
        env = item.envelope
        if env is None:
            continue
        for a in [*env.to, *env.cc]:
            if a.email and "@" in a.email and a.email.lower() not in out:
                out[a.email.lower()] = Suggestion(a.name, a.email)
    return list(out.values())


async def recent_correspondents(request: Request) -> list[Suggestion]:
    key = member(request).account_id
    now = time.monotonic()
    hit = _recent.get(key)
    if hit is not None and now - hit[0] < RECENT_TTL:
        return hit[1]
    found = await imap_run(request, _sent_correspondents)
    _recent[key] = (now, found)
    _recent.move_to_end(key)
    while len(_recent) > _RECENT_KEEP:
        _recent.popitem(last=False)
    return found


def forget_recent(account_id: str) -> None:
    """Drop a member's kept correspondents (after the gateway sent for them), so the next
    suggestion reads Sent Items again. Only this process's copy: another instance's copy
    lasts at most ``RECENT_TTL``."""
    _recent.pop(account_id, None)


def _matches(s: Suggestion, term: str) -> bool:
    words = term.lower().split()
    have = (s.name + " " + s.address.replace(".", " ").replace("@", " ")).lower().split()
    return all(any(h.startswith(w) for h in have) or w in s.address.lower() for w in words)


async def suggest(request: Request) -> Response:
    term = people.clean_term(request.query_params.get("q", ""))
    if not term:
        return JSONResponse({"source": "", "people": []})
    svc = services(request)
    found: list[Suggestion] | None = None
    source = "directory"
    session = member(request)
    try:
        found = await people.search(svc.graph, member_token(
            svc.entra, session.account_id), term, TOP)
    except NotSignedIn:
        raise
    except GatewayError:
        found = None     # not consented, or Graph away: the member's own mail instead
    if found is None:
        source = "recent"
        found = [s for s in await recent_correspondents(request) if _matches(s, term)][:TOP]
    return JSONResponse({"source": source, "people": [
        {"name": s.name, "address": s.address, "label": s.label} for s in found]},
        headers={"Cache-Control": "private, no-store"})


routes = [Route("/mail/people", suggest, methods=["GET"])]
