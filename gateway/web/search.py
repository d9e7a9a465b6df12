"""The mail search page: by sender, recipient, subject, body text, date range and unread; in
the current folder or across all mail folders; newest first, paged. The IMAP side (search
keys, non-ASCII terms on Exchange) is ``gateway.mail.search``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.mail import mailbox
from gateway.mail.imap import ImapConn
from gateway.mail.search import MAX_HITS_PER_FOLDER, parse_query, search_folder
from gateway.services import services
from gateway.web import mailviews as mv
from gateway.web.member import imap_run
from gateway.web.render import render

PER_PAGE = 50
MAX_HITS = 500


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
    tz = ZoneInfo(svc.settings.general.timezone)
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
            uids = await search_folder(conn, name, query, MAX_HITS_PER_FOLDER)
            hits += [(name, u) for u in uids]
        if scope == "folder":
            chosen = hits[(page_no - 1) * PER_PAGE: page_no * PER_PAGE]
            ctx["total"] = len(hits)
            summaries = await mailbox.fetch_uids(conn, folder, [u for _, u in chosen])
            return [(folder, s) for s in summaries]
        # Across folders the order is by date, which needs the envelopes of every hit.
        found: list[tuple[str, mailbox.MessageSummary]] = []
        for name in targets:
            uids = [u for f, u in hits if f == name]
            found += [(name, s) for s in await mailbox.fetch_uids(conn, name, uids,
                                                                  previews=False)]
            if len(found) >= MAX_HITS:
                break
        found.sort(key=lambda fs: fs[1].date or datetime.min.replace(tzinfo=UTC), reverse=True)
        ctx["total"] = len(found)
        shown = found[(page_no - 1) * PER_PAGE: page_no * PER_PAGE]
        # Preview lines for the page shown only, folder by folder.
        lines: dict[tuple[str, int], mailbox.MessageSummary] = {}
        for name in dict.fromkeys(f for f, _ in shown):
            for s in await mailbox.with_previews(conn, name, [s for f, s in shown if f == name]):
                lines[(name, s.uid)] = s
        return [(f, lines.get((f, s.uid), s)) for f, s in shown]

    results = await imap_run(request, work)
    now = datetime.now(UTC)
    # Each result opens with the way back to this page of these results.
    here = "/mail/search?" + urlencode(list(params.items()))
    ctx["rows"] = [replace(row, url=row.url + "&" + urlencode({"back": here}))
                   for row in (mv.rows(f, [s], tz, now)[0] for f, s in results)]
    total = int(ctx["total"])  # type: ignore[call-overload]
    base = {k: v for k, v in params.items() if k != "page"}
    if page_no > 1:
        ctx["prev_url"] = "/mail/search?" + urlencode({**base, "page": str(page_no - 1)})
    if page_no * PER_PAGE < total:
        ctx["next_url"] = "/mail/search?" + urlencode({**base, "page": str(page_no + 1)})
    return render(request, "mail_search.html", ctx)


routes = [Route("/mail/search", search_page, methods=["GET"])]
