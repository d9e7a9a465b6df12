"""Rendering shared by every route: the Jinja2 environment, pages with their CSP nonce and
CSRF token, and the one place where errors become a page or JSON. No stack trace, token or
mail content ever reaches the browser from here."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

from gateway.auth import csrf
from gateway.auth.access import Admission
from gateway.errors import GatewayError
from gateway.kept import Kept
from gateway.mail.mailbox import Folder, MessageSummary
from gateway.web import mailviews as mv
from gateway.web.middleware.paths import rule_for

log = logging.getLogger("gateway.web")

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def _static_version() -> str:
    """A short hash of the static files: their URLs carry it (?v=), so browsers may cache
    them for a year and still get a new file the moment it changes."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.glob("*")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:10]


STATIC_VERSION = _static_version()
# Templates ship with the code: compiled once, never checked against the disk again
# (auto_reload would stat every template a page extends or includes, on every request).
env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True, auto_reload=False,
                  cache_size=-1)


@lru_cache(maxsize=10_000)
def row_html(row: Any, choose: bool) -> Markup:
    """One message row of a list (mail_row.html), rendered once per distinct row: the 50
    rows were the bulk of a steady inbox page's template CPU. The key is everything the row
    template reads (the frozen Row, its folder inside the URL, its flags, its date already
    worked out for the member's zone and day, and ``choose``); templates never change while
    the process runs (auto_reload off), so the markup version is the process's."""
    # The row template autoescapes every value it writes; this marks its output as HTML.
    return Markup(env.get_template("mail_row.html").render(r=row, choose=choose))  # noqa: S704


env.globals["row_html"] = row_html


# Fragments of a page kept by the identity of the frozen objects they show. The IMAP connection
# keeps one summary object per message and replaces it only when its flags change
# (gateway.mail.mailbox.fetch_page); the calendar hands out the same events and days while
# Graph's answer is unchanged (gateway.calendar.graph, model.days). A steady page therefore
# shows the same objects again, and its rows were rebuilt for nothing: 12 % of a steady inbox
# page's CPU and a sixth of the agenda's (bench/cpu_per_page.py --profile, 2026-12-03). Each
# entry holds its objects (gateway.kept).
_FRAGMENTS: Kept[Markup] = Kept(256)


def kept_fragment(template: str, key: tuple[object, ...], held: Sequence[object],
                  context: Callable[[], dict[str, Any]]) -> Markup:
    """``template`` rendered with ``context()``, kept by ``key`` (everything else the
    fragment is made of) and the identity of ``held`` (the frozen objects it shows)."""
    full = (template, *key, *map(id, held))
    kept = _FRAGMENTS.get(full)
    if kept is not None:
        return kept
    # The template autoescapes every value it writes; this marks its output as HTML.
    html = Markup(env.get_template(template).render(**context()))  # noqa: S704
    return _FRAGMENTS.put(full, html, held=held)


def list_html(folder: str, messages: Sequence[MessageSummary], tz: ZoneInfo, now: datetime,
              drafts: bool) -> Markup:
    """The day-grouped rows of a folder page (mail_groups.html), kept as described above. The
    key is everything they are made of: the folder (in each link), whether it is Drafts (the
    links edit), the member's zone and today's date there (short dates, headings), and the
    summaries themselves."""
    def context() -> dict[str, Any]:
        rows = mv.rows(folder, list(messages), tz, now)
        return {"groups": mv.day_groups(mv.draft_rows(rows) if drafts else rows)}
    return kept_fragment("mail_groups.html", (folder, drafts, tz.key,
                                              now.astimezone(tz).date()), messages, context)


