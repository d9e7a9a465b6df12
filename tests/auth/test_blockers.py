"""The loop rule for faults only ICT can fix (gateway.auth.blockers), on a real SQLite store:
the first occurrence asks for one fresh sign-in and is audited once; the same fault on a
session signed in after that stops the retrying; the memory lapses so a fix is picked up."""

from __future__ import annotations

from pathlib import Path

from gateway.auth.blockers import KINDS, MEMORY_SECONDS, Blockers, IctFault
from gateway.store.base import SessionRecord
from gateway.store.sqlite import SqliteStore
from gateway.switch.audit import AuditLog


def _session(created: float, oid: str = "oid-1") -> SessionRecord:
    return SessionRecord(id="s", user_oid=oid, user_name="A", email="a@council.example",
                         roles=(), groups=(), account_id="acc", csrf_token="c",
                         created_at=created, last_seen=created, auth_time=created)


async def test_one_fresh_sign_in_then_stop(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    await store.open()
    now = [1000.0]
    counted: list[str] = []
    try:
        audit = AuditLog(store, lambda: now[0])
        b = Blockers(store, audit, lambda: now[0], count=counted.append)
        old = _session(created=900.0)
        assert await b.report("imap_disabled", old) is False        # try one fresh sign-in
        assert await b.report("imap_disabled", old) is False        # same old session: still
        now[0] = 1010.0
        fresh = _session(created=1005.0)                            # signed in after it
        assert await b.report("imap_disabled", fresh) is True       # stop: show the page
        assert await b.report("imap_disabled", _session(1005.0, "oid-2")) is False  # per member
        rows = await store.audit_rows()
        faults = [r for r in rows if '"ict.fault"' in r.body]
        assert len(faults) == 2                                     # once per member
        assert "Set-CASMailbox" in faults[0].body
        assert counted == ["imap_disabled"] * 4
        obs = b.observation()
        assert obs.status == "warn" and obs.value == 2 and "imap_disabled" in obs.output
        now[0] = 1010.0 + MEMORY_SECONDS + 1                        # ICT may have fixed it
        assert await b.report("imap_disabled", _session(now[0] - 5)) is False
    finally:
        await store.close()


async def test_health_check_passes_when_nothing_seen_and_clears_after_an_hour(
        tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    await store.open()
    now = [0.0]
    try:
        b = Blockers(store, AuditLog(store, lambda: now[0]), lambda: now[0])
        assert b.observation().status == "pass"
        await b.report("smtp_auth_disabled", _session(0.0))
        assert "5.7.139" in b.observation().output
        now[0] = 3601.0
        assert b.observation().status == "pass"
    finally:
        await store.close()


def test_every_kind_has_a_plain_page_and_a_fix() -> None:
    for kind, k in KINDS.items():
        err = IctFault(kind)
        assert err.status == 503 and "ICT has been told" in err.message, kind
        assert k.ict and k.title == err.title
