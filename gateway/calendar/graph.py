"""The Microsoft Graph calendar adapter: small functions that take the app's ``GraphHttp``
and a member's token and return view models. The wire policy (token, Retry-After, error
mapping, JSON, paging) is the one Graph client's, ``gateway.graph.client``; this module owns
what is calendar: ``$select`` of only what is shown, event paths, calendarView windows, the
iCalendar UID search and the answers to invitations.

Adapters raise; the web layer decides what the member sees. No token or event content is
logged.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from gateway.calendar.model import ANSWERS, Event, parse_event
from gateway.errors import CalendarError, NotFound, UpstreamError
from gateway.graph.client import GraphHttp, TokenSource, call, json_page, pages, send, walk
from gateway.kept import Kept

log = logging.getLogger(__name__)

# What the pages show, and nothing more: Graph sends far less when asked.
LIST_FIELDS = ("subject", "start", "end", "isAllDay", "location", "isCancelled", "isOrganizer",
               "responseStatus", "responseRequested", "type", "seriesMasterId", "showAs",
               "onlineMeeting")
DETAIL_FIELDS = (*LIST_FIELDS, "body", "bodyPreview", "attendees", "organizer", "iCalUId",
                 "onlineMeetingUrl")


def _event(raw: Any) -> Event:
    try:
        return parse_event(raw)
    except (ValueError, TypeError, KeyError):
        raise UpstreamError("The calendar service sent an event the gateway cannot "
                            "read.") from None


def _path(event_id: str) -> str:
    if not event_id or len(event_id) > 1024:
        raise NotFound("That event is no longer in your calendar.")
    return "me/events/" + quote(event_id, safe="")


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("calendar_view needs aware datetimes")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


# ---------------------------------------------------------------------- reading


async def calendar_view(g: GraphHttp, token: TokenSource, start: datetime,
                        end: datetime) -> list[Event]:
    """Every event, occurrence and exception between ``start`` and ``end`` (aware), in
    start order, following every page."""
    params = {"startDateTime": _iso(start), "endDateTime": _iso(end),
              "$select": ",".join(LIST_FIELDS), "$orderby": "start/dateTime",
              "$top": str(g.page_size)}
    return await walk(g, token, "me/calendarView", params, _event_page)


# The events of a calendar view page, by a digest of the page's bytes. Every calendar page asks
# Graph for the same fortnight again and mostly gets the same answer; decoding its JSON and
# making its events were a quarter of the agenda's CPU (bench/cpu_per_page.py --profile,
# 2026-12-03). The same bytes make the same events, so nothing can be stale: any change at
# Graph (a new event, a changeKey, a response) is new bytes. The events are frozen, and
# handing out the same objects lets the day layout be kept too (model.days).
_PAGES: Kept[tuple[list[Event], object]] = Kept(128)


def _event_page(resp: httpx.Response) -> tuple[list[Event], object]:
    digest = hashlib.blake2b(resp.content, digest_size=16).digest()
    kept = _PAGES.get(digest)
    if kept is not None:
        return kept
    rows, next_link = json_page(resp)
    return _PAGES.put(digest, ([_event(r) for r in rows], next_link))


async def get_event(g: GraphHttp, token: TokenSource, event_id: str) -> Event:
    return _event(await call(g, token, "GET", _path(event_id),
                             params={"$select": ",".join(DETAIL_FIELDS)}))


async def find_by_ical_uid(g: GraphHttp, token: TokenSource, ical_uid: str) -> Event | None:
    """The member's event carrying this iCalendar UID (a meeting request's UID), or None."""
    if not ical_uid or len(ical_uid) > 1024:
        return None
    from gateway.calendar.itip import exchange_ical_uid
    # An outside organiser's UID is not what Graph shows: Exchange wraps it in a
    # GlobalObjectId (gateway.calendar.itip). Ask for the UID as sent, then that form.
    for candidate in dict.fromkeys((ical_uid, exchange_ical_uid(ical_uid))):
        literal = candidate.replace("'", "''")
        rows = await pages(g, token, "me/events", {
            "$filter": f"iCalUId eq '{literal}'", "$select": ",".join(DETAIL_FIELDS),
            "$top": "5"})
        if rows:
            return _event(rows[0])
    return None


# ---------------------------------------------------------------------- changing


async def create_event(g: GraphHttp, token: TokenSource, body: dict[str, Any]) -> Event:
    """Create an event from Graph-shaped JSON (``EventDraft.to_graph``)."""
    return _event(await call(g, token, "POST", "me/events", json=body))


async def update_event(g: GraphHttp, token: TokenSource, event_id: str,
                       changes: dict[str, Any]) -> Event:
    return _event(await call(g, token, "PATCH", _path(event_id), json=changes))


async def move_event(g: GraphHttp, token: TokenSource, event_id: str, start: datetime,
                     end: datetime) -> Event:
    """Move an event to new wall times in the member's zone (naive datetimes)."""
    from gateway.calendar.zones import format_wall
    return await update_event(g, token, event_id, {
        "start": {"dateTime": format_wall(start), "timeZone": g.timezone},
        "end": {"dateTime": format_wall(end), "timeZone": g.timezone}})


async def delete_event(g: GraphHttp, token: TokenSource, event_id: str) -> None:
    await send(g, token, "DELETE", _path(event_id))


async def cancel_event(g: GraphHttp, token: TokenSource, event_id: str,
                       comment: str = "") -> None:
    """Cancel a meeting the member organises, telling the attendees."""
    await send(g, token, "POST", _path(event_id) + "/cancel", json={"comment": comment[:2000]})


async def respond(g: GraphHttp, token: TokenSource, event: str, answer: str,
                  comment: str = "", send_response: bool = True, *,
                  by_ical_uid: bool = False) -> Event | None:
    """Answer an invitation: ``answer`` is accept | tentative | decline. ``event`` is a Graph
    event id, or with ``by_ical_uid=True`` an iCalendar UID from a meeting request in mail.
    Returns the event answered (None if it was found only by UID and is gone)."""
    action = ANSWERS.get(answer)
    if action is None:
        raise CalendarError("Choose accept, tentative or decline.")
    found: Event | None = None
    event_id = event
    if by_ical_uid:
        found = await find_by_ical_uid(g, token, event)
        if found is None:
            raise NotFound("That invitation is not in your calendar. It may have been "
                           "cancelled or already declined.")
        event_id = found.id
    await send(g, token, "POST", _path(event_id) + "/" + action,
                json={"comment": comment[:2000], "sendResponse": bool(send_response)})
    return found
