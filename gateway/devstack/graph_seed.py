"""Sample calendars for the Graph stand-in: what a council member's diary holds in a normal
fortnight, placed relative to an anchor day (today, in the demo), plus fixed events on both
sides of the UK clock changes. Each member gets their own copy with their own ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from gateway.devstack.users import DOMAIN, SampleUser

LONDON = "Europe/London"
CLERK = ("Democratic Services", f"democratic.services@{DOMAIN}")
CHAIR = ("Cllr Sam Patel", f"sam.patel@{DOMAIN}")
PARTNER_DOMAIN = "transport-partnership.example"
PARTNER = ("Regional Transport Partnership", f"board@{PARTNER_DOMAIN}")


@dataclass
class Seed:
    """One event as the seeder describes it, before the store gives it ids."""

    subject: str
    start: datetime                      # wall time in ``tz``
    end: datetime
    tz: str = LONDON
    all_day: bool = False
    location: str = ""
    body: str = ""
    join_url: str = ""
    organizer: tuple[str, str] | None = None   # None: the member organises it
    attendees: list[dict[str, Any]] = field(default_factory=list)
    response: str = "accepted"
    recurrence: dict[str, Any] | None = None
    # The UID an outside organiser's own calendar system wrote in the invitation (not an
    # Outlook GlobalObjectId); Graph shows it wrapped (gateway.devstack.graph.wrap_uid).
    ics_uid: str = ""


def last_sunday(year: int, month: int) -> date:
    d = date(year, month + 1, 1) - timedelta(days=1) if month < 12 else date(year, 12, 31)
    return d - timedelta(days=(d.weekday() + 1) % 7)


def clock_changes(anchor: date) -> tuple[date, date]:
    """The (October, March) UK clock-change Sundays nearest after ``anchor`` minus 180 days:
    both lie within the weekly surgery series the seeder makes."""
    floor = anchor - timedelta(days=180)
    octo = last_sunday(floor.year, 10)
    if octo < floor:
        octo = last_sunday(floor.year + 1, 10)
    march = last_sunday(floor.year, 3)
    if march < floor:
        march = last_sunday(floor.year + 1, 3)
    return octo, march


def _at(d: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(d, time(hh, mm))


def _people(*who: tuple[str, str, str]) -> list[dict[str, Any]]:
    return [{"name": n, "address": a, "response": r, "type": "required"} for n, a, r in who]


def seeds(user: SampleUser, anchor: date) -> list[Seed]:
    me = (user.name, user.email)
    day = anchor
    octo, march = clock_changes(anchor)
    # The surgery runs on Saturdays, from 26 weeks before the anchor for 60 weeks.
    first_saturday = anchor - timedelta(weeks=26)
    first_saturday += timedelta(days=(5 - first_saturday.weekday()) % 7)
    teams = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_dev%40thread.v2/0"
    out = [
        Seed("Cabinet briefing", _at(day, 9, 30), _at(day, 10, 30), location="Room 2, Town Hall",
             body="<p>Agenda: <b>budget</b> update and the <a href=\"https://intranet.council."
                  "example/cabinet\">cabinet forward plan</a>.</p><script>alert(1)</script>",
             attendees=_people((*CHAIR, "accepted"), (*CLERK, "tentativelyAccepted"),
                               ("Cllr Jo Evans", f"jo.evans@{DOMAIN}", "notResponded")),
             response="organizer"),
        Seed("Planning Committee", _at(day + timedelta(days=1), 18), _at(day + timedelta(days=1),
             20, 30), location="Council Chamber", join_url=teams, organizer=CLERK,
             body="<p>Public meeting. Papers are on the committee pages.</p>",
             attendees=_people((*me, "accepted"), (*CHAIR, "accepted"))),
        Seed("Scrutiny Committee", _at(day + timedelta(days=2), 14), _at(day + timedelta(days=2),
             16), location="Committee Room 1", organizer=CLERK, response="notResponded",
             body="<p>Please confirm whether you can attend.</p>",
             attendees=_people((*me, "none"), (*CHAIR, "accepted"))),
        Seed("Licensing Sub-Committee", _at(day + timedelta(days=3), 10),
             _at(day + timedelta(days=3), 12), location="Committee Room 2", organizer=CLERK,
             attendees=_people((*me, "accepted"))),
        Seed("Ward walkabout with the police", _at(day + timedelta(days=5), 11),
             _at(day + timedelta(days=5), 12, 30), location="Market Square", organizer=CHAIR,
             response="none", attendees=_people((*me, "none"))),
        # From outside the tenant: a meeting request from another body's calendar system.
        Seed("Regional transport partnership", _at(day + timedelta(days=4), 14),
             _at(day + timedelta(days=4), 15, 30), location="Online", organizer=PARTNER,
             response="notResponded", ics_uid=f"tfwp-{user.oid[:8]}-2031@{PARTNER_DOMAIN}",
             body="<p>Quarterly meeting of the partnership board.</p>",
             attendees=_people((*me, "none"), (*PARTNER, "accepted"))),
        Seed("Full Council", datetime.combine(day + timedelta(days=7), time()),
             datetime.combine(day + timedelta(days=8), time()), all_day=True,
             location="Council Chamber", organizer=CLERK,
             attendees=_people((*me, "accepted"))),
        Seed("LGA annual conference", datetime.combine(day + timedelta(days=9), time()),
             datetime.combine(day + timedelta(days=12), time()), all_day=True,
             location="Bournemouth International Centre"),
        Seed("Ward surgery", _at(first_saturday, 10), _at(first_saturday, 12),
             location="Library meeting room", body="<p>Drop-in for residents.</p>",
             recurrence={
                 "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["saturday"],
                             "firstDayOfWeek": "monday"},
                 "range": {"type": "numbered", "startDate": first_saturday.isoformat(),
                           "numberOfOccurrences": 60, "recurrenceTimeZone": LONDON}}),
    ]
    for change, label in ((octo, "October"), (march, "March")):
        out += [
            Seed(f"Budget working group (before {label} clock change)",
                 _at(change - timedelta(days=1), 19), _at(change - timedelta(days=1), 20)),
            Seed(f"Budget working group (after {label} clock change)",
                 _at(change + timedelta(days=1), 19), _at(change + timedelta(days=1), 20)),
            # Across the change itself: 00:30 to 03:30 local is two or four hours long.
            Seed(f"Overnight gritting briefing ({label})", _at(change, 0, 30), _at(change, 3, 30),
                 location="Depot"),
        ]
    # All-day events as Graph keeps them (midnight to midnight in their zone) on both sides of
    # both clock changes, in summer and in winter, one-day and several-day: a gateway that
    # converts the midnight to UTC before taking the date shows the summer ones a day early.
    def days(first: date, count: int) -> tuple[datetime, datetime]:
        return (datetime.combine(first, time()),
                datetime.combine(first + timedelta(days=count), time()))
    summer, winter = date(march.year, 7, 1), date(octo.year, 12, 1)
    for change, label in ((octo, "October"), (march, "March")):
        out += [
            Seed(f"Polling station visits (day before {label} clock change)",
                 *days(change - timedelta(days=1), 1), all_day=True),
            Seed(f"Count day ({label} clock change)", *days(change, 1), all_day=True),
            Seed(f"Casework catch-up (day after {label} clock change)",
                 *days(change + timedelta(days=1), 1), all_day=True),
            Seed(f"Members' away days (across {label} clock change)",
                 *days(change - timedelta(days=2), 4), all_day=True, location="Civic Centre"),
        ]
    out += [
        Seed("Armed Forces Day flag raising (summer)", *days(summer, 1), all_day=True),
        Seed("Summer show (summer, three days)", *days(summer + timedelta(days=7), 3),
             all_day=True, location="Showground"),
        Seed("Christmas lights switch-on (winter)", *days(winter, 1), all_day=True),
        Seed("Winter conference (winter, two days)", *days(winter + timedelta(days=7), 2),
             all_day=True),
    ]
    return out
