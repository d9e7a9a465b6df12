"""The evidence report of a period, on SQLite and PostgreSQL: every section (upstreams and
platform checks with outage windows and daily p50/p95, the canary, the failover timeline,
use of the standby route, the audit chain with previous hashes), in HTML (server-drawn SVG,
nothing external, UTC and the council's zone across the spring clock change), JSON and CSV;
a broken chain is marked in red."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from gateway.config import Settings, load_settings
from gateway.evidence.export import make_report, parse_period
from gateway.evidence.render import render
from gateway.evidence.signing import Signer
from gateway.health.history import member_key
from gateway.store.base import Store
from gateway.store.evidence import CanaryRound, HealthSample, HealthTransition, UsageDay
from gateway.store.sqlite import SqliteStore
from gateway.switch.audit import AuditLog

# 2026-03-28 00:00 UTC .. 2026-03-30 00:00 UTC: Europe/London moves to BST at 01:00 UTC on 29th.
SINCE = 1_774_656_000.0
UNTIL = SINCE + 2 * 86400
OUT_START = SINCE + 86400 + 1800       # 29th 00:30 UTC (GMT) ...
OUT_END = SINCE + 86400 + 5400         # ... to 01:30 UTC (02:30 BST): an outage across the change


def settings(tmp_path: Path) -> Settings:
    return load_settings(environ={
        "GATEWAY_STORE_SQLITE_PATH": str(tmp_path / "g.db"),
        "GATEWAY_EVIDENCE_SIGNING_KEY_FILE": str(tmp_path / "evidence.key"),
        "GATEWAY_GENERAL_TIMEZONE": "Europe/London",
        "GATEWAY_HEALTH_SERVICE_ID": "council-mail-gateway",
    })


async def populate(store: Store) -> None:
    samples, transitions = [], []
    t = SINCE
    while t < UNTIL:
        failing = OUT_START <= t < OUT_END
        samples.append(HealthSample("imap:responseTime", t, "fail" if failing else "pass",
                                    5000.0 if failing else 40.0 + (t % 7), "ms",
                                    "IMAP server cannot be reached" if failing else ""))
        samples.append(HealthSample("platform:portal", t, "pass", 120.0, "ms"))
        t += 300
    transitions += [HealthTransition("imap:responseTime", SINCE, "pass", "", ""),
                    HealthTransition("imap:responseTime", OUT_START, "fail", "pass",
                                     "IMAP server cannot be reached"),
                    HealthTransition("imap:responseTime", OUT_END, "pass", "fail", "")]
    rounds = [CanaryRound(SINCE + 600 * i, i != 5, "" if i != 5 else "imap arrival",
                          None if i == 5 else 1.0 + i / 10, SINCE + 600 * i + 1,
                          None if i == 5 else SINCE + 600 * i + 2,
                          "" if i != 5 else "canary message not seen after 300 s")
              for i in range(10)]
    await store.history_write(samples, transitions, rounds)
    await store.usage_add([UsageDay("2026-03-29", member_key("alex.morgan@council.example"),
                                    pages=12)])


async def audit_entries(store: Store) -> None:
    times = iter([OUT_START + 60, OUT_START + 120, OUT_START + 300, OUT_END + 600])
    log = AuditLog(store, lambda: next(times))
    await log.record("failover.changed", "priya.shah@council.example", old="standby",
                     new="active", reason="MDM outage INC-42")
    await log.record("auth.signin", "alex.morgan@council.example", admin=False)
    await log.record("mail.sent", "alex.morgan@council.example", size=1200, recipients=1)
    await log.record("failover.changed", "cli:ict", old="active", new="standby",
                     reason="MDM back")


async def test_every_section_from_the_store(store: Store, tmp_path: Path) -> None:
    s = settings(tmp_path)
    await populate(store)
    await audit_entries(store)
    signer = Signer.from_file(tmp_path / "evidence.key")
    r = await make_report(s, store, signer, since=SINCE, until=UNTIL, now=UNTIL + 60)
    imap = next(c for c in r.checks if c.key == "imap:responseTime")
    assert imap.samples == 576 and imap.failures == 12
    assert imap.availability is not None
    assert round(imap.availability, 3) == round(100 * 564 / 576, 3)
    [out] = imap.outages
    assert (out.start, out.end, out.error) == (OUT_START, OUT_END,
                                               "IMAP server cannot be reached")
    assert [d.day for d in imap.days] == ["2026-03-28", "2026-03-29"]
    assert imap.days[0].failures == 0 and imap.days[1].failures == 12
    assert imap.days[0].p50 is not None and imap.days[1].vmax == 46.0   # failures excluded
    platform = next(c for c in r.checks if c.key == "platform:portal")
    assert platform.platform and platform.availability == 100.0
    assert r.canary.rounds == 10 and r.canary.ok == 9
    assert r.canary.failures[0][1] == "imap arrival"
    assert r.canary.days[0].vmax == 1.9
    assert [(c.by, c.new) for c in r.changes] == [("priya.shah@council.example", "active"),
                                                 ("cli:ict", "standby")]
    [incident] = r.incidents
    assert incident.reasons == ["MDM outage INC-42"]
    day2 = r.usage[1]
    assert (day2.members, day2.signins, day2.sends, day2.pages) == (1, 1, 1, 12)
    assert r.chain.ok and r.chain.entries == 4 and r.chain.checkpoints == 1

    page = render(r, "html", name="r.html").decode()
    assert page.count("<svg") >= 6 and "<script" not in page.lower()
    # Nothing external: no attribute loads anything (the only URLs are text or SVG's xmlns).
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", page)
    assert "<link" not in page and "@import" not in page
    assert "@page { size: A4" in page
    # Times in UTC and in the council's zone, both sides of the clock change.
    assert "2026-03-29T00:30:00Z" in page and "2026-03-29 00:30:00 GMT" in page
    assert "2026-03-29 02:30:00 BST" in page
    assert "MDM outage INC-42" in page and "IMAP server cannot be reached" in page
    for row in await store.audit_rows():
        assert row.prev_hash in page and row.hash in page
    assert "DOES NOT VERIFY" not in page

    doc = json.loads(render(r, "json"))
    assert doc["checks"][0]["outages"][0]["start"]["local"] == "2026-03-29 00:30:00 GMT"
    assert doc["audit"]["head"] == r.chain.head
    entries = doc["audit"]["period_entries"]
    assert [e["prev_hash"] for e in entries][1:] == [e["hash"] for e in entries][:-1]
    csv_text = render(r, "csv").decode()
    assert "outage,imap:responseTime,2026-03-29T00:30:00Z,2026-03-29T01:30:00Z" in csv_text
    assert "canary_failure,mailflow" in csv_text and "audit_entry" in csv_text


async def test_a_broken_chain_is_marked_in_red(store: Store, tmp_path: Path) -> None:
    s = settings(tmp_path)
    await audit_entries(store)
    signer = Signer.from_file(tmp_path / "evidence.key")
    rows = await store.audit_rows()
    if isinstance(store, SqliteStore):
        db = sqlite3.connect(store.path)
        with db:
            db.execute("UPDATE audit SET body = replace(body, 'INC-42', 'INC-00') WHERE seq=1")
        db.close()
    else:
        import asyncpg
        conn = await asyncpg.connect(store.dsn)  # type: ignore[attr-defined]
        await conn.execute("UPDATE audit SET body = replace(body, 'INC-42', 'INC-00') "
                           "WHERE seq=1")
        await conn.close()
    assert rows
    r = await make_report(s, store, signer, since=SINCE, until=UNTIL, now=UNTIL)
    assert not r.chain.ok
    page = render(r, "html").decode()
    assert "DOES NOT VERIFY" in page and 'class="broken"' in page
    assert "broken-table" in page
    assert json.loads(render(r, "json"))["failover"]["chain_verified"] is False


def test_periods_ago_and_iso() -> None:
    now = 1_774_800_000.0
    assert parse_period("1h", None, now, "UTC") == (now - 3600, now)
    assert parse_period("7d", None, now, "UTC") == (now - 7 * 86400, now)
    start, end = parse_period("2026-03-28", "2026-03-29T12:00Z", now, "Europe/London")
    assert (start, end) == (SINCE, SINCE + 86400 + 12 * 3600)


async def test_a_short_period_is_shown_per_hour(store: Store, tmp_path: Path) -> None:
    """A few hours (the demo's --since 1h) are charted per hour, not as one bar."""
    await populate(store)
    signer = Signer.from_file(tmp_path / "evidence.key")
    r = await make_report(settings(tmp_path), store, signer, since=OUT_START - 1800,
                          until=OUT_END + 1800, now=UNTIL)
    imap = next(c for c in r.checks if c.key == "imap:responseTime")
    assert r.hourly and [d.day for d in imap.days] == ["2026-03-29 00:00", "2026-03-29 01:00"]
    assert [d.failures for d in imap.days] == [6, 6]
    assert [d.samples for d in imap.days] == [12, 12]
    page = render(r, "html").decode()
    assert "availability per hour" in page and "Hour (UTC)" in page
    assert json.loads(render(r, "json"))["report"]["buckets"] == "hour"
