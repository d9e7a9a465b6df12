"""The audit trail: an append-only hash chain; verify names the first broken entry when a
row is edited, deleted or reordered; exports; the incident timeline built from it."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import sqlite3
from pathlib import Path

import pytest

from gateway.store.base import AuditRow
from gateway.store.sqlite import SqliteStore
from gateway.switch import timeline
from gateway.switch.audit import GENESIS, AuditLog, export_csv, export_json, verify_rows
from tests.switch.conftest import ManualClock


@pytest.fixture
async def filled(store: SqliteStore, clock: ManualClock) -> AuditLog:
    log = AuditLog(store, clock)
    for i in range(1, 6):
        await log.record("test.event", f"user{i}@council.example", n=i)
        clock.advance(10)
    return log


def tamper(tmp_path: Path, sql: str, *params: object) -> None:
    db = sqlite3.connect(tmp_path / "failover.db")
    with db:
        db.execute(sql, params)
    db.close()


async def test_entries_chain_and_verify(filled: AuditLog, store: SqliteStore) -> None:
    """Each entry carries the previous entry's hash; an untouched chain verifies."""
    rows = await store.audit_rows()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    verdict = await filled.verify()
    assert verdict.ok and verdict.entries == 5 and verdict.head == rows[-1].hash


async def test_edited_entry_is_named(filled: AuditLog, tmp_path: Path) -> None:
    """Changing an entry's content breaks the chain at that entry."""
    tamper(tmp_path, "UPDATE audit SET body=replace(body, 'user3', 'someone') WHERE seq=3")
    verdict = await filled.verify()
    assert not verdict.ok and verdict.broken_seq == 3 and "altered" in verdict.problem


async def test_edited_time_is_named(filled: AuditLog, tmp_path: Path) -> None:
    """Moving an entry's time breaks the chain at that entry."""
    tamper(tmp_path, "UPDATE audit SET at=at-3600 WHERE seq=2")
    assert (await filled.verify()).broken_seq == 2


async def test_deleted_entry_is_named(filled: AuditLog, tmp_path: Path) -> None:
    """Deleting an entry in the middle is reported as that entry missing."""
    tamper(tmp_path, "DELETE FROM audit WHERE seq=2")
    verdict = await filled.verify()
    assert not verdict.ok and verdict.broken_seq == 2 and "missing" in verdict.problem


async def test_deleted_and_renumbered_entries_are_caught(filled: AuditLog, tmp_path: Path) -> None:
    """Deleting an entry and renumbering the rest to hide the gap still breaks the chain."""
    tamper(tmp_path, "DELETE FROM audit WHERE seq=2")
    tamper(tmp_path, "UPDATE audit SET seq=seq-1 WHERE seq>2")
    verdict = await filled.verify()
    assert not verdict.ok and verdict.broken_seq == 2


async def test_reordered_entries_are_named(filled: AuditLog, tmp_path: Path) -> None:
    """Swapping two entries' positions is detected at the first of them."""
    tamper(tmp_path, "UPDATE audit SET seq=-4 WHERE seq=4")
    tamper(tmp_path, "UPDATE audit SET seq=4 WHERE seq=3")
    tamper(tmp_path, "UPDATE audit SET seq=3 WHERE seq=-4")
    verdict = await filled.verify()
    assert not verdict.ok and verdict.broken_seq == 3


def test_relinked_forgery_is_caught_at_the_forged_entry() -> None:
    """An entry rewritten with a fresh, self-consistent hash breaks the link after it."""
    from gateway.switch.audit import entry_hash
    rows, prev = [], GENESIS
    for seq in (1, 2, 3):
        body = json.dumps({"kind": "k", "actor": f"a{seq}", "data": {}})
        h = entry_hash(seq, 1.0 * seq, body, prev)
        rows.append(AuditRow(seq, 1.0 * seq, body, prev, h))
        prev = h
    forged_body = rows[1].body.replace("a2", "zz")
    rows[1] = AuditRow(2, 2.0, forged_body, rows[0].hash,
                       entry_hash(2, 2.0, forged_body, rows[0].hash))
    verdict = verify_rows(rows)
    assert not verdict.ok and verdict.broken_seq == 3


