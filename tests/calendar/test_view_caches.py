"""What the calendar keeps between pages (issue 16): the events of a calendar view page by the
digest of its bytes (gateway.calendar.graph), and the day layout by the identity of its events
(gateway.calendar.model.days). Same bytes give the same events; any change gives new ones, so
nothing shown can be stale. Times on both sides of the March clock change (Europe/London,
29 March 2026 at 01:00 GMT)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from gateway.calendar.graph import _event_page
from gateway.calendar.model import days

LONDON = ZoneInfo("Europe/London")


def _raw(n: int, start: str, end: str, subject: str = "") -> dict[str, Any]:
    return {"id": f"ev{n}", "subject": subject or f"Meeting {n}", "isAllDay": False,
            "start": {"dateTime": start, "timeZone": "Europe/London"},
            "end": {"dateTime": end, "timeZone": "Europe/London"},
            "changeKey": f"k{n}"}


def _page(*events: dict[str, Any]) -> httpx.Response:
    body = json.dumps({"@odata.context": "x", "value": list(events)}).encode()
    return httpx.Response(200, content=body, headers={"content-type": "application/json"})


def test_same_bytes_same_events_changed_bytes_new_events() -> None:
    before = _raw(1, "2026-03-28T09:00:00.0000000", "2026-03-28T10:00:00.0000000")
    after = _raw(2, "2026-03-29T09:00:00.0000000", "2026-03-29T10:00:00.0000000")
    first, link = _event_page(_page(before, after))
    assert link is None and [e.subject for e in first] == ["Meeting 1", "Meeting 2"]
    # 09:00 GMT the day before the change, 09:00 BST (08:00 UTC) on the day of it.
    assert first[0].start.hour == 9 and first[1].start.hour == 8
    again, _ = _event_page(_page(before, after))
    assert again is first
    renamed, _ = _event_page(_page(before, _raw(2, "2026-03-29T09:00:00.0000000",
                                                "2026-03-29T10:00:00.0000000", "Moved")))
    assert renamed is not first and renamed[1].subject == "Moved"


def test_layout_is_kept_for_the_same_events_and_day_only() -> None:
    events, _ = _event_page(_page(
        _raw(3, "2026-03-28T23:30:00.0000000", "2026-03-29T02:30:00.0000000"),
        _raw(4, "2026-03-29T09:00:00.0000000", "2026-03-29T10:00:00.0000000")))
    laid = days(events, date(2026, 3, 28), 3, LONDON, date(2026, 3, 28))
    # The night meeting runs across the change: from 23:30 GMT to 02:30 BST on the 29th.
    assert [len(d.slots) for d in laid] == [1, 2, 0]
    assert laid[1].slots[0].label == "until 02:30" and laid[0].is_today
    kept = days(list(events), date(2026, 3, 28), 3, LONDON, date(2026, 3, 28))
    assert kept == laid and kept is not laid
    assert all(a is b for a, b in zip(kept, laid, strict=True))
    # The next day is today now: a new layout.
    later = days(events, date(2026, 3, 28), 3, LONDON, date(2026, 3, 29))
    assert later[1].is_today and not later[0].is_today
    # Other events (another answer from Graph) are laid out afresh.
    other, _ = _event_page(_page(
        _raw(3, "2026-03-28T23:30:00.0000000", "2026-03-29T02:30:00.0000000")))
    assert [len(d.slots) for d in days(other, date(2026, 3, 28), 3, LONDON,
                                       date(2026, 3, 28))] == [1, 1, 0]
