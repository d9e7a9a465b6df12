"""A stand-in for Microsoft Graph's calendar (v1.0), for `gateway demo` and the tests.

It owns each sample member's calendar, in memory, and serves the part of Graph the gateway
uses, in Graph's documented shapes: ``/me/calendarView`` (recurring series expanded into
occurrences with ``seriesMasterId`` and ``type``; ``$select``, ``$top``, ``$orderby``; paging by
``@odata.nextLink`` carrying a ``$skiptoken``), ``/me/events`` (``$filter=iCalUId eq '...'``),
GET/POST/PATCH/DELETE of an event, the ``accept``/``tentativelyAccept``/``decline`` and
``cancel`` actions (202, no body), ``Prefer: outlook.timezone`` (dateTime/timeZone pairs) and
error bodies ``{"error": {"code", "message", "innerError"}}``. Bearer tokens are checked with
the dev stack's signer (audience https://graph.microsoft.com, ``scp`` Calendars.*).

It also owns the controls tests and rehearsals use to make Graph misbehave: throttle the next
requests (429 + Retry-After), answer 503, hang, or refuse tokens (401); and it counts requests.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import json
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.calendar.zones import UnknownZone, format_wall, parse_wall, zone
from gateway.devstack.graph_directory import GraphDirectory
from gateway.devstack.graph_mailbox import GraphMailbox
from gateway.devstack.graph_people import GraphPeople
from gateway.devstack.graph_seed import Seed, seeds
from gateway.devstack.tokens import GRAPH_AUDIENCE, TokenSigner
from gateway.devstack.users import by_email, by_oid

DEFAULT_PAGE = 10       # Graph's default page size for calendarView
MAX_PAGE = 1000
READ_SCOPES = {"calendars.read", "calendars.readwrite", "calendars.readbasic"}
WRITE_SCOPES = {"calendars.readwrite"}
_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_ANSWERS = {"accept": "accepted", "tentativelyAccept": "tentativelyAccepted",
            "decline": "declined"}
_HANG_POLL = 0.05


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _not_found() -> GraphError:
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


@dataclass
class Fault:
    kind: str                 # "status" | "hang" | "token"
    status: int = 0
    retry_after: int | None = None
    seconds: float = 0.0


@dataclass
class Stored:
    """A single event or a series master, as the mailbox holds it (wall times in ``tz``)."""

    id: str
    ical_uid: str
    seed: Seed
    is_organizer: bool
    created: datetime
    modified: datetime
    change_key: str = ""
    # Per-occurrence changes of a series, keyed by the occurrence's original start date.
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Instance:
    """One row of a calendar view: a single event, or one occurrence of a series."""

    id: str
    master: Stored
    start: datetime           # wall time in master.seed.tz
    end: datetime
    kind: str                 # singleInstance | occurrence | exception | seriesMaster
    response: str
    subject: str
    start_utc: datetime
    end_utc: datetime


def wrap_uid(uid: str) -> str:
    """The iCalUId Exchange gives a meeting whose invitation carried a third-party UID (not
    an Outlook GlobalObjectId): the UID inside a GlobalObjectId with the "vCal-Uid" marker,
    instance date and creation time zero, in upper-case hex (MS-OXCICAL 2.1.3.1.1.20.26;
    byte layout in MS-ASEMAIL 4.3 example 2). Filtering on the UID as sent finds nothing."""
    data = b"vCal-Uid\x01\x00\x00\x00" + uid.encode("utf-8") + b"\x00"
    goid = (bytes.fromhex("040000008200E00074C5B7101A82E008") + b"\x00" * 20
            + len(data).to_bytes(4, "little") + data)
    return goid.hex().upper()


def _new_id() -> str:
    # Shaped like Exchange ids: a long URL-safe base64 string with padding.
    raw = b"\x00\x00\x8d\x00" + uuid.uuid4().bytes + secrets.token_bytes(12)
    return "AAMkAG" + base64.urlsafe_b64encode(raw).decode()


def _utc(wall: datetime, tz: str) -> datetime:
    return wall.replace(tzinfo=zone(tz)).astimezone(UTC)


def _parse_iso(value: str) -> datetime:
    """startDateTime/endDateTime: ISO 8601; without an offset Graph reads UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise GraphError(400, "ErrorInvalidParameter",
                         f"The value '{value[:40]}' of parameter 'StartDateTime' is invalid.")\
            from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class Calendar:
    """One member's calendar."""

    def __init__(self, oid: str) -> None:
        self.oid = oid
        self.events: dict[str, Stored] = {}

    def add(self, seed: Seed, now: datetime) -> Stored:
        ical_uid = wrap_uid(seed.ics_uid) if seed.ics_uid else (
            "040000008200E00074C5B7101A82E008" + uuid.uuid4().hex.upper())
        ev = Stored(_new_id(), ical_uid, seed, seed.organizer is None, now, now,
                    secrets.token_urlsafe(12))
        self.events[ev.id] = ev
        return ev

    # -- expansion
    def _occurrence_dates(self, ev: Stored) -> list[date]:
        rec = ev.seed.recurrence or {}
        pattern, rng = rec.get("pattern", {}), rec.get("range", {})
        first = date.fromisoformat(rng.get("startDate") or ev.seed.start.date().isoformat())
        step = max(1, int(pattern.get("interval", 1)))
        limit = int(rng.get("numberOfOccurrences") or 0) if rng.get("type") == "numbered" else 0
        until = date.fromisoformat(rng["endDate"]) if rng.get("type") == "endDate" else \
            first + timedelta(days=3 * 366)
        wanted = {_DAYS.index(d.lower()) for d in pattern.get("daysOfWeek", [])} or \
            {ev.seed.start.weekday()}
        out: list[date] = []
        d = first
        while d <= until and (not limit or len(out) < limit):
            if pattern.get("type") == "daily":
                out.append(d)
                d += timedelta(days=step)
                continue
            week = (d - (first - timedelta(days=first.weekday()))).days // 7
            if d.weekday() in wanted and week % step == 0:
                out.append(d)
            d += timedelta(days=1)
        return out

    def instances(self, expand: bool) -> list[Instance]:
        out: list[Instance] = []
        for ev in self.events.values():
            s = ev.seed
            if s.recurrence is None or not expand:
                kind = "seriesMaster" if s.recurrence else "singleInstance"
                out.append(Instance(ev.id, ev, s.start, s.end, kind, s.response, s.subject,
                                    _utc(s.start, s.tz), _utc(s.end, s.tz)))
                continue
            length = s.end - s.start
            for d in self._occurrence_dates(ev):
                key = d.isoformat()
                over = ev.overrides.get(key, {})
                if over.get("deleted"):
                    continue
                start = over.get("start") or datetime.combine(d, s.start.time())
                end = over.get("end") or start + length
                kind = "exception" if {"start", "end", "subject"} & over.keys() else "occurrence"
                out.append(Instance(f"{ev.id}_{d:%Y%m%d}", ev, start, end, kind,
                                    over.get("response", s.response),
                                    over.get("subject", s.subject),
                                    _utc(start, s.tz), _utc(end, s.tz)))
        return out

    def find(self, event_id: str) -> Instance:
        if event_id in self.events:
            return next(i for i in self.instances(expand=False) if i.id == event_id)
        master_id, _, day = event_id.rpartition("_")
        if master_id in self.events and len(day) == 8 and day.isdigit():
            for inst in self.instances(expand=True):
                if inst.id == event_id:
                    return inst
        raise _not_found()