def pane_html(folder: str, messages: Sequence[MessageSummary], tz: ZoneInfo, now: datetime,
              drafts: bool, current: int) -> Markup:
    """The rows of the list beside an open message (mail_pane_rows.html), kept as
    ``list_html`` is; the link to message ``current`` is then marked as the open one (each
    row's link ends with its own ``#p-UID``, so the mark lands on that row only)."""
    def context() -> dict[str, Any]:
        rows = mv.rows(folder, list(messages), tz, now)
        return {"rows": mv.draft_rows(rows) if drafts else rows}
    html = kept_fragment("mail_pane_rows.html", (folder, drafts, tz.key,
                                                 now.astimezone(tz).date()), messages, context)
    mark = f'#p-{int(current)}">'
    # str.replace: Markup's own would escape the attribute written in.
    marked = str.replace(html, mark, f'#p-{int(current)}" aria-current="true">', 1)
    return Markup(marked)  # noqa: S704 (the kept markup, one attribute added)


def folders_html(folders: Sequence[Folder], current: str, path: str) -> Markup:
    """The folder list beside a folder's messages (mail_folders.html), kept as ``list_html``
    is: the IMAP connection hands out one list of frozen folders until it asks the server
    again (``mailbox.FOLDER_CACHE_SECONDS``), and the markup is made of that list, the
    folder shown and the page's path. Building the links (a URL-encoded address each) and
    writing them was 6 % of a steady inbox page's CPU (bench/cpu_per_page.py --profile)."""
    return kept_fragment("mail_folders.html", (current, path), [folders], lambda: {
        "folders": mv.folder_links(list(folders), current), "path": path})


def move_html(folders: Sequence[Folder], current: str) -> Markup:
    """The "Move to folder" choice of a list or a message (mail_move.html): every folder
    but the one shown, kept as ``folders_html`` is."""
    return kept_fragment("mail_move.html", (current,), [folders], lambda: {
        "move_targets": [f for f in mv.folder_links(list(folders), current)
                         if f.name != current]})


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who the page is for, as the page header shows them: the templates get this, never
    the session record (which holds the CSRF token, token-cache keys and timestamps)."""

    user_name: str
    is_admin: bool


def render(request: Request | Scope, template: str, context: dict[str, Any] | None = None,
           status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    scope = request.scope if isinstance(request, Request) else request
    state = scope.get("state", {})
    session = state.get("session")
    ctx = {
        "nonce": state.get("csp_nonce", ""),
        "session": Viewer(session.user_name, session.is_admin) if session is not None
        else None,
        "csrf_token": csrf.mask(session.csrf_token) if session is not None else "",
        "static_v": STATIC_VERSION,
        "path": scope.get("path", "/"),
        "query": scope.get("query_string", b"").decode("latin-1"),
    }
    ctx.update(context or {})
    html = env.get_template(template).render(**ctx)
    return HTMLResponse(html, status_code=status, headers=headers)


def _wants_json(scope: Scope) -> bool:
    if rule_for(scope.get("path", "")).json_errors:
        return True
    for k, v in scope.get("headers", []):
        if k == b"accept":
            accept = v.decode("latin-1")
            return "application/json" in accept and "text/html" not in accept
    return False


def error_response(scope: Scope, err: GatewayError) -> Response:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after else None
    if _wants_json(scope):
        return JSONResponse({"error": type(err).__name__, "message": err.message},
                            status_code=err.status, headers=headers)
    return render(scope, "error.html", {"title": err.title, "message": err.message,
                                        "status": err.status}, status=err.status, headers=headers)


async def render_error(scope: Scope, err: GatewayError) -> Callable[[Receive, Send],
                                                                     Awaitable[None]]:
    response = error_response(scope, err)

    async def respond(receive: Receive, send: Send) -> None:
        await response(scope, receive, send)
    return respond


async def render_refusal(scope: Scope, admission: Admission) -> Callable[[Receive, Send],
                                                                          Awaitable[None]]:
    response = render(scope, admission.template or "refused.html",
                      {"message": admission.message}, status=403)

    async def respond(receive: Receive, send: Send) -> None:
        await response(scope, receive, send)
    return respond
