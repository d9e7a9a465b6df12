"""Calendar pages: agenda (today and the next 14 days, the default), day and week views, an
event's page, and the forms that create, edit, move, delete, cancel and answer events.

Plain forms and 303 redirects, so everything works with JavaScript off. A form whose change
failed (invalid input, or Graph refused or was away) is shown again with the member's own
values and the reason. Event ids travel in URLs as base64url ("refs"), because Graph ids may
hold characters that do not survive a URL path.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.calendar import graph
from gateway.calendar.model import Event, EventDraft, days, when_label
from gateway.calendar.zones import form_date, form_fields, form_time, zone
from gateway.errors import BadRequest, GatewayError, NotFound, NotSignedIn
from gateway.mail import sanitize
from gateway.services import Services, services
from gateway.web.member import graph_client, graph_token, member
from gateway.web.render import kept_fragment, render

AGENDA_DAYS = 15                 # today and the next 14
DONE = {
    "created": "The event was added to your calendar.",
    "saved": "Your changes were saved.",
    "moved": "The event was moved.",
    "deleted": "The event was deleted.",
    "cancelled": "The meeting was cancelled and the attendees were told.",
    "accepted": "You accepted.",
    "tentative": "You accepted tentatively.",
    "declined": "You declined; the meeting was removed from your calendar.",
}
ANSWER_DONE = {"accept": "accepted", "tentative": "tentative", "decline": "declined"}


@dataclass
class MoveFields:
    """The Move form's values as shown (again, as typed, after a refusal) and each field's
    error by field name."""

    subject: str
    date: str
    time: str
    all_day: bool
    minutes: str
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AnswerFields:
    """An answer to an invitation as typed: shown again with the comment if it fails."""

    answer: str
    comment: str
    send_response: bool


# ---------------------------------------------------------------------- helpers


def ref(event_id: str) -> str:
    return base64.urlsafe_b64encode(event_id.encode()).decode().rstrip("=")


def unref(value: str) -> str:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, ValueError):
        raise NotFound("That event is no longer in your calendar.") from None


def event_url(event_id: str, suffix: str = "", **query: str) -> str:
    url = f"/calendar/event/{ref(event_id)}{suffix}"
    return url + ("?" + urlencode(query) if query else "")


def _tz(svc: Services) -> ZoneInfo:
    return zone(svc.settings.general.timezone)


def _today(svc: Services) -> date:
    return datetime.fromtimestamp(svc.clock(), _tz(svc)).date()


def _date_param(request: Request, svc: Services, name: str = "date") -> date:
    raw = request.query_params.get(name, "")
    if not raw:
        return _today(svc)
    d = form_date(raw)
    if d is None:
        raise BadRequest("That date was not understood; use YYYY-MM-DD.")
    if not 1900 <= d.year <= 2200:
        raise BadRequest("That date is out of range.")
    return d


def _done(request: Request) -> str:
    return DONE.get(request.query_params.get("done", ""), "")


def _ctx(request: Request, **extra: Any) -> dict[str, Any]:
    if "days" in extra:   # a list view: its days are kept rendered (render.kept_fragment)
        laid, mode = extra["days"], extra["mode"]
        extra["days_html"] = kept_fragment("calendar_days.html", (mode,), laid, lambda: {
            "days": laid, "mode": mode, "event_url": event_url})
    return {"ref": ref, "event_url": event_url, "done": _done(request), **extra}


async def _form(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=50)


def _str(form: FormData, key: str, limit: int = 4000) -> str:
    value = form.get(key)
    return value[:limit] if isinstance(value, str) else ""


# ---------------------------------------------------------------------- views


async def _span(request: Request, first: date, count: int) -> list[Event]:
    svc = services(request)
    tz = _tz(svc)
    start = datetime.combine(first, time(), tz)
    end = datetime.combine(first + timedelta(days=count), time(), tz)
    return await graph.calendar_view(graph_client(request), graph_token(request), start, end)


async def agenda(request: Request) -> Response:
    svc = services(request)
    first, today = _date_param(request, svc, "from"), _today(svc)
    events = await _span(request, first, AGENDA_DAYS)
    laid = [d for d in days(events, first, AGENDA_DAYS, _tz(svc), today)
            if d.slots or d.is_today]
    return render(request, "calendar_list.html", _ctx(
        request, mode="agenda", title="Agenda", days=laid, today=today,
        heading=f"{first:%-d %B} to {first + timedelta(days=AGENDA_DAYS - 1):%-d %B %Y}",
        prev_url=f"/calendar?from={first - timedelta(days=AGENDA_DAYS)}",
        next_url=f"/calendar?from={first + timedelta(days=AGENDA_DAYS)}",
        new_url=f"/calendar/new?date={first if first > today else today}"))


async def day_view(request: Request) -> Response:
    svc = services(request)
    d, today = _date_param(request, svc), _today(svc)
    events = await _span(request, d, 1)
    laid = days(events, d, 1, _tz(svc), today)
    return render(request, "calendar_list.html", _ctx(
        request, mode="day", title=laid[0].heading, days=laid, today=today,
        heading=laid[0].heading,
        prev_url=f"/calendar/day?date={d - timedelta(days=1)}",
        next_url=f"/calendar/day?date={d + timedelta(days=1)}",
        new_url=f"/calendar/new?date={d}"))


async def week_view(request: Request) -> Response:
    svc = services(request)
    d, today = _date_param(request, svc), _today(svc)
    monday = d - timedelta(days=d.weekday())
    events = await _span(request, monday, 7)
    laid = days(events, monday, 7, _tz(svc), today)
    return render(request, "calendar_list.html", _ctx(
        request, mode="week", title="Week", days=laid, today=today,
        heading=f"Week of {monday:%A} {monday.day} {monday:%B %Y}",
        prev_url=f"/calendar/week?date={monday - timedelta(days=7)}",
        next_url=f"/calendar/week?date={monday + timedelta(days=7)}",
        new_url=f"/calendar/new?date={d}"))


async def _body_html(ev: Event) -> str:
    if not ev.body_html.strip():
        return ""
    if ev.body_type != "html":
        return sanitize.text_to_html(ev.body_html)
    result = await asyncio.to_thread(sanitize.sanitize_html, ev.body_html,
                                     allow_remote_images=False, cid_url=lambda _cid: None)
    return result.html


async def event_page(request: Request) -> Response:
    svc = services(request)
    event_id = unref(request.path_params["ref"])
    ev = await graph.get_event(graph_client(request), graph_token(request), event_id)
    return render(request, "calendar_event.html", _ctx(
        request, ev=ev, when=when_label(ev, _tz(svc)), body=await _body_html(ev),
        day_url=f"/calendar/day?date={ev.first_day(_tz(svc))}", error=""))


# ---------------------------------------------------------------------- forms


def _form_page(request: Request, draft: EventDraft, *, mode: str, event_id: str = "",
               body_was: str = "", error: str = "", status: int = 200) -> Response:
    action = "/calendar/new" if mode == "new" else event_url(event_id, "/edit")
    return render(request, "calendar_form.html", _ctx(
        request, draft=draft, mode=mode, action=action, error=error, body_was=body_was,
        cancel_url="/calendar" if mode == "new" else event_url(event_id)), status=status)


async def new_form(request: Request) -> Response:
    svc = services(request)
    d = _date_param(request, svc)
    now = datetime.fromtimestamp(svc.clock(), _tz(svc))
    start = (now + timedelta(hours=1)).replace(minute=0) if d == now.date() else \
        datetime.combine(d, time(10))
    end = start + timedelta(hours=1)
    draft = EventDraft("", start.date().isoformat(), start.strftime("%H:%M"),
                       end.date().isoformat(), end.strftime("%H:%M"))
    return _form_page(request, draft, mode="new")


async def create(request: Request) -> Response:
    svc = services(request)
    draft = EventDraft.from_form(await _form(request))
    try:
        body = draft.to_graph(svc.settings.general.timezone, _tz(svc))
    except ValueError:
        return _form_page(request, draft, mode="new", status=422,
                          error="Please correct the marked fields.")
    try:
        ev = await graph.create_event(graph_client(request), graph_token(request), body)
    except NotSignedIn:
        raise
    except GatewayError as err:
        return _form_page(request, draft, mode="new", status=err.status,
                          error=f"{err.message} Your event has not been added yet; it is "
                                "still here to try again.")
    return RedirectResponse(event_url(ev.id, done="created"), 303)


async def edit_form(request: Request) -> Response:
    svc = services(request)
    event_id = unref(request.path_params["ref"])
    ev = await graph.get_event(graph_client(request), graph_token(request), event_id)
    draft = EventDraft.from_event(ev, _tz(svc))
    return _form_page(request, draft, mode="edit", event_id=ev.id, body_was=draft.body)


async def update(request: Request) -> Response:
    svc = services(request)
    event_id = unref(request.path_params["ref"])
    form = await _form(request)
    draft = EventDraft.from_form(form)
    body_was = _str(form, "body_was", 100_000)
    try:
        changes = draft.to_graph(svc.settings.general.timezone, _tz(svc))
    except ValueError:
        return _form_page(request, draft, mode="edit", event_id=event_id, body_was=body_was,
                          status=422, error="Please correct the marked fields.")
    if draft.body.strip() == body_was.strip():
        # Only the preview text was shown; sending it back would flatten the HTML body.
        changes.pop("body")
    try:
        await graph.update_event(graph_client(request), graph_token(request), event_id, changes)
    except NotSignedIn:
        raise
    except GatewayError as err:
        return _form_page(request, draft, mode="edit", event_id=event_id, body_was=body_was,
                          status=err.status, error=f"{err.message} Your changes have not been "
                                                   "saved yet; they are still here.")
    return RedirectResponse(event_url(event_id, done="saved"), 303)


def _move_page(request: Request, values: MoveFields, event_id: str, *, error: str = "",
               status: int = 200) -> Response:
    return render(request, "calendar_move.html", _ctx(
        request, v=values, action=event_url(event_id, "/move"), error=error,
        cancel_url=event_url(event_id)), status=status)


async def move_form(request: Request) -> Response:
    svc = services(request)
    event_id = unref(request.path_params["ref"])
    ev = await graph.get_event(graph_client(request), graph_token(request), event_id)
    tz = _tz(svc)
    start = ev.start.astimezone(tz)
    return _move_page(request, MoveFields(
        subject=ev.subject, date=ev.first_day(tz).isoformat(),
        time="" if ev.all_day else form_fields(start)[1],
        minutes=str(int((ev.end - ev.start).total_seconds() // 60)), all_day=ev.all_day),
        ev.id)


async def move(request: Request) -> Response:
    svc = services(request)
    event_id = unref(request.path_params["ref"])
    form = await _form(request)
    values = MoveFields(
        subject=_str(form, "subject", 255), date=_str(form, "date", 20).strip(),
        time=_str(form, "time", 10).strip(), all_day=_str(form, "all_day") == "1",
        minutes=_str(form, "minutes", 10))
    errors = values.errors
    try:
        minutes = max(1, min(int(values.minutes), 60 * 24 * 366))
    except ValueError:
        minutes = 60
    d = form_date(values.date)
    if d is None:
        errors["date"] = "Enter the date as YYYY-MM-DD."
    t = time() if values.all_day else form_time(values.time)
    if t is None:
        errors["time"] = "Enter the time as HH:MM, for example 14:30."
    if d is not None and t is not None:
        start = datetime.combine(d, t)
        draft = EventDraft(values.subject or "x", *form_fields(start),
                           all_day=values.all_day)
        end = start + timedelta(minutes=minutes)
        draft.end_date, draft.end_time = form_fields(end)
        if values.all_day:
            draft.end_date = (end - timedelta(days=1)).date().isoformat()
        try:
            start, end = draft.times(_tz(svc))
        except ValueError:
            errors["time"] = next(iter(draft.errors.values()), "That time is not valid.")
    if errors:
        return _move_page(request, values, event_id, status=422,
                          error="Please correct the marked fields.")
    try:
        await graph.move_event(graph_client(request), graph_token(request), event_id, start, end)
    except NotSignedIn:
        raise
    except GatewayError as err:
        return _move_page(request, values, event_id, status=err.status,
                          error=f"{err.message} The event has not been moved yet.")
    return RedirectResponse(event_url(event_id, done="moved"), 303)


async def delete_form(request: Request) -> Response:
    svc = services(request)
    event_id = unref(request.path_params["ref"])
    ev = await graph.get_event(graph_client(request), graph_token(request), event_id)
    return render(request, "calendar_delete.html", _ctx(
        request, ev=ev, when=when_label(ev, _tz(svc)), comment="", error="",
        cancels=ev.is_organizer and bool(ev.attendees)))


async def delete(request: Request) -> Response:
    event_id = unref(request.path_params["ref"])
    form = await _form(request)
    comment = _str(form, "comment", 2000)
    cancels = _str(form, "cancel") == "1"
    try:
        if cancels:
            await graph.cancel_event(graph_client(request), graph_token(request), event_id, comment)
        else:
            await graph.delete_event(graph_client(request), graph_token(request), event_id)
    except NotSignedIn:
        raise
    except GatewayError as err:
        return render(request, "calendar_delete.html", _ctx(
            request, ev=None, ref_id=event_id, when="", comment=comment, cancels=cancels,
            error=err.message), status=err.status)
    return RedirectResponse("/calendar?done=" + ("cancelled" if cancels else "deleted"), 303)


async def answer(request: Request) -> Response:
    event_id = unref(request.path_params["ref"])
    form = await _form(request)
    choice = _str(form, "answer", 20)
    comment, send = _str(form, "comment", 2000), _str(form, "send_response") == "1"
    values = AnswerFields(answer=choice, comment=comment, send_response=send)
    if choice not in ANSWER_DONE:
        return render(request, "calendar_answer.html", _ctx(
            request, a=values, action=event_url(event_id, "/answer"),
            back_url=event_url(event_id), error="Choose Accept, Tentative or Decline."),
            status=422)
    try:
        await graph.respond(graph_client(request), graph_token(request), event_id, choice,
                            comment, send)
    except NotSignedIn:
        raise
    except GatewayError as err:
        return render(request, "calendar_answer.html", _ctx(
            request, a=values, action=event_url(event_id, "/answer"),
            back_url=event_url(event_id), error=err.message), status=err.status)
    done = ANSWER_DONE[choice]
    if choice == "decline":
        return RedirectResponse(f"/calendar?done={done}", 303)
    return RedirectResponse(event_url(event_id, done=done), 303)


def _local_path(value: str) -> str:
    """A same-site path to return to, or the agenda (never an open redirect)."""
    if value.startswith("/") and not value.startswith(("//", "/\\")) and len(value) < 2000 \
            and "\\" not in value and all(32 < ord(c) < 127 for c in value):
        return value
    return "/calendar"


async def answer_invite(request: Request) -> Response:
    """Answer a meeting request shown in mail, found in the calendar by its iCalendar UID.
    Form fields: ``uid``, ``answer``, ``comment``, ``send_response``, ``back`` (the read
    page), ``f`` and ``msg`` (the message carrying the invitation). When the meeting is not
    in the calendar (an outside organiser's that Exchange did not file, a deleted event)
    the answer goes to the organiser by mail (iTIP REPLY); any failure shows the form again
    with the comment as typed."""
    form = await _form(request)
    uid, choice = _str(form, "uid", 1024).strip(), _str(form, "answer", 20)
    comment, send = _str(form, "comment", 2000), _str(form, "send_response") == "1"
    back = _local_path(_str(form, "back", 2000))
    folder, msg = _str(form, "f", 500), _str(form, "msg", 10)
    values = AnswerFields(answer=choice, comment=comment, send_response=send)

    def again(error: str, status: int) -> Response:
        return render(request, "calendar_answer.html", _ctx(
            request, a=values, action="/calendar/invite/answer", back_url=back,
            back_label="Back to the message", error=error,
            hidden={"uid": uid, "back": back, "f": folder, "msg": msg}), status=status)

    if choice not in ANSWER_DONE or not uid:
        return again("Choose Accept, Tentative or Decline.", 422)
    try:
        g, token = graph_client(request), graph_token(request)
        found = await graph.find_by_ical_uid(g, token, uid)
        if found is not None:
            await graph.respond(g, token, found.id, choice, comment, send)
    except NotSignedIn:
        raise
    except GatewayError as err:
        return again(err.message, err.status)
    done = ANSWER_DONE[choice]
    sep = "&" if "?" in back else "?"
    if found is not None:
        if choice == "decline":
            return RedirectResponse(f"{back}{sep}done={done}", 303)
        return RedirectResponse(event_url(found.id, done=done), 303)
    if not send:
        return again("This meeting is not in your calendar (the organiser may be outside the "
                     "council, or the event was deleted), so there is nothing to change there. "
                     "Tick \u201cSend my answer to the organiser\u201d to answer by mail.", 409)
    try:
        await _answer_by_mail(request, folder, msg, uid, choice, comment)
    except NotSignedIn:
        raise
    except GatewayError as err:
        return again(f"{err.message} Your answer was not sent.", err.status)
    return RedirectResponse(f"{back}{sep}done={done}-by-mail", 303)


async def _answer_by_mail(request: Request, folder: str, msg: str, uid: str, choice: str,
                          comment: str) -> None:
    """Send the organiser an iTIP REPLY built from the invitation in the member's mail (read
    again from the mailbox, never from the form)."""
    from gateway.calendar import itip
    from gateway.mail.mime import Address
    from gateway.mail.smtp import send as smtp_send
    from gateway.web.mail import open_message
    if not msg.isdigit() or not folder:
        raise BadRequest("That invitation could not be found in your mail.")
    view = (await open_message(request, folder, int(msg), mark_read=False)).view
    invite = view.calendar
    if invite is None or invite.uid != uid:
        raise NotFound("That invitation is no longer in your mail.")
    svc = services(request)
    session = member(request)
    me = Address(session.user_name, session.email)
    data, organizer = itip.reply_message(invite, me, choice, comment, datetime.now(UTC))
    token = await svc.entra.smtp_token(session.account_id)
    await smtp_send(svc.smtp, session.email, token, [organizer], data)
    await svc.audit.try_record("calendar.answered_by_mail", session.email, answer=choice)


routes = [
    Route("/calendar/invite/answer", answer_invite, methods=["POST"]),
    Route("/calendar", agenda, methods=["GET"]),
    Route("/calendar/day", day_view, methods=["GET"]),
    Route("/calendar/week", week_view, methods=["GET"]),
    Route("/calendar/new", new_form, methods=["GET"]),
    Route("/calendar/new", create, methods=["POST"]),
    Route("/calendar/event/{ref}", event_page, methods=["GET"]),
    Route("/calendar/event/{ref}/edit", edit_form, methods=["GET"]),
    Route("/calendar/event/{ref}/edit", update, methods=["POST"]),
    Route("/calendar/event/{ref}/move", move_form, methods=["GET"]),
    Route("/calendar/event/{ref}/move", move, methods=["POST"]),
    Route("/calendar/event/{ref}/delete", delete_form, methods=["GET"]),
    Route("/calendar/event/{ref}/delete", delete, methods=["POST"]),
    Route("/calendar/event/{ref}/answer", answer, methods=["POST"]),
]
