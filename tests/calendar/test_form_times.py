"""The date and time fields every form reads the same way (events, moving an event, automatic
replies, search dates): gateway.calendar.zones.form_date, form_time and form_fields."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from gateway.calendar.model import EventDraft
from gateway.calendar.zones import form_date, form_fields, form_time, zone


def test_a_date_field_is_read_as_the_date_picker_sends_it() -> None:
    assert form_date("2027-03-28") == date(2027, 3, 28)
    for bad in ("", "28/03/2027", "2027-02-30", "tomorrow"):
        assert form_date(bad) is None


def test_a_time_field_is_read_as_the_time_picker_sends_it() -> None:
    assert form_time("09:05") == time(9, 5)
    for bad in ("", "25:00", "9am", "12:61"):
        assert form_time(bad) is None


def test_a_wall_time_goes_back_into_the_fields_it_came_from() -> None:
    assert form_fields(datetime(2027, 3, 28, 9, 5)) == ("2027-03-28", "09:05")
    d, t = form_fields(datetime(2027, 10, 31, 1, 30))
    start = datetime.combine(form_date(d) or date.min, form_time(t) or time.max)
    assert start == datetime(2027, 10, 31, 1, 30)


def test_the_event_form_names_the_field_that_is_not_a_date_or_time() -> None:
    draft = EventDraft("Planning", "2027-13-01", "9.30", "2027-03-28", "10:00")
    with pytest.raises(ValueError):
        draft.times(zone("Europe/London"))
    assert set(draft.errors) == {"start_date", "start_time"}
