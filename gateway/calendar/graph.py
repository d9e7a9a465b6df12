"""The Microsoft Graph calendar adapter: small functions that take the app's ``GraphHttp`` (one
``httpx.AsyncClient``, built in the lifespan) and a member's token, and return view models.

Owns the wire: ``Prefer: outlook.timezone``, ``$select`` of only what is shown, paging by
``@odata.nextLink`` (followed only to Graph's own origin), and the mapping of Graph's answers
onto the gateway's error tree:

    401            -> one fresh token, then ReauthRequired (the member signs in again)
    403            -> Forbidden          404 -> NotFound          409/412 -> Conflict
    429, 503, 504  -> wait Retry-After (up to ``graph.retry_after_max_seconds``) and retry,
                      else UpstreamUnavailable carrying Retry-After
    400 and others -> CalendarError      network fault/timeout -> UpstreamUnavailable

Adapters raise; the web layer decides what the member sees. No token or event content is
logged: only Graph's error code and request id.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from gateway.calendar.model import ANSWERS, Event, parse_event
from gateway.config import Settings
from gateway.errors import (
    CalendarError,
    Conflict,
    Forbidden,
    GatewayError,
    NotFound,
    ReauthRequired,
    UpstreamError,
    UpstreamUnavailable,
)

log = logging.getLogger(__name__)

# What the pages show, and nothing more: Graph sends far less when asked.
LIST_FIELDS = ("subject", "start", "end", "isAllDay", "location", "isCancelled", "isOrganizer",
               "responseStatus", "responseRequested", "type", "seriesMasterId", "showAs",
               "onlineMeeting")
DETAIL_FIELDS = (*LIST_FIELDS, "body", "bodyPreview", "attendees", "organizer", "iCalUId",
                 "onlineMeetingUrl")
MAX_PAGES = 50
MAX_RETRIES = 2

# A member's token: called with ``fresh=True`` after Graph refused the last one.
TokenSource = Callable[[bool], Awaitable[str]]


@dataclass
class GraphHttp:
    """The app's one Graph client and the retry policy that goes with it."""

    client: httpx.AsyncClient
    timezone: str = "Europe/London"
    retry_after_max: float = 10.0
    page_size: int = 100
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)

    @classmethod
    def from_settings(cls, settings: Settings,
                      transport: httpx.AsyncBaseTransport | None = None) -> GraphHttp:
        ca = settings.get("graph.ca_file") or settings.get("entra.ca_file")
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else True
        tz = settings.get("general.timezone")
        client = httpx.AsyncClient(
            base_url=settings.get("graph.base_url").rstrip("/") + "/", verify=verify,
            trust_env=False, transport=transport,
            timeout=httpx.Timeout(settings.get("graph.timeout_seconds")),
            headers={"Accept": "application/json", "Prefer": f'outlook.timezone="{tz}"'})
        return cls(client, tz, settings.get("graph.retry_after_max_seconds"),
                   settings.get("graph.page_size"))

    async def aclose(self) -> None:
        await self.client.aclose()

    @property
    def origin(self) -> str:
        u = urlsplit(str(self.client.base_url))
        return f"{u.scheme}://{u.netloc}"


def static_token(token: str) -> TokenSource:
    """A token source for one token that cannot be refreshed (tests, the benchmark)."""
    async def get(fresh: bool) -> str:
        if fresh:
            raise ReauthRequired()
        return token
    return get


def member_token(entra: Any, account_id: str) -> TokenSource:
    """The member's Graph token from msal's silent acquisition (``Entra.graph_token``)."""
    async def get(fresh: bool) -> str:
        token: str = await entra.graph_token(account_id, force_refresh=fresh)
        return token
    return get


def _retry_after(resp: httpx.Response) -> int | None:
    value = resp.headers.get("retry-after", "").strip()
    return int(value) if value.isdigit() else None


def _error(resp: httpx.Response) -> GatewayError:
    try:
        err = resp.json().get("error") or {}
        code, message = str(err.get("code") or ""), str(err.get("message") or "")
        request_id = str((err.get("innerError") or {}).get("request-id") or "")
    except (ValueError, AttributeError):
        code = message = request_id = ""
    log.info("graph answered %s %s (request-id %s)", resp.status_code, code[:60], request_id)
    status = resp.status_code
    retry = _retry_after(resp)
    if status == 401:
        return ReauthRequired()
    if status == 403:
        return Forbidden("Exchange does not allow you to do that in this calendar.")
    if status == 404:
        return NotFound("That event is no longer in your calendar. It may have been moved, "
                        "cancelled or deleted.")
    if status in (409, 412):
        return Conflict("The event changed meanwhile. Reload it and try again.")
    if status == 429:
        return UpstreamUnavailable("Exchange is busy and asked the gateway to slow down. "
                                   f"Please try again in {retry or 30} seconds.",
                                   retry_after=retry or 30)
    if status in (502, 503, 504):
        return UpstreamUnavailable("The calendar service is unavailable just now. Please try "
                                   "again shortly.", retry_after=retry)
    if 400 <= status < 500:
        # Graph's messages for refused actions are written for people ("You need to be an
        # organizer to cancel a meeting."); show them, bounded.
        text = message[:200] if message and code.startswith(("Error", "TimeZone")) else ""
        return CalendarError(f"Exchange refused that. {text}".strip())
    return UpstreamError("The calendar service did not answer as expected. Please try again.")


