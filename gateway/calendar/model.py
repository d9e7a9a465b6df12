"""The calendar's view models: typed, frozen dataclasses built from Graph's JSON, and the
day-by-day layout the pages show. Owns time zones: every instant is an aware datetime, shown
in the member's zone (``general.timezone``), so BST/GMT changes come out right; all-day events
are dates, not instants.

Nothing here talks to the network or knows about HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Any

from gateway.calendar.zones import (
    UnknownZone,
    form_date,
    form_fields,
    form_time,
    format_wall,
    parse_wall,
    zone,
)
from gateway.kept import Kept

ANSWERS = {"accept": "accept", "tentative": "tentativelyAccept", "decline": "decline"}
RESPONSE_LABELS = {
    "accepted": "Accepted", "tentativelyAccepted": "Tentative", "declined": "Declined",
    "notResponded": "Not answered", "none": "Not answered", "organizer": "Organiser",
}


@dataclass(frozen=True)
class Person:
    name: str
    address: str

    @property
    def label(self) -> str:
        return self.name or self.address


@dataclass(frozen=True)
class Attendee:
    person: Person
    kind: str              # required | optional | resource
    response: str

    @property
    def response_label(self) -> str:
        return RESPONSE_LABELS.get(self.response, "Not answered")


@dataclass(frozen=True)
class Event:
    id: str
    subject: str
    start: datetime        # UTC; for all-day events midnight UTC of the first day
    end: datetime          # UTC; exclusive
    all_day: bool
    location: str = ""
    join_url: str = ""
    organizer: Person = Person("", "")
    attendees: tuple[Attendee, ...] = ()
    response: str = "none"
    is_organizer: bool = False
    is_cancelled: bool = False
    kind: str = "singleInstance"
    series_id: str = ""
    ical_uid: str = ""
    body_html: str = ""
    body_type: str = "text"
    preview: str = ""
    show_as: str = "busy"
    response_requested: bool = True

    @property
    def needs_answer(self) -> bool:
        return (not self.is_organizer and self.response_requested
                and self.response in ("none", "notResponded"))

    @property
    def is_recurring(self) -> bool:
        return self.kind in ("occurrence", "exception", "seriesMaster")

    @property
    def response_label(self) -> str:
        return RESPONSE_LABELS.get(self.response, "Not answered")

    def first_day(self, tz: tzinfo) -> date:
        return self.start.date() if self.all_day else self.start.astimezone(tz).date()

    def last_day(self, tz: tzinfo) -> date:
        """The last day the event touches (its end is exclusive)."""
        if self.all_day:
            return self.end.date() - timedelta(days=1)
        end = self.end.astimezone(tz)
        if end.time() == time() and end.date() > self.first_day(tz):
            return end.date() - timedelta(days=1)
        return end.date()


def graph_time(obj: Any) -> datetime:
    """A Graph ``dateTimeTimeZone`` as an aware datetime."""
    if not isinstance(obj, dict) or "dateTime" not in obj:
        raise ValueError("not a dateTimeTimeZone")
    return _graph_time(str(obj["dateTime"]), str(obj.get("timeZone") or "UTC"))


# Every calendar page reads the same fortnight's times again: each (dateTime, timeZone) is
# parsed and converted once (they were an eighth of the agenda's CPU). Datetimes are
# immutable; a refused value raises each time (lru_cache keeps no exceptions).
@lru_cache(maxsize=8192)
def _graph_time(text: str, zone_name: str) -> datetime:
    wall = parse_wall(text)
    try:
        tz = zone(zone_name)
    except UnknownZone:
        tz = zone("UTC")
    # In UTC from here on: arithmetic on two datetimes sharing one zoneinfo is wall-clock
    # arithmetic in Python, which gets every event across a clock change wrong.
    return wall.replace(tzinfo=tz).astimezone(UTC)


def wall_date(obj: Any) -> datetime:
    """The date of a Graph ``dateTimeTimeZone`` as written (its wall date, whatever its zone),
    as midnight UTC: how the model keeps all-day events."""
    if not isinstance(obj, dict) or "dateTime" not in obj:
        raise ValueError("not a dateTimeTimeZone")
    return datetime.combine(parse_wall(str(obj["dateTime"])).date(), time(), UTC)


def _person(obj: Any) -> Person:
    addr = (obj or {}).get("emailAddress") or {}
    return Person(str(addr.get("name") or ""), str(addr.get("address") or ""))


def _https(value: Any) -> str:
    # An invitation's sender chooses these links: only https:// ever becomes a link.
    text = str(value or "").strip()
    return text if text.lower().startswith("https://") and len(text) < 4096 else ""


def parse_event(raw: dict[str, Any]) -> Event:
    """An event from Graph's JSON; raises ValueError when it is not event-shaped."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise ValueError("not an event")
    all_day = bool(raw.get("isAllDay"))
    if all_day:
        # An all-day event is a run of dates. Graph sends it as midnight to midnight *in the
        # zone it labels it with* (whatever Prefer: outlook.timezone asked for), so the date
        # is the wall date as sent: converting that midnight to UTC first would put every
        # summer event in Europe/London on the day before (graph-docs #1802, #6003).
        start, end = wall_date(raw.get("start")), wall_date(raw.get("end"))
        if end <= start:
            end = start + timedelta(days=1)
    else:
        start, end = graph_time(raw.get("start")), graph_time(raw.get("end"))
    body = raw.get("body") or {}
    online = raw.get("onlineMeeting") or {}
    status = raw.get("responseStatus") or {}
    attendees = tuple(
        Attendee(_person(a), str(a.get("type") or "required"),
                 str((a.get("status") or {}).get("response") or "none"))
        for a in raw.get("attendees") or [] if isinstance(a, dict))
    return Event(
        id=raw["id"], subject=str(raw.get("subject") or ""), start=start, end=end,
        all_day=all_day,
        location=str((raw.get("location") or {}).get("displayName") or ""),
        join_url=_https(online.get("joinUrl") or raw.get("onlineMeetingUrl")),
        organizer=_person(raw.get("organizer")), attendees=attendees,
        response=str(status.get("response") or "none"),
        is_organizer=bool(raw.get("isOrganizer")), is_cancelled=bool(raw.get("isCancelled")),
        kind=str(raw.get("type") or "singleInstance"),
        series_id=str(raw.get("seriesMasterId") or ""), ical_uid=str(raw.get("iCalUId") or ""),
        body_html=str(body.get("content") or ""),
        body_type=str(body.get("contentType") or "text").lower(),
        preview=str(raw.get("bodyPreview") or ""), show_as=str(raw.get("showAs") or "busy"),
        response_requested=bool(raw.get("responseRequested", True)))


