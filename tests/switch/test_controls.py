"""gateway.switch.controls: the one audit and incident export the admin page, the API and the
CLI share, against a real SQLite store."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from gateway.store.sqlite import SqliteStore
from gateway.switch import controls
from gateway.switch.audit import AuditLog


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
