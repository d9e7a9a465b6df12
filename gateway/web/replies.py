"""The automatic replies page (``/settings/replies``): on, off or between two dates, with the
message for colleagues and the one for people outside, kept in Exchange through Graph
(``gateway.graph.autoreplies``).

A plain form with the CSRF token and a 303 after saving, so it works without JavaScript. A
form Exchange refused or could not take (invalid dates, Graph away) is shown again with the
member's own text and the reason: nothing typed is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.calendar.zones import form_date, form_fields, form_time, zone
from gateway.errors import Forbidden, GatewayError, NotSignedIn
from gateway.graph import autoreplies
from gateway.graph.autoreplies import AUDIENCES, STATUSES, AutoReplies
from gateway.web.member import graph_client, graph_token
from gateway.web.render import render

PATH = "/settings/replies"


@dataclass
class Form:
    """What the member typed, as typed (dates as YYYY-MM-DD and HH:MM text)."""

    status: str = "disabled"
    audience: str = "all"
    internal: str = ""
    external: str = ""
    start_date: str = ""
    start_time: str = ""
    end_date: str = ""
    end_time: str = ""
    errors: dict[str, str] = field(default_factory=dict)


def _form_of(r: AutoReplies) -> Form:
    f = Form(status=r.status, audience=r.audience, internal=r.internal, external=r.external)
    if r.start is not None:
        f.start_date, f.start_time = form_fields(r.start)
    if r.end is not None:
        f.end_date, f.end_time = form_fields(r.end)
    return f


def _moment(d: str, t: str, tz_name: str) -> datetime | None:
    day = form_date(d.strip())
    at = form_time(t.strip()) if t.strip() else time()
    if day is None or at is None or not 2000 <= day.year <= 2200:
        return None
    return datetime.combine(day, at.replace(second=0, microsecond=0), zone(tz_name))


def _replies_of(f: Form, tz_name: str) -> AutoReplies | None:
    """The setting the form asks for, or None with ``f.errors`` filled."""
    if f.status not in STATUSES:
        f.errors["status"] = "Choose whether automatic replies are off, on, or on between dates."
    if f.audience not in AUDIENCES:
        f.errors["audience"] = "Choose who outside the council gets a reply."
    start = end = None
    if f.status == "scheduled":
        start = _moment(f.start_date, f.start_time, tz_name)
        end = _moment(f.end_date, f.end_time, tz_name)
        if start is None:
            f.errors["start_date"] = "Give the first day as a date (and a time if you like)."
        if end is None:
            f.errors["end_date"] = "Give the last day as a date (and a time if you like)."
        if start is not None and end is not None and end <= start:
            f.errors["end_date"] = "The end must be after the start."
    if f.errors:
        return None
    return AutoReplies(status=f.status, audience=f.audience, internal=f.internal,
                       external=f.external, start=start, end=end)


def _page(request: Request, f: Form, error: str = "", status: int = 200) -> Response:
    done = "Your automatic replies were saved." if request.query_params.get("done") else ""
    return render(request, "replies.html", {"f": f, "error": error, "done": done,
                                            "action": PATH}, status=status)


async def replies_page(request: Request) -> Response:
    try:
        current = await autoreplies.get_replies(graph_client(request), graph_token(request))
    except Forbidden:
        raise Forbidden("Exchange does not let the gateway read your automatic replies. "
                        "Set them in Outlook, or ask ICT.") from None
    return _page(request, _form_of(current))


def _text(form: Any, key: str, limit: int) -> str:
    value = form.get(key)
    return value[:limit] if isinstance(value, str) else ""


async def save(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=20)
    f = Form(status=_text(form, "status", 20), audience=_text(form, "audience", 20),
             internal=_text(form, "internal", autoreplies.MAX_MESSAGE),
             external=_text(form, "external", autoreplies.MAX_MESSAGE),
             start_date=_text(form, "start_date", 20), start_time=_text(form, "start_time", 20),
             end_date=_text(form, "end_date", 20), end_time=_text(form, "end_time", 20))
    g = graph_client(request)
    wanted = _replies_of(f, g.timezone)
    if wanted is None:
        return _page(request, f, "Please check the dates and choices below.", status=400)
    try:
        await autoreplies.set_replies(g, graph_token(request), wanted)
    except Forbidden:
        return _page(request, f, "Exchange does not let the gateway change your automatic "
                     "replies. Set them in Outlook, or ask ICT.", status=403)
    except NotSignedIn:
        raise
    except GatewayError as err:
        return _page(request, f, f"{err.message} Your text is kept below.",
                     status=err.status if 400 <= err.status < 600 else 502)
    return RedirectResponse(PATH + "?done=1", status_code=303)


routes = [
    Route(PATH, replies_page, methods=["GET"]),
    Route(PATH, save, methods=["POST"]),
]
