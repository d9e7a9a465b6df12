"""gateway.switch.controls: the one audit and incident export the admin page, the API and the
CLI share, and who is signed in now, against a real SQLite store."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from gateway.store.base import SessionRecord
from gateway.store.sqlite import SqliteStore
from gateway.switch import controls
from gateway.switch.audit import AuditLog
from gateway.switch.machine import Mode, SwitchState


async def test_audit_export_records_itself_and_keeps_to_the_period(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    await store.open()
    now = [1000.0]
    try:
        log = AuditLog(store, lambda: now[0])
        await log.record("failover.changed", "ict@council.example", new="active", reason="drill")
        now[0] = 2000.0
        await log.record("failover.changed", "ict@council.example", new="standby", reason="over")
        done = await controls.export_audit(log, "json", "api:runbook", since=1500.0)
        assert done.media_type == "application/json" and done.count == 1
        assert [e["data"]["new"] for e in json.loads(done.body)] == ["standby"]
        kinds = [e.kind for e in await log.entries()]
        assert kinds[-1] == "admin.audit.exported"
        last = (await log.entries())[-1]
        assert last.actor == "api:runbook" and last.data == {"entries": 1, "format": "json"}
        as_csv = await controls.export_audit(log, "csv", "cli", must_record=True)
        assert as_csv.media_type == "text/csv" and as_csv.count == 3
        assert len(list(csv.reader(io.StringIO(as_csv.body)))) == 4    # header and three rows
        assert (await controls.export_incidents(log, "csv", 3000.0, "UTC")).count == 1
    finally:
        await store.close()


def _session(sid: str, name: str, *, groups: tuple[str, ...] = (), admin: bool = False,
             created: float = 0.0, seen: float = 0.0) -> SessionRecord:
    return SessionRecord(sid, f"oid-{sid}", name, f"{sid}@council.example", (), groups,
                         f"acc-{sid}", "csrf", created, seen, created, is_admin=admin)


async def test_people_are_the_live_sessions_and_whether_the_switch_admits_them(
        tmp_path: Path) -> None:
    """Who is signed in now (idle and absolute limits applied) and who the state lets in:
    in standby only ICT and pilot groups; in a drill its group too; active admits all."""
    store = SqliteStore(str(tmp_path / "s.db"))
    await store.open()
    try:
        for rec in (_session("ict", "ICT", admin=True, created=900, seen=990),
                    _session("pilot", "Pilot", groups=("g-pilot",), created=900, seen=980),
                    _session("drill", "Drill", groups=("g-drill",), created=900, seen=950),
                    _session("idle", "Idle", created=900, seen=100),       # idle too long
                    _session("old", "Old", created=0, seen=999)):          # past absolute
            await store.create_session(rec)

        async def admitted(state: SwitchState) -> dict[str, bool]:
            found = await controls.people(store, state, now=1000.0, idle=600, absolute=950,
                                          pilot_groups=["g-pilot"])
            return {p.name: p.admitted for p in found}
        standby = SwitchState(Mode.STANDBY, 0, "ict", "first start")
        assert await admitted(standby) == {"ICT": True, "Pilot": True, "Drill": False}
        drill = SwitchState(Mode.DRILL, 0, "ict", "drill", group="g-drill")
        assert await admitted(drill) == {"ICT": True, "Pilot": True, "Drill": True}
        active = SwitchState(Mode.ACTIVE, 0, "ict", "outage")
        assert set((await admitted(active)).values()) == {True}
    finally:
        await store.close()