async def test_concurrent_records_keep_one_unbroken_chain(store: SqliteStore,
                                                          clock: ManualClock) -> None:
    """Many simultaneous writers, including a second instance, yield one valid chain."""
    a, b = AuditLog(store, clock), AuditLog(store, clock)
    await asyncio.gather(*(log.record("k", "x", i=i) for i in range(15) for log in (a, b)))
    verdict = await a.verify()
    assert verdict.ok and verdict.entries == 30


async def test_export_filters_by_time_and_guards_csv_formulas(store: SqliteStore,
                                                              clock: ManualClock) -> None:
    """Exports honour since/until and neutralise spreadsheet formulas in CSV."""
    log = AuditLog(store, clock)
    t0 = clock()
    await log.record("early", "a@council.example")
    clock.advance(100)
    await log.record("mail.sent", "=HYPERLINK(\"x\")", size=10, recipients=2)
    clock.advance(100)
    await log.record("late", "c@council.example")
    mid = await log.entries(since=t0 + 50, until=t0 + 150)
    assert [e.kind for e in mid] == ["mail.sent"]
    rows = list(csv.reader(io.StringIO(export_csv(mid))))
    assert rows[0] == ["seq", "time", "kind", "actor", "data", "hash", "prev_hash"]
    assert rows[1][3].startswith("'=") and json.loads(rows[1][4]) == {"recipients": 2,
                                                                       "size": 10}
    data = json.loads(export_json(mid))
    assert data[0]["seq"] == 2 and data[0]["time"].endswith("Z")


async def test_timeline_from_switch_changes(store: SqliteStore, clock: ManualClock) -> None:
    """Active periods become incidents with start, end, reasons and people; an ongoing one
    has no end; non-active modes are not incidents."""
    log = AuditLog(store, clock)
    t0 = clock()

    async def change(old: str, new: str, who: str, reason: str) -> None:
        await log.record("failover.changed", who, old=old, new=new, reason=reason,
                         since=clock())
    await change("standby", "drill", "Priya", "rehearsal")
    clock.advance(600)
    await change("drill", "active", "Priya", "MDM down")
    clock.advance(3600)
    await change("active", "active", "Sam", "extended")
    clock.advance(3600)
    await change("active", "standby", "Sam", "MDM fixed")
    clock.advance(60)
    await change("standby", "active", "system", "second outage")
    found = timeline.incidents(await log.entries())
    assert len(found) == 2
    first = found[0]
    assert (first.start, first.end) == (t0 + 600, t0 + 600 + 7200)
    assert first.reasons == ["MDM down", "extended"] and first.people == ["Priya", "Sam"]
    assert first.end_reason == "MDM fixed"
    assert found[1].end is None and found[1].duration(clock() + 30) == 30


def test_monthly_summary_splits_periods_across_months() -> None:
    """A period crossing midnight at a month's end counts in both months."""
    from datetime import UTC, datetime
    start = datetime(2026, 3, 31, 22, tzinfo=UTC).timestamp()
    inc = timeline.Incident(start=start, end=start + 4 * 3600)
    months = timeline.monthly([inc], now=start + 10**6, tz="UTC")
    assert [(m.month, m.incidents, m.active_seconds) for m in months] == [
        ("2026-03", 1, 7200.0), ("2026-04", 0, 7200.0)]
    out = json.loads(timeline.export_json([inc], start + 10**6))
    assert out["incidents"][0]["duration_seconds"] == 14400
    assert timeline.export_csv([inc], 0).splitlines()[1].startswith("2026-03-31T22:00:00Z")


async def test_a_third_party_recomputes_the_chain_from_the_json_export(store: SqliteStore,
                                                                       clock: ManualClock) -> None:
    """The export carries each entry's previous hash; with the documented hashing rule the
    chain is recomputed from the export alone, and matches the head."""
    import hashlib

    log = AuditLog(store, clock)
    for i in range(4):
        await log.record("failover.changed", f"cli:ict{i}", reason=f"r{i}")
        clock.advance(10)
    exported = json.loads(export_json(await log.entries()))
    rows = await store.audit_rows()
    prev = "0" * 64
    for e, row in zip(exported, rows, strict=True):
        assert e["prev_hash"] == prev
        body = json.dumps({"kind": e["kind"], "actor": e["actor"], "data": e["data"]},
                          sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        text = json.dumps({"seq": e["seq"], "at": row.at, "body": body, "prev": prev},
                          sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(text.encode()).hexdigest() == e["hash"]
        prev = e["hash"]
    assert prev == (await log.verify()).head