class GraphStandIn:
    def __init__(self, signer: TokenSigner, anchor: date | None = None) -> None:
        self.signer = signer
        self.anchor = anchor
        self.base_url = ""
        self.requests = 0
        self.sent: list[dict[str, Any]] = []    # responses and cancellations "sent" by mail
        self._faults: collections.deque[Fault] = collections.deque()
        self._released = False
        self._lock = threading.Lock()
        self.calendars: dict[str, Calendar] = {}
        self.directory = GraphDirectory(signer)    # groups, for checking a drill group
        self.mailbox = GraphMailbox(signer)        # automatic replies
        self.people = GraphPeople(signer)          # address suggestions
        self.app = Starlette(routes=[
            Route("/v1.0/me/calendarView", self._calendar_view, methods=["GET"]),
            Route("/v1.0/me/calendar/calendarView", self._calendar_view, methods=["GET"]),
            Route("/v1.0/me/events", self._events, methods=["GET", "POST"]),
            Route("/v1.0/me/events/{event_id}", self._event, methods=["GET", "PATCH", "DELETE"]),
            Route("/v1.0/me/events/{event_id}/{action}", self._action, methods=["POST"]),
            Route("/v1.0/", self._root, methods=["GET"]),
            Route("/v1.0/users/{user}/calendar", self._user_calendar, methods=["GET"]),
            *self.directory.routes(),
            *self.mailbox.routes(),
            *self.people.routes(),
            Route("/v1.0/me/getMemberObjects", self._member_objects, methods=["POST"]),
        ])

    # ------------------------------------------------------------------ controls
    def reset(self) -> None:
        """Fresh sample calendars, no faults, counters at zero."""
        with self._lock:
            self.calendars.clear()
            self.mailbox.reset()
            self.people.reset()
            self._faults.clear()
            self.sent.clear()
            self.requests = 0
            self._released = True

    def throttle(self, count: int = 1, retry_after: int = 1) -> None:
        self._add(Fault("status", 429, retry_after), count)

    def unavailable(self, count: int = 1, retry_after: int | None = None) -> None:
        self._add(Fault("status", 503, retry_after), count)

    def hang(self, count: int = 1, seconds: float = 30.0) -> None:
        self._add(Fault("hang", seconds=seconds), count)

    def refuse_tokens(self, count: int = 1) -> None:
        """The next ``count`` requests get 401 as if the token had expired."""
        self._add(Fault("token"), count)

    def _add(self, fault: Fault, count: int) -> None:
        with self._lock:
            self._released = False
            self._faults.extend(copy.copy(fault) for _ in range(count))

    def calendar(self, oid: str) -> Calendar:
        """The member's calendar, seeded on first use."""
        with self._lock:
            cal = self.calendars.get(oid)
            if cal is None:
                cal = self.calendars[oid] = Calendar(oid)
                user = by_oid(oid)
                if user is not None:
                    now = datetime.now(UTC)
                    anchor = self.anchor or now.astimezone(zone("Europe/London")).date()
                    for s in seeds(user, anchor):
                        cal.add(s, now)
            return cal

    def add_events(self, oid: str, items: list[Seed]) -> list[str]:
        cal = self.calendar(oid)
        now = datetime.now(UTC)
        return [cal.add(s, now).id for s in items]

    # ------------------------------------------------------------------ plumbing
    async def _enter(self, request: Request, write: bool) -> Calendar:
        with self._lock:
            self.requests += 1
            fault = self._faults.popleft() if self._faults else None
        if fault is not None and fault.kind == "hang":
            waited = 0.0
            while waited < fault.seconds and not self._released:
                await asyncio.sleep(_HANG_POLL)
                waited += _HANG_POLL
        if fault is not None and fault.kind == "status":
            code, msg = (("TooManyRequests", "Application is over its MailboxConcurrency limit.")
                         if fault.status == 429 else
                         ("serviceNotAvailable", "The service is temporarily unavailable."))
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
            raise GraphError(fault.status, code, msg, headers)
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or (fault is not None and fault.kind == "token"):
            raise self._unauthorized("Access token has expired or is not yet valid.")
        try:
            claims = self.signer.verify(auth[7:], GRAPH_AUDIENCE)
        except jwt.ExpiredSignatureError:
            raise self._unauthorized("Access token has expired or is not yet valid.") from None
        except jwt.InvalidTokenError:
            raise self._unauthorized("IDX14100: JWT is not well formed.") from None
        scopes = {s.lower() for s in str(claims.get("scp", "")).split()}
        if not scopes & (WRITE_SCOPES if write else READ_SCOPES):
            raise GraphError(403, "ErrorAccessDenied",
                             "Access is denied. Check credentials and try again.")
        oid = str(claims.get("oid", ""))
        if not oid:
            raise self._unauthorized("The token has no user.")
        return self.calendar(oid)

    @staticmethod
    def _unauthorized(message: str) -> GraphError:
        return GraphError(401, "InvalidAuthenticationToken", message, {
            "WWW-Authenticate": 'Bearer realm="", authorization_uri='
                                '"https://login.microsoftonline.com/common/oauth2/authorize", '
                                'client_id="00000003-0000-0000-c000-000000000000"'})

    @staticmethod
    def _error(err: GraphError) -> JSONResponse:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        rid = str(uuid.uuid4())
        body = {"error": {"code": err.code, "message": err.message,
                          "innerError": {"date": now, "request-id": rid,
                                         "client-request-id": rid}}}
        return JSONResponse(body, status_code=err.status,
                            headers={"request-id": rid, **err.headers})

    @staticmethod
    def _preferred_zone(request: Request) -> str:
        for part in request.headers.get("prefer", "").split(","):
            name, _, value = part.strip().partition("=")
            if name.strip().lower() == "outlook.timezone" and value:
                tz = value.strip().strip('"')
                try:
                    zone(tz)
                except UnknownZone:
                    raise GraphError(400, "TimeZoneNotSupportedException",
                                     f"A valid TimeZone value must be specified. The following "
                                     f"TimeZone value is not supported: '{tz[:40]}'.") from None
                return tz
        return "UTC"

    async def _json_body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload. Please "
                             "ensure Content-Type header is set and payload is of valid JSON "
                             "format.") from None
        if not isinstance(body, dict):
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload.")
        return body

    async def _run(self, request: Request, write: bool, handler: Any) -> Response:
        try:
            cal = await self._enter(request, write)
            result: Response = await handler(cal)
            return result
        except GraphError as err:
            return self._error(err)

    # ------------------------------------------------------------------ rendering
    def _render(self, inst: Instance, tz: str, select: set[str] | None) -> dict[str, Any]:
        ev, s = inst.master, inst.master.seed

        def when(wall: datetime) -> dict[str, str]:
            if s.all_day:
                # All-day events keep midnight in their own zone, as Exchange stores them.
                return {"dateTime": format_wall(wall), "timeZone": tz}
            local = _utc(wall, s.tz).astimezone(zone(tz)).replace(tzinfo=None)
            return {"dateTime": format_wall(local), "timeZone": tz}

        def person(name: str, address: str) -> dict[str, Any]:
            return {"emailAddress": {"name": name, "address": address}}

        owner = by_oid(self._owner_of(ev))
        organizer = s.organizer or ((owner.name, owner.email) if owner else ("", ""))
        attendees = [{"type": a.get("type", "required"),
                      "status": {"response": a.get("response", "none"),
                                 "time": "0001-01-01T00:00:00Z"},
                      **person(a["name"], a["address"])} for a in s.attendees]
        full: dict[str, Any] = {
            "@odata.etag": f'W/"{ev.change_key}"',
            "id": inst.id,
            "createdDateTime": ev.created.strftime("%Y-%m-%dT%H:%M:%S.%f0Z"),
            "lastModifiedDateTime": ev.modified.strftime("%Y-%m-%dT%H:%M:%S.%f0Z"),
            "changeKey": ev.change_key,
            "categories": [],
            "originalStartTimeZone": s.tz,
            "originalEndTimeZone": s.tz,
            "iCalUId": ev.ical_uid,
            "reminderMinutesBeforeStart": 15,
            "isReminderOn": True,
            "hasAttachments": False,
            "subject": inst.subject,
            "bodyPreview": _preview(s.body),
            "importance": "normal",
            "sensitivity": "normal",
            "isAllDay": s.all_day,
            "isCancelled": False,
            "isOrganizer": ev.is_organizer,
            "responseRequested": True,
            "seriesMasterId": ev.id if inst.kind in ("occurrence", "exception") else None,
            "showAs": "free" if inst.response in ("none", "notResponded") else "busy",
            "type": inst.kind,
            "webLink": f"https://outlook.office365.com/owa/?itemid={inst.id}&exvsurl=1&path="
                       "/calendar/item",
            "onlineMeetingUrl": None,
            "isOnlineMeeting": bool(s.join_url),
            "onlineMeetingProvider": "teamsForBusiness" if s.join_url else "unknown",
            "allowNewTimeProposals": True,
            "responseStatus": {"response": inst.response, "time": "0001-01-01T00:00:00Z"},
            "body": {"contentType": "html", "content": f"<html><body>{s.body}</body></html>"},
            "start": when(inst.start),
            "end": when(inst.end),
            "location": {"displayName": s.location, "locationType": "default",
                         "uniqueIdType": "unknown"},
            "locations": [{"displayName": s.location}] if s.location else [],
            "recurrence": s.recurrence if inst.kind == "seriesMaster" else None,
            "attendees": attendees,
            "organizer": person(*organizer),
            "onlineMeeting": {"joinUrl": s.join_url} if s.join_url else None,
        }
        if select is None:
            return full
        return {k: v for k, v in full.items() if k in select or k in ("id", "@odata.etag")}

    def _owner_of(self, ev: Stored) -> str:
        for oid, cal in self.calendars.items():
            if ev.id in cal.events:
                return oid
        return ""

    # ------------------------------------------------------------------ routes
    async def _root(self, request: Request) -> Response:
        with self._lock:
            self.requests += 1
        return JSONResponse({"@odata.context": f"{self.base_url}/v1.0/$metadata",
                             "value": [{"name": "users", "kind": "EntitySet", "url": "users"}]})

    async def _user_calendar(self, request: Request) -> Response:
        """``/users/{id|upn}/calendar``: what the health canary reads with an app-only token
        (application permission Calendars.Read, carried in ``roles``)."""
        try:
            with self._lock:
                self.requests += 1
                fault = self._faults.popleft() if self._faults else None
            if fault is not None and fault.kind == "status":
                raise GraphError(fault.status, "serviceNotAvailable", "Service unavailable.",
                                 {"Retry-After": str(fault.retry_after)}
                                 if fault.retry_after else {})
            auth = request.headers.get("authorization", "")
            try:
                claims = self.signer.verify(auth.removeprefix("Bearer "), GRAPH_AUDIENCE)
            except jwt.InvalidTokenError:
                raise self._unauthorized("Access token has expired or is not yet valid.")\
                    from None
            roles = {r.lower() for r in claims.get("roles", [])}
            if not roles & READ_SCOPES:
                raise GraphError(403, "ErrorAccessDenied",
                                 "Access is denied. Check credentials and try again.")
            who = request.path_params["user"]
            user = by_oid(who) or by_email(who)
            if user is None:
                raise GraphError(404, "ErrorInvalidUser",
                                 f"The requested user '{who[:80]}' is invalid.")
            return JSONResponse({
                "@odata.context": f"{self.base_url}/v1.0/$metadata#users('{user.oid}')/calendar/"
                                  "$entity",
                "id": "AAMkAG" + base64.urlsafe_b64encode(user.oid.encode()).decode(),
                "name": "Calendar", "canEdit": True, "isDefaultCalendar": True,
                "owner": {"name": user.name, "address": user.email}})
        except GraphError as err:
            return self._error(err)

    async def _member_objects(self, request: Request) -> Response:
        """``POST /me/getMemberObjects``: the signed-in user's group ids, transitively, for an
        app whose ID token had group overage. Microsoft's "directoryObject: getMemberObjects"
        page: for the signed-in user the least privileged delegated permission is User.Read;
        ``securityEnabledOnly`` is required in the body."""
        try:
            with self._lock:
                self.requests += 1
            auth = request.headers.get("authorization", "")
            try:
                claims = self.signer.verify(auth.removeprefix("Bearer "), GRAPH_AUDIENCE)
            except jwt.InvalidTokenError:
                raise self._unauthorized("Access token has expired or is not yet valid.")\
                    from None
            scopes = {s.lower() for s in str(claims.get("scp", "")).split()}
            if not scopes & {"user.read", "user.read.all", "directory.read.all",
                             "groupmember.read.all"}:
                raise GraphError(403, "Authorization_RequestDenied",
                                 "Insufficient privileges to complete the operation.")
            body = await self._json_body(request)
            if not isinstance(body.get("securityEnabledOnly"), bool):
                raise GraphError(400, "Request_BadRequest",
                                 "Invalid request: securityEnabledOnly is required.")
            user = by_oid(str(claims.get("oid", "")))
            groups = list(user.groups) if user else []
            return JSONResponse({
                "@odata.context": f"{self.base_url}/v1.0/$metadata#Collection(Edm.String)",
                "value": groups})
        except GraphError as err:
            return self._error(err)

    async def _calendar_view(self, request: Request) -> Response:
        async def handle(cal: Calendar) -> Response:
            q = request.query_params
            missing = [p for p in ("startDateTime", "endDateTime") if not q.get(p)]
            if missing:
                raise GraphError(400, "ErrorInvalidParameter",
                                 "This request requires a time window specified by the query "
                                 "string parameters StartDateTime and EndDateTime.")
            start, end = _parse_iso(q["startDateTime"]), _parse_iso(q["endDateTime"])
            tz = self._preferred_zone(request)
            rows = [i for i in cal.instances(expand=True)
                    if self._overlaps(i, start, end)]
            return self._page(request, rows, tz, f"users('{cal.oid}')/calendarView")
        return await self._run(request, False, handle)

    def _overlaps(self, inst: Instance, start: datetime, end: datetime) -> bool:
        if inst.master.seed.all_day:
            # An all-day event covers its dates in the member's zone.
            s, e = _utc(inst.start, inst.master.seed.tz), _utc(inst.end, inst.master.seed.tz)
        else:
            s, e = inst.start_utc, inst.end_utc
        return s < end and e > start

    def _page(self, request: Request, rows: list[Instance], tz: str,
              context: str) -> Response:
        q = request.query_params
        order = (q.get("$orderby") or "start/dateTime").strip()
        field_name, _, direction = order.partition(" ")
        keys = {"start/dateTime": lambda i: i.start_utc, "end/dateTime": lambda i: i.end_utc,
                "subject": lambda i: i.subject.lower()}
        if field_name not in keys:
            raise GraphError(400, "ErrorInvalidProperty",
                             f"The property '{field_name[:40]}' does not support sorting.")
        rows.sort(key=lambda i: (keys[field_name](i), i.id),
                  reverse=direction.strip().lower() == "desc")
        try:
            top = int(q.get("$top") or DEFAULT_PAGE)
            skip = int(json.loads(base64.urlsafe_b64decode(q["$skiptoken"]))["o"]) \
                if q.get("$skiptoken") else 0
        except (ValueError, KeyError, TypeError):
            raise GraphError(400, "ErrorInvalidUrlQuery",
                             "The value of $top or $skiptoken is invalid.") from None
        top = max(1, min(top, MAX_PAGE))
        select = {s.strip() for s in q["$select"].split(",")} if q.get("$select") else None
        page = rows[skip:skip + top]
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/v1.0/$metadata#{context}",
            "value": [self._render(i, tz, select) for i in page],
        }
        if skip + top < len(rows):
            params = {k: v for k, v in q.items() if k != "$skiptoken"}
            params["$skiptoken"] = base64.urlsafe_b64encode(
                json.dumps({"o": skip + top}).encode()).decode()
            body["@odata.nextLink"] = f"{self.base_url}{request.url.path}?{urlencode(params)}"
        return JSONResponse(body, headers={"Preference-Applied": f'outlook.timezone="{tz}"'})

    async def _events(self, request: Request) -> Response:
        write = request.method == "POST"

        async def handle(cal: Calendar) -> Response:
            tz = self._preferred_zone(request)
            if write:
                body = await self._json_body(request)
                seed = self._seed_from(body, None)
                ev = cal.add(seed, datetime.now(UTC))
                inst = cal.find(ev.id)
                return JSONResponse(self._render(inst, tz, None), status_code=201)
            flt = request.query_params.get("$filter", "")
            rows = cal.instances(expand=False)
            if flt:
                field_name, op, value = [*flt.split(" ", 2), "", ""][:3]
                if field_name.lower() != "icaluid" or op != "eq" or \
                        not (value.startswith("'") and value.endswith("'")):
                    raise GraphError(400, "ErrorInvalidUrlQueryFilter",
                                     "The query filter contains one or more invalid nodes.")
                uid = value[1:-1].replace("''", "'")
                rows = [i for i in rows if i.master.ical_uid == uid]
            return self._page(request, rows, tz, f"users('{cal.oid}')/events")
        return await self._run(request, write, handle)

    async def _event(self, request: Request) -> Response:
        event_id = request.path_params["event_id"]
        write = request.method != "GET"

        async def handle(cal: Calendar) -> Response:
            tz = self._preferred_zone(request)
            inst = cal.find(event_id)
            if request.method == "GET":
                sel = request.query_params.get("$select")
                select = {s.strip() for s in sel.split(",")} if sel else None
                return JSONResponse(self._render(inst, tz, select))
            if request.method == "DELETE":
                self._remove(cal, inst)
                return Response(status_code=204)
            body = await self._json_body(request)
            self._patch(cal, inst, body)
            return JSONResponse(self._render(cal.find(inst.id), tz, None))
        return await self._run(request, write, handle)

    async def _action(self, request: Request) -> Response:
        event_id, action = request.path_params["event_id"], request.path_params["action"]

        async def handle(cal: Calendar) -> Response:
            if action not in (*_ANSWERS, "cancel"):
                raise GraphError(400, "BadRequest",
                                 f"Resource not found for the segment '{action[:40]}'.")
            inst = cal.find(event_id)
            body = await self._json_body(request)
            comment = str(body.get("comment") or body.get("Comment") or "")
            if action == "cancel":
                if not inst.master.is_organizer:
                    raise GraphError(400, "ErrorAccessDenied", "Your request can't be "
                                     "completed. You need to be an organizer to cancel a "
                                     "meeting.")
                self._remove(cal, inst)
                self.sent.append({"oid": cal.oid, "event": inst.id, "kind": "cancel",
                                  "comment": comment})
                return Response(status_code=202)
            if inst.master.is_organizer:
                raise GraphError(400, "ErrorInvalidRequest", "Your request can't be completed. "
                                 "You can't respond to a meeting you organized.")
            answer = _ANSWERS[action]
            send = body.get("sendResponse", True)
            if not isinstance(send, bool):
                raise GraphError(400, "BadRequest", "Invalid value for 'sendResponse'.")
            if answer == "declined":
                self._remove(cal, inst)     # Exchange moves a declined meeting out
            else:
                self._set(cal, inst, {"response": answer})
            if send:
                self.sent.append({"oid": cal.oid, "event": inst.id, "kind": answer,
                                  "comment": comment})
            return Response(status_code=202)
        return await self._run(request, True, handle)

    # ------------------------------------------------------------------ changes
    def _remove(self, cal: Calendar, inst: Instance) -> None:
        if inst.kind in ("occurrence", "exception"):
            inst.master.overrides.setdefault(_occurrence_key(inst), {})["deleted"] = True
        else:
            cal.events.pop(inst.master.id, None)

    def _set(self, cal: Calendar, inst: Instance, changes: dict[str, Any]) -> None:
        ev = inst.master
        ev.modified = datetime.now(UTC)
        ev.change_key = secrets.token_urlsafe(12)
        if inst.kind in ("occurrence", "exception"):
            ev.overrides.setdefault(_occurrence_key(inst), {}).update(changes)
            return
        s = ev.seed
        for k, v in changes.items():
            setattr(s, k, v)

    def _patch(self, cal: Calendar, inst: Instance, body: dict[str, Any]) -> None:
        s = inst.master.seed
        allowed = {"subject", "body", "start", "end", "isAllDay", "location", "attendees",
                   "showAs", "categories", "importance", "sensitivity", "isReminderOn",
                   "reminderMinutesBeforeStart"}
        unknown = set(body) - allowed
        if unknown:
            raise GraphError(400, "RequestBodyRead", f"The property '{sorted(unknown)[0][:40]}'"
                             " does not exist on type 'microsoft.graph.event'.")
        merged = Seed(s.subject, inst.start, inst.end, s.tz, s.all_day, s.location, s.body,
                      s.join_url, s.organizer, s.attendees, s.response, s.recurrence)
        new = self._seed_from(body, merged)
        if inst.kind in ("occurrence", "exception"):
            changes: dict[str, Any] = {}
            if "subject" in body:
                changes["subject"] = new.subject
            if "start" in body or "end" in body:
                # Stored in the series' zone, like the rest of it.
                changes["start"] = _utc(new.start, new.tz).astimezone(zone(s.tz)).replace(
                    tzinfo=None)
                changes["end"] = _utc(new.end, new.tz).astimezone(zone(s.tz)).replace(
                    tzinfo=None)
            self._set(cal, inst, changes)
            return
        self._set(cal, inst, {k: getattr(new, k) for k in
                              ("subject", "start", "end", "tz", "all_day", "location", "body",
                               "attendees")})

    @staticmethod
    def _seed_from(body: dict[str, Any], base: Seed | None) -> Seed:
        def when(key: str) -> tuple[datetime, str] | None:
            value = body.get(key)
            if value is None:
                return None
            try:
                wall = parse_wall(str(value["dateTime"]))
                tz = str(value.get("timeZone") or "UTC")
                zone(tz)
            except UnknownZone:
                raise GraphError(400, "TimeZoneNotSupportedException",
                                 "A valid TimeZone value must be specified.") from None
            except (KeyError, TypeError, ValueError):
                raise GraphError(400, "BadRequest",
                                 f"Cannot convert the literal to 'Edm.DateTimeOffset' for "
                                 f"'{key}'.") from None
            return wall, tz

        start, end = when("start"), when("end")
        if base is None and (start is None or end is None):
            raise GraphError(400, "ErrorInvalidRequest", "Start and End are required.")
        seed = base or Seed("", datetime.min, datetime.min)
        if start is not None:
            seed.start, seed.tz = start
        if end is not None:
            # Stored in one zone: the start's.
            seed.end = _utc(end[0], end[1]).astimezone(zone(seed.tz)).replace(tzinfo=None) \
                if end[1] != seed.tz else end[0]
        if "subject" in body:
            seed.subject = str(body["subject"] or "")[:255]
        if "isAllDay" in body:
            seed.all_day = bool(body["isAllDay"])
        if "location" in body:
            seed.location = str((body.get("location") or {}).get("displayName") or "")
        if "body" in body:
            content = str((body.get("body") or {}).get("content") or "")
            kind = str((body.get("body") or {}).get("contentType") or "text").lower()
            seed.body = content if kind == "html" else _text_to_html(content)
        if "attendees" in body:
            seed.attendees = [{"name": a["emailAddress"].get("name", ""),
                               "address": a["emailAddress"]["address"],
                               "type": a.get("type", "required"), "response": "none"}
                              for a in body.get("attendees") or []]
        if seed.end <= seed.start:
            raise GraphError(400, "ErrorInvalidRequest",
                             "Your request can't be completed. The end time must be after the "
                             "start time.")
        if seed.all_day and (seed.start.time() != datetime.min.time()
                             or seed.end.time() != datetime.min.time()):
            raise GraphError(400, "ErrorInvalidRequest", "Your request can't be completed. "
                             "All-day events must start and end at midnight.")
        if base is None:
            seed.response = "organizer"
        return seed


def _occurrence_key(inst: Instance) -> str:
    day = inst.id.rpartition("_")[2]
    return f"{day[:4]}-{day[4:6]}-{day[6:]}"


def _preview(html: str) -> str:
    import re
    text = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", html, flags=re.S | re.I)
    text = re.sub(r"<[^>]+>", "", text)
    return " ".join(text.split())[:255]


def _text_to_html(text: str) -> str:
    from html import escape
    return "".join(f"<p>{escape(line)}</p>" for line in text.splitlines() if line.strip())

