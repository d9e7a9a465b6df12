"""What ICT does with the switch's records, one way for the admin page, the API and the CLI:
export the audit trail (each export is itself recorded) and the incident timeline. The
callers parse their own input (form, query, arguments) and shape their own output (download,
JSON response, stdout); the rules live here once."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.switch import audit, timeline
from gateway.switch.audit import AuditLog

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