async def _send(g: GraphHttp, token: TokenSource, method: str, url: str,
                **kw: Any) -> httpx.Response:
    """One Graph call with the token, retry and error policy; returns a 2xx response."""
    fresh = False
    retries = 0
    waited = 0.0
    while True:
        bearer = await token(fresh)
        try:
            resp = await g.client.request(method, url, headers={
                "Authorization": f"Bearer {bearer}"}, **kw)
        except httpx.TimeoutException:
            raise UpstreamUnavailable("The calendar service did not answer in time. Please try "
                                      "again shortly.") from None
        except httpx.TransportError as exc:
            log.warning("graph unreachable: %s", type(exc).__name__)
            raise UpstreamUnavailable("The calendar service cannot be reached just now. "
                                      "Please try again shortly.") from None
        if resp.is_success:
            return resp
        if resp.status_code == 401 and not fresh:
            fresh = True
            continue
        retry = _retry_after(resp)
        if resp.status_code in (429, 503, 504) and retry is not None and \
                retries < MAX_RETRIES and waited + retry <= g.retry_after_max:
            retries += 1
            waited += retry
            await g.sleep(float(retry))
            continue
        raise _error(resp)


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise UpstreamError("The calendar service sent something the gateway cannot read.")
    return body


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


async def _pages(g: GraphHttp, token: TokenSource, url: str,
                 params: dict[str, str] | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        body = _json(await _send(g, token, "GET", url, params=params))
        value = body.get("value")
        if not isinstance(value, list):
            raise UpstreamError("The calendar service sent a list the gateway cannot read.")
        rows.extend(v for v in value if isinstance(v, dict))
        next_link = body.get("@odata.nextLink")
        if not next_link:
            return rows
        # The next link carries all the query; never send the member's token anywhere but
        # Graph's own origin.
        if not isinstance(next_link, str) or not next_link.startswith(g.origin + "/"):
            raise UpstreamError("The calendar service sent a next page the gateway will not "
                                "follow.")
        url, params = next_link, None
    log.warning("calendar view stopped after %d pages", MAX_PAGES)
    return rows


# ---------------------------------------------------------------------- reading


async def member_groups(g: GraphHttp, token: TokenSource) -> list[str]:
    """The signed-in member's group ids (transitive, security groups), for group overage:
    ``POST /me/getMemberObjects`` needs only User.Read for the signed-in user."""
    body = _json(await _send(g, token, "POST", "me/getMemberObjects",
                             json={"securityEnabledOnly": True}))
    value = body.get("value")
    if not isinstance(value, list):
        raise UpstreamError("Microsoft Graph sent a group list the gateway cannot read.")
    return [str(v) for v in value if isinstance(v, str)]


async def calendar_view(g: GraphHttp, token: TokenSource, start: datetime,
                        end: datetime) -> list[Event]:
    """Every event, occurrence and exception between ``start`` and ``end`` (aware), in
    start order, following every page."""
    params = {"startDateTime": _iso(start), "endDateTime": _iso(end),
              "$select": ",".join(LIST_FIELDS), "$orderby": "start/dateTime",
              "$top": str(g.page_size)}
    rows = await _pages(g, token, "me/calendarView", params)
    return [_event(r) for r in rows]


async def get_event(g: GraphHttp, token: TokenSource, event_id: str) -> Event:
    resp = await _send(g, token, "GET", _path(event_id),
                       params={"$select": ",".join(DETAIL_FIELDS)})
    return _event(_json(resp))


async def find_by_ical_uid(g: GraphHttp, token: TokenSource, ical_uid: str) -> Event | None:
    """The member's event carrying this iCalendar UID (a meeting request's UID), or None."""
    if not ical_uid or len(ical_uid) > 1024:
        return None
    from gateway.calendar.itip import exchange_ical_uid
    # An outside organiser's UID is not what Graph shows: Exchange wraps it in a
    # GlobalObjectId (gateway.calendar.itip). Ask for the UID as sent, then that form.
    for candidate in dict.fromkeys((ical_uid, exchange_ical_uid(ical_uid))):
        literal = candidate.replace("'", "''")
        rows = await _pages(g, token, "me/events", {
            "$filter": f"iCalUId eq '{literal}'", "$select": ",".join(DETAIL_FIELDS),
            "$top": "5"})
        if rows:
            return _event(rows[0])
    return None


# ---------------------------------------------------------------------- changing


async def create_event(g: GraphHttp, token: TokenSource, body: dict[str, Any]) -> Event:
    """Create an event from Graph-shaped JSON (``EventDraft.to_graph``)."""
    return _event(_json(await _send(g, token, "POST", "me/events", json=body)))


async def update_event(g: GraphHttp, token: TokenSource, event_id: str,
                       changes: dict[str, Any]) -> Event:
    return _event(_json(await _send(g, token, "PATCH", _path(event_id), json=changes)))


async def move_event(g: GraphHttp, token: TokenSource, event_id: str, start: datetime,
                     end: datetime) -> Event:
    """Move an event to new wall times in the member's zone (naive datetimes)."""
    from gateway.calendar.zones import format_wall
    return await update_event(g, token, event_id, {
        "start": {"dateTime": format_wall(start), "timeZone": g.timezone},
        "end": {"dateTime": format_wall(end), "timeZone": g.timezone}})


async def delete_event(g: GraphHttp, token: TokenSource, event_id: str) -> None:
    await _send(g, token, "DELETE", _path(event_id))


async def cancel_event(g: GraphHttp, token: TokenSource, event_id: str,
                       comment: str = "") -> None:
    """Cancel a meeting the member organises, telling the attendees."""
    await _send(g, token, "POST", _path(event_id) + "/cancel", json={"comment": comment[:2000]})


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
    await _send(g, token, "POST", _path(event_id) + "/" + action,
                json={"comment": comment[:2000], "sendResponse": bool(send_response)})
    return found
