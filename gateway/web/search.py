"""Mail search: by sender, recipient, subject, body text, date range and unread; in the
current folder or across all mail folders; newest first, paged.

Search keys are built here from validated values (quoted, control characters refused), so
nothing a member types can add an IMAP command. Exchange offers plain IMAP SEARCH only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.calendar.zones import form_date
from gateway.errors import BadRequest
from gateway.mail import mailbox
from gateway.mail.imap import ImapConn
from gateway.services import services
from gateway.web import mailviews as mv
from gateway.web.member import imap_run
from gateway.web.render import render

PER_PAGE = 50
MAX_HITS_PER_FOLDER = 200
MAX_HITS = 500
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def quote(value: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise BadRequest("Search text cannot contain control characters.")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def imap_date(d: date) -> str:
    return f"{d.day}-{MONTHS[d.month - 1]}-{d.year}"


@dataclass(frozen=True)
class Query:
    q: str = ""
    sender: str = ""
    to: str = ""
    subject: str = ""
    body: str = ""
    since: date | None = None
    before: date | None = None
    unread: bool = False

    def criteria(self) -> list[str]:
        keys: list[str] = []
        if self.q:
            # Free text: sender, subject or body, as Outlook's search box does.
            keys += ["OR", "OR", "FROM", quote(self.q), "SUBJECT", quote(self.q),
                     "BODY", quote(self.q)]
        for key, value in (("FROM", self.sender), ("TO", self.to),
                           ("SUBJECT", self.subject), ("BODY", self.body)):
            if value:
                keys += [key, quote(value)]
        if self.since:
            keys += ["SINCE", imap_date(self.since)]
        if self.before:
            keys += ["BEFORE", imap_date(self.before)]
        if self.unread:
            keys.append("UNSEEN")
        return keys or ["ALL"]

    @property
    def empty(self) -> bool:
        return not (self.q or self.sender or self.to or self.subject or self.body
                    or self.since or self.before or self.unread)


def _date(value: str, name: str) -> date | None:
    if not value:
        return None
    d = form_date(value)
    if d is None:
        raise BadRequest(f"The {name} date is not a date (use the date picker).")
    return d


def parse_query(params: dict[str, str]) -> Query:
    def text(k: str) -> str:
        return params.get(k, "").strip()[:200]
    return Query(q=text("q"), sender=text("from"), to=text("to"), subject=text("subject"),
                 body=text("body"), since=_date(text("since"), "from"),
                 before=_date(text("before"), "to"), unread=params.get("unread") == "1")


async def search_page(request: Request) -> Response:
    svc = services(request)
    params = dict(request.query_params)
    folder = params.get("f", "INBOX")[:500]
    scope = "all" if params.get("scope") == "all" else "folder"
    try:
        page_no = max(1, int(params.get("page", "1")))
    except ValueError:
        page_no = 1
    query = parse_query(params)
    tz = ZoneInfo(svc.settings.get("general.timezone"))
    ctx: dict[str, object] = {"p": params, "folder": folder, "scope": scope, "rows": [],
                              "searched": not query.empty, "total": 0, "prev_url": None,
                              "next_url": None, "move_targets": [], "page_no": page_no}
    if query.empty:
        return render(request, "mail_search.html", ctx)

    async def work(conn: ImapConn) -> list[tuple[str, mailbox.MessageSummary]]:
        if scope == "folder":
            targets = [folder]
        else:
            targets = [f.name for f in await mailbox.list_folders(conn, counts=False)
                       if f.selectable]
        hits: list[tuple[str, int]] = []
        for name in targets:
            uids = await mailbox.search_uids(conn, name, query.criteria())
            hits += [(name, u) for u in uids[:MAX_HITS_PER_FOLDER]]
        if scope == "folder":
            chosen = hits[(page_no - 1) * PER_PAGE: page_no * PER_PAGE]
            ctx["total"] = len(hits)
            summaries = await mailbox.fetch_uids(conn, folder, [u for _, u in chosen])
            return [(folder, s) for s in summaries]
        # Across folders the order is by date, which needs the envelopes of every hit.
        found: list[tuple[str, mailbox.MessageSummary]] = []
        for name in targets:
            uids = [u for f, u in hits if f == name]
            found += [(name, s) for s in await mailbox.fetch_uids(conn, name, uids)]
            if len(found) >= MAX_HITS:
                break
        found.sort(key=lambda fs: fs[1].date or datetime.min.replace(tzinfo=UTC), reverse=True)
        ctx["total"] = len(found)
        return found[(page_no - 1) * PER_PAGE: page_no * PER_PAGE]

    results = await imap_run(request, work)
    now = datetime.now(UTC)
    ctx["rows"] = [mv.rows(f, [s], tz, now)[0] for f, s in results]
    total = int(ctx["total"])  # type: ignore[call-overload]
    base = {k: v for k, v in params.items() if k != "page"}
    if page_no > 1:
        ctx["prev_url"] = "/mail/search?" + urlencode({**base, "page": str(page_no - 1)})
    if page_no * PER_PAGE < total:
        ctx["next_url"] = "/mail/search?" + urlencode({**base, "page": str(page_no + 1)})
    return render(request, "mail_search.html", ctx)


routes = [Route("/mail/search", search_page, methods=["GET"])]
