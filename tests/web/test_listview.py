"""The message list's view model (issue 13 item 8): day headings in the member's zone,
across both of 2026's clock changes in Europe/London, and rows grouped under them."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from gateway.mail.mailbox import MessageSummary
from gateway.web import mailviews as mv

LONDON = ZoneInfo("Europe/London")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_today_yesterday_weekday_and_date() -> None:
    now = utc(2026, 6, 17, 12, 0)          # a Wednesday
    assert mv.day_group(utc(2026, 6, 17, 0, 5), LONDON, now) == "Today"
    assert mv.day_group(utc(2026, 6, 16, 23, 30), LONDON, now) == "Today"   # 00:30 BST
    assert mv.day_group(utc(2026, 6, 16, 22, 59), LONDON, now) == "Yesterday"  # 23:59 BST
    assert mv.day_group(utc(2026, 6, 16, 9, 0), LONDON, now) == "Yesterday"
    assert mv.day_group(utc(2026, 6, 14, 9, 0), LONDON, now) == "Sunday"
    assert mv.day_group(utc(2026, 6, 10, 9, 0), LONDON, now) == "Wednesday 10 June"
    assert mv.day_group(utc(2025, 12, 1, 9, 0), LONDON, now) == "1 December 2025"
    assert mv.day_group(None, LONDON, now) == "Undated"


def test_spring_clock_change_29_march_2026() -> None:
    # Clocks go forward at 01:00 GMT: 29 March has 23 hours.
    now = utc(2026, 3, 29, 22, 30)                                         # 23:30 BST
    assert mv.day_group(utc(2026, 3, 29, 0, 30), LONDON, now) == "Today"     # 00:30 GMT
    assert mv.day_group(utc(2026, 3, 28, 23, 30), LONDON, now) == "Yesterday"
    assert mv.day_group(utc(2026, 3, 29, 23, 30), LONDON, utc(2026, 3, 30, 8)) == "Today"
    assert mv.day_group(utc(2026, 3, 29, 22, 59), LONDON, utc(2026, 3, 30, 8)) == "Yesterday"
    assert mv.short_date(utc(2026, 3, 29, 1, 30), LONDON, now) == "02:30"


def test_autumn_clock_change_25_october_2026() -> None:
    # Clocks go back at 01:00 GMT (02:00 BST): 25 October has 25 hours.
    now = utc(2026, 10, 25, 23, 30)                                        # 23:30 GMT
    assert mv.day_group(utc(2026, 10, 24, 23, 30), LONDON, now) == "Today"   # 00:30 BST
    assert mv.day_group(utc(2026, 10, 24, 22, 59), LONDON, now) == "Yesterday"
    # A Date header from a fast clock (tomorrow) is shown as its date, never "Today".
    assert mv.day_group(utc(2026, 10, 26, 0, 30), LONDON, now) == "Monday 26 October"
    assert mv.day_group(utc(2026, 10, 19, 0, 30), LONDON, now) == "Monday"
    assert mv.short_date(utc(2026, 10, 25, 0, 30), LONDON, now) == "01:30"
    assert mv.short_date(utc(2026, 10, 25, 1, 30), LONDON, now) == "01:30"


def summary(uid: int, when: datetime, **kw: object) -> MessageSummary:
    base = dict(uid=uid, subject=f"S{uid}", sender="Clerk", sender_email="c@x", date=when,
                unread=False, flagged=False, answered=False, has_attachment=False, size=10)
    base.update(kw)
    return MessageSummary(**base)  # type: ignore[arg-type]


def test_rows_carry_preview_and_flag_and_group_by_day() -> None:
    now = utc(2026, 6, 17, 12, 0)
    msgs = [summary(4, utc(2026, 6, 17, 9), preview="Agenda attached", flagged=True),
            summary(3, utc(2026, 6, 17, 8)),
            summary(2, utc(2026, 6, 16, 8)),
            summary(1, utc(2026, 6, 12, 8))]
    rows = mv.rows("INBOX", msgs, LONDON, now)
    assert rows[0].preview == "Agenda attached" and rows[0].flagged
    groups = mv.day_groups(rows)
    assert [(g.label, [r.uid for r in g.rows]) for g in groups] == [
        ("Today", [4, 3]), ("Yesterday", [2]), ("Friday", [1])]
    assert [g.key for g in groups] == [1, 2, 3]


def test_headings_follow_arrival_not_a_date_header() -> None:
    """The list is in arrival order; a message whose Date header is days old but which
    arrived today sits under Today, so one day never has two headings."""
    now = utc(2026, 6, 17, 12, 0)
    msgs = [summary(3, utc(2026, 6, 17, 9), received=utc(2026, 6, 17, 9)),
            summary(2, utc(2026, 6, 1, 8), received=utc(2026, 6, 17, 8)),
            summary(1, utc(2026, 6, 17, 7), received=utc(2026, 6, 17, 7))]
    groups = mv.day_groups(mv.rows("INBOX", msgs, LONDON, now))
    assert [(g.label, len(g.rows)) for g in groups] == [("Today", 3)]
