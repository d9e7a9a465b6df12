"""Time-zone names as Microsoft Graph speaks them: Windows names ("GMT Standard Time") as well
as IANA names ("Europe/London"), resolved to ``zoneinfo`` zones. Shared by the adapter's
model and the Graph stand-in, so both read a ``dateTimeTimeZone`` the same way.

Also the wall times members type: the date and time fields of the gateway's forms (events,
automatic replies, search dates), read and written here so every form takes the same."""

from __future__ import annotations

import functools
import zoneinfo
from datetime import date, datetime, time

# The Windows names Exchange most often writes for UK councils and their correspondents;
# anything else is tried as an IANA name.
WINDOWS_ZONES: dict[str, str] = {
    "UTC": "UTC",
    "Coordinated Universal Time": "UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "W. Europe Standard Time": "Europe/Berlin",
    "Romance Standard Time": "Europe/Paris",
    "Central Europe Standard Time": "Europe/Budapest",
    "E. Europe Standard Time": "Europe/Chisinau",
    "FLE Standard Time": "Europe/Kiev",
    "Eastern Standard Time": "America/New_York",
    "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver",
    "Pacific Standard Time": "America/Los_Angeles",
    "India Standard Time": "Asia/Kolkata",
    "China Standard Time": "Asia/Shanghai",
    "Tokyo Standard Time": "Asia/Tokyo",
    "AUS Eastern Standard Time": "Australia/Sydney",
}
GRAPH_FORMAT = "%Y-%m-%dT%H:%M:%S.0000000"


class UnknownZone(ValueError):
    pass


@functools.lru_cache(maxsize=256)
def zone(name: str) -> zoneinfo.ZoneInfo:
    """The zone for a Graph ``timeZone`` value; raises UnknownZone."""
    iana = WINDOWS_ZONES.get(name.strip(), name.strip())
    try:
        return zoneinfo.ZoneInfo(iana)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise UnknownZone(name) from None


def parse_wall(value: str) -> datetime:
    """A Graph ``dateTime`` ("2026-10-25T10:00:00.0000000", no offset) as a naive datetime."""
    text = value.strip()
    if "." in text:
        head, frac = text.split(".", 1)
        text = head + "." + frac[:6]
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=None)


def format_wall(value: datetime) -> str:
    return value.strftime(GRAPH_FORMAT)


def form_date(text: str) -> date | None:
    """A form's date field (YYYY-MM-DD, as the date picker sends it), or None."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def form_time(text: str) -> time | None:
    """A form's time field (HH:MM, as the time picker sends it), or None."""
    try:
        return time.fromisoformat(text)
    except ValueError:
        return None


def form_fields(wall: datetime) -> tuple[str, str]:
    """A wall time as a form's date and time fields: ("2027-03-27", "09:00")."""
    return wall.date().isoformat(), wall.strftime("%H:%M")
