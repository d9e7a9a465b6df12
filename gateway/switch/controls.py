"""What ICT does with the switch's records, one way for the admin page, the API and the CLI:
export the audit trail (each export is itself recorded) and the incident timeline, and see
who is signed in now and whether the switch lets each of them in. The
callers parse their own input (form, query, arguments) and shape their own output (download,
JSON response, stdout); the rules live here once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.store.base import Store
from gateway.switch import audit, timeline
from gateway.switch.audit import AuditLog
from gateway.switch.machine import SwitchState, admits

FORMATS = ("csv", "json")


@dataclass(frozen=True)
class Export:
    body: str
    media_type: str
    count: int


def _media(fmt: str) -> str:
    return "text/csv" if fmt == "csv" else "application/json"


async def export_audit(log: AuditLog, fmt: str, actor: str, since: float | None = None,
                       until: float | None = None, *, must_record: bool = False) -> Export:
    """The audit entries between ``since`` and ``until`` as CSV or JSON, after recording who
    exported how many. ``must_record``: a failure to record fails the export (the CLI, run by
    hand, says so); the web and API keep serving when only the record fails."""
    entries = await log.entries(since, until)
    if must_record:
        await log.record("admin.audit.exported", actor, entries=len(entries), format=fmt)
    else:
        await log.try_record("admin.audit.exported", actor, entries=len(entries), format=fmt)
    body = audit.export_csv(entries) if fmt == "csv" else audit.export_json(entries)
    return Export(body, _media(fmt), len(entries))


async def export_incidents(log: AuditLog, fmt: str, now: float, tz: str) -> Export:
    """The incidents (periods in ``active``) read back from the audit trail, as CSV or JSON."""
    found = timeline.incidents(await log.entries())
    body = timeline.export_csv(found, now) if fmt == "csv" else \
        timeline.export_json(found, now, tz)
    return Export(body, _media(fmt), len(found))


@dataclass(frozen=True)
class Person:
    """One person signed in now, and whether the switch in its current state admits them."""
    name: str
    email: str
    is_admin: bool
    admitted: bool
    last_seen: float


async def people(store: Store, state: SwitchState, *, now: float, idle: float,
                 absolute: float, pilot_groups: Iterable[str]) -> list[Person]:
    """Sessions still alive at ``now`` (seen within ``idle`` seconds, younger than
    ``absolute``): who a flip would move, and who the current state lets in."""
    pilot = tuple(pilot_groups)
    return [Person(s.user_name, s.email, s.is_admin,
                   admits(state, is_admin=s.is_admin, groups=s.groups, pilot_groups=pilot),
                   s.last_seen)
            for s in await store.list_sessions()
            if now - s.last_seen <= idle and now - s.created_at <= absolute]