@dataclass
class EventDraft:
    """What the member typed into the event form, before it becomes Graph JSON."""

    subject: str = ""
    start_date: str = ""
    start_time: str = ""
    end_date: str = ""
    end_time: str = ""
    all_day: bool = False
    location: str = ""
    body: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_form(cls, form: Any) -> EventDraft:
        def g(k: str) -> str:
            return str(form.get(k) or "").strip()
        return cls(g("subject"), g("start_date"), g("start_time"), g("end_date") or
                   g("start_date"), g("end_time"), g("all_day") in ("1", "on", "true"),
                   g("location"), str(form.get("body") or ""))

    @classmethod
    def from_event(cls, ev: Event, tz: tzinfo) -> EventDraft:
        if ev.all_day:
            return cls(ev.subject, ev.start.date().isoformat(), "", ev.last_day(tz).isoformat(),
                       "", True, ev.location, ev.preview)
        (sd, st), (ed, et) = (form_fields(ev.start.astimezone(tz)),
                              form_fields(ev.end.astimezone(tz)))
        return cls(ev.subject, sd, st, ed, et, False, ev.location, ev.preview)

    def times(self, tz: tzinfo) -> tuple[datetime, datetime]:
        """The start and end as wall times in ``tz``; fills ``errors`` and raises ValueError
        when the form does not describe an event."""
        self.errors = {}
        if not self.subject:
            self.errors["subject"] = "Give the event a title."
        if len(self.subject) > 255:
            self.errors["subject"] = "The title can be at most 255 characters."
        sd = form_date(self.start_date)
        if sd is None:
            self.errors["start_date"] = "Enter the start date as YYYY-MM-DD."
        ed = form_date(self.end_date or self.start_date)
        if ed is None:
            self.errors["end_date"] = "Enter the end date as YYYY-MM-DD."
        st = et = time()
        if not self.all_day:
            for key in ("start_time", "end_time"):
                parsed = form_time(getattr(self, key))
                if parsed is None:
                    self.errors[key] = "Enter the time as HH:MM, for example 14:30."
                    continue
                if key == "start_time":
                    st = parsed
                else:
                    et = parsed
        if self.errors or sd is None or ed is None:
            raise ValueError("invalid")
        if self.all_day:
            start, end = datetime.combine(sd, time()), datetime.combine(ed + timedelta(days=1),
                                                                         time())
        else:
            start, end = datetime.combine(sd, st), datetime.combine(ed, et)
            for key, wall in (("start_time", start), ("end_time", end)):
                if not _exists(wall, tz):
                    self.errors[key] = ("That time does not exist on that day: the clocks go "
                                        "forward then.")
        if end <= start and "end_time" not in self.errors:
            self.errors["end_time" if not self.all_day else "end_date"] = \
                "The end must be after the start."
        if self.errors:
            raise ValueError("invalid")
        return start, end

    def to_graph(self, tz_name: str, tz: tzinfo) -> dict[str, Any]:
        start, end = self.times(tz)
        return {
            "subject": self.subject,
            "isAllDay": self.all_day,
            "start": {"dateTime": format_wall(start), "timeZone": tz_name},
            "end": {"dateTime": format_wall(end), "timeZone": tz_name},
            "location": {"displayName": self.location},
            "body": {"contentType": "text", "content": self.body},
        }


