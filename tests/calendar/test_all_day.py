"""All-day events keep their dates in summer and winter, on both sides of both UK clock
changes, single-day and several-day: Graph sends them midnight to midnight in the zone it
labels them with (graph-docs #1802, #6003), and the date is that wall date."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.calendar import graph
from gateway.calendar.model import Event, days, parse_event, when_label
from gateway.devstack.graph_seed import clock_changes
from tests.calendar.rig import ANCHOR, GraphRig

LONDON = ZoneInfo("Europe/London")
OCTO, MARCH = clock_changes(ANCHOR)          # 25 October 2026, 28 March 2027
SUMMER, WINTER = date(MARCH.year, 7, 1), date(OCTO.year, 12, 1)
ONE = timedelta(days=1)

# subject prefix -> (first day, last day), as the member's diary shows them
EXPECTED = {
    "Polling station visits (day before October": (OCTO - ONE, OCTO - ONE),
    "Count day (October": (OCTO, OCTO),
    "Casework catch-up (day after October": (OCTO + ONE, OCTO + ONE),
    "Members' away days (across October": (OCTO - 2 * ONE, OCTO + ONE),
    "Polling station visits (day before March": (MARCH - ONE, MARCH - ONE),
    "Count day (March": (MARCH, MARCH),
    "Casework catch-up (day after March": (MARCH + ONE, MARCH + ONE),
    "Members' away days (across March": (MARCH - 2 * ONE, MARCH + ONE),
    "Armed Forces Day": (SUMMER, SUMMER),
    "Summer show": (SUMMER + 7 * ONE, SUMMER + 9 * ONE),
    "Christmas lights": (WINTER, WINTER),
    "Winter conference": (WINTER + 7 * ONE, WINTER + 8 * ONE),
}


def _view(rig: GraphRig, first: date, last: date, zone: str = "Europe/London") -> list[Event]:
    start = datetime.combine(first - 3 * ONE, time(), LONDON)
    end = datetime.combine(last + 4 * ONE, time(), LONDON)
    http = rig.http(GATEWAY_GENERAL_TIMEZONE=zone)
    return rig.run(graph.calendar_view(http, rig.token(), start, end))


def test_clock_change_dates_are_the_real_ones() -> None:
    """The rig's anchor puts the changes on the UK's real 2026 and 2027 dates."""
    assert (OCTO, MARCH) == (date(2026, 10, 25), date(2027, 3, 28))


@pytest.mark.parametrize("prefix", sorted(EXPECTED))
@pytest.mark.parametrize("zone", ["Europe/London", "Europe/Berlin", "America/New_York"])
def test_all_day_dates_through_graph(rig: GraphRig, prefix: str, zone: str) -> None:
    """Through the stand-in (Prefer: outlook.timezone in the member's zone, east and west of
    UTC too): each all-day event covers exactly its dates, and is laid out on each of them."""
    first, last = EXPECTED[prefix]
    events = _view(rig, first, last, zone)
    ev = next(e for e in events if e.subject.startswith(prefix))
    tz = ZoneInfo(zone)
    assert ev.all_day
    assert (ev.first_day(tz), ev.last_day(tz)) == (first, last)
    span = (last - first).days + 1
    laid = days(events, first - 2 * ONE, span + 4, tz, first)
    on = [d.date for d in laid if any(s.event.id == ev.id for s in d.slots)]
    assert on == [first + n * ONE for n in range(span)]
    assert all(s.label == "All day" for d in laid for s in d.slots if s.event.id == ev.id)


def test_stand_in_sends_midnight_in_the_asked_zone(rig: GraphRig) -> None:
    """As Graph does: an all-day event is midnight to midnight whatever zone is preferred,
    labelled with that zone (not shifted into it)."""
    for zone in ("Europe/London", "UTC", "Pacific Standard Time"):
        resp = rig.run(rig.http().client.get(
            "me/calendarView", params={
                "startDateTime": f"{SUMMER - ONE}T00:00:00Z",
                "endDateTime": f"{SUMMER + ONE}T00:00:00Z"},
            headers={"Authorization": "Bearer " + rig.run(rig.token()(False)),
                     "Prefer": f'outlook.timezone="{zone}"'}))
        row = next(r for r in resp.json()["value"] if r["subject"].startswith("Armed Forces"))
        assert row["isAllDay"] is True
        assert row["start"] == {"dateTime": f"{SUMMER}T00:00:00.0000000", "timeZone": zone}
        assert row["end"] == {"dateTime": f"{SUMMER + ONE}T00:00:00.0000000", "timeZone": zone}


def _raw(first: date, last_exclusive: date, zone: str) -> dict[str, object]:
    return {"id": "AAMk-1", "subject": "Away day", "isAllDay": True,
            "start": {"dateTime": f"{first}T00:00:00.0000000", "timeZone": zone},
            "end": {"dateTime": f"{last_exclusive}T00:00:00.0000000", "timeZone": zone}}


@pytest.mark.parametrize("first", [
    OCTO - ONE, OCTO, OCTO + ONE, MARCH - ONE, MARCH, MARCH + ONE, SUMMER, WINTER])
@pytest.mark.parametrize("zone", ["Europe/London", "GMT Standard Time", "Europe/Berlin",
                                  "W. Europe Standard Time", "UTC", "Pacific Standard Time"])
def test_parse_takes_the_wall_date(first: date, zone: str) -> None:
    """The model takes the date as written: 1 July in Europe/London stays 1 July (converting
    midnight BST to UTC first gives 30 June)."""
    one = parse_event(_raw(first, first + ONE, zone))
    assert (one.first_day(LONDON), one.last_day(LONDON)) == (first, first)
    assert when_label(one, LONDON) == f"{first:%A} {first.day} {first:%B %Y}, all day"
    several = parse_event(_raw(first, first + 3 * ONE, zone))
    assert (several.first_day(LONDON), several.last_day(LONDON)) == (first, first + 2 * ONE)