def _exists(wall: datetime, tz: tzinfo) -> bool:
    round_trip = wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    return round_trip == wall


# ---------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Slot:
    """One event as it appears on one day."""

    event: Event
    label: str             # "09:30–10:30", "All day", "from 18:00", "until 10:00"
    starts_today: bool


@dataclass(frozen=True)
class Day:
    date: date
    slots: tuple[Slot, ...]
    is_today: bool

    @property
    def heading(self) -> str:
        return f"{self.date:%A} {self.date.day} {self.date:%B %Y}"

    @property
    def short(self) -> str:
        return f"{self.date:%a} {self.date.day} {self.date:%b}"


def _hm(dt: datetime) -> str:
    return f"{dt.hour:02d}:{dt.minute:02d}"   # strftime("%H:%M"), without its cost


def slot_label(ev: Event, day: date, tz: tzinfo,
               span: tuple[date, date] | None = None) -> str:
    if ev.all_day:
        return "All day"
    first, last = span or (ev.first_day(tz), ev.last_day(tz))
    s, e = ev.start.astimezone(tz), ev.end.astimezone(tz)
    if first == last:
        return f"{_hm(s)}–{_hm(e)}"
    if day == first:
        return f"from {_hm(s)}"
    if day == last:
        return f"until {_hm(e)}"
    return "All day"


def when_label(ev: Event, tz: tzinfo) -> str:
    """A one-line description of when an event is, for its own page."""
    first, last = ev.first_day(tz), ev.last_day(tz)

    def d(x: date) -> str:
        return f"{x:%A} {x.day} {x:%B %Y}"
    if ev.all_day:
        return f"{d(first)}, all day" if first == last else f"{d(first)} to {d(last)}, all day"
    s, e = ev.start.astimezone(tz), ev.end.astimezone(tz)
    if first == last:
        return f"{d(first)}, {_hm(s)} to {_hm(e)} ({s.tzname()})"
    return f"{d(first)} {_hm(s)} to {d(e.date())} {_hm(e)} ({e.tzname()})"


# Layouts by the identity of the events laid out (the calendar view hands out the same frozen
# events while Graph's answer is unchanged: gateway.calendar.graph), with everything else the
# layout depends on. The layout was a sixth of the agenda's CPU (bench/cpu_per_page.py
# --profile, 2026-12-03). Each entry holds its events (gateway.kept).
_LAYOUTS: Kept[list[Day]] = Kept(128)


def days(events: list[Event], first: date, count: int, tz: tzinfo, today: date,
         keep_empty: bool = True) -> list[Day]:
    """Events laid out day by day: all-day first, then by start time. An event spanning
    several days appears on each of them. The list is new; its days (frozen) may be shared."""
    key = (first, count, tz, today, keep_empty, *map(id, events))
    laid = _LAYOUTS.get(key)
    if laid is None:
        laid = _LAYOUTS.put(key, _lay_out(events, first, count, tz, today, keep_empty),
                            held=events)
    return list(laid)


def _lay_out(events: list[Event], first: date, count: int, tz: tzinfo, today: date,
             keep_empty: bool) -> list[Day]:
    by_day: dict[date, list[Slot]] = {first + timedelta(days=i): [] for i in range(count)}
    for ev in events:
        if ev.is_cancelled:
            continue
        span = ev.first_day(tz), ev.last_day(tz)
        d, last = max(span[0], first), span[1]
        while d <= last and d in by_day:
            by_day[d].append(Slot(ev, slot_label(ev, d, tz, span), d == span[0]))
            d += timedelta(days=1)
    out = []
    for d, slots in by_day.items():
        slots.sort(key=lambda s: (not (s.event.all_day or s.label == "All day"),
                                  s.event.start, s.event.subject))
        if slots or keep_empty:
            out.append(Day(d, tuple(slots), d == today))
    return out
