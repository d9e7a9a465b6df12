"""/admin verifies the audit chain incrementally (issue 14, case 6 remainder). Rows read
are counted at the store's own seam: a counting wrapper of the real SQLite store, passed in
through ``create_app(store=...)``. A view after a flood reads only the new entries (and the
verified head once more); the whole chain is read at a bounded interval or on the
CSRF-protected button, and a tampered old entry is caught there and by the CLI."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.main import main
from gateway.evidence.checkpoint import FULL_CHECK_SECONDS
from gateway.store.sqlite import SqliteStore
from tests.conftest import csrf_of, sign_in
from tests.faults.conftest import Rig


class CountingStore:
    """The real SQLite store; counts the audit rows each read returns."""

    def __init__(self, path: Path) -> None:
        self.inner = SqliteStore(path)
        self.path = path
        self.rows_read = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in ("audit_rows", "audit_rows_after"):
            return attr

        async def read(*args: Any, **kwargs: Any) -> Any:
            rows = await attr(*args, **kwargs)
            self.rows_read += len(rows)
            return rows
        return read


def _length(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM audit").fetchone()[0])
    finally:
        db.close()


def _view(gw: Any, admin: Any, store: CountingStore) -> tuple[int, str]:
    before = store.rows_read
    page = admin.get("/admin")
    assert page.status_code == 200, page.headers.get("location")
    return store.rows_read - before, page.text


def test_admin_reads_only_new_audit_entries_and_rechecks_in_full(
        rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = CountingStore(tmp_path / "counted.db")
    gw = rig.gateway(store=store)
    audit = gw.app.state.gateway.services.audit
    for i in range(300):   # a flood of entries before the first view
        gw.loop.run(audit.record("api.refused", "anonymous", n=i))
    admin = sign_in(gw, "admin", "/admin")

    first, page = _view(gw, admin, store)
    total = _length(store.path)
    assert total >= 300 and first >= total and "the whole chain was read" in page
    assert "audit chain intact" in page

    for i in range(40):
        gw.loop.run(audit.record("api.refused", "anonymous", n=1000 + i))
    read, page = _view(gw, admin, store)
    # 40 new entries, the sign-in entries since, and the verified head read once more.
    assert read <= 40 + 5, read
    assert re.search(r"\d+ new entries read after the last verified head", page)
    again, page = _view(gw, admin, store)
    assert again <= 3, again   # nothing new: the head, and what the last view recorded

    # Tamper with an old entry: an incremental view does not re-read it ...
    db = sqlite3.connect(store.path)
    with db:
        db.execute("UPDATE audit SET body = replace(body, '\"n\":7', '\"n\":8') WHERE seq = 8")
    db.close()
    # ... the button reads everything and says so; it needs the CSRF token.
    refused = admin.post("/admin/audit/verify", headers={"Origin": gw.url})
    assert refused.status_code == 403
    before = store.rows_read
    done = admin.post("/admin/audit/verify", data={"csrf_token": csrf_of(admin, "/admin")},
                      headers={"Origin": gw.url})
    assert done.status_code == 303 and done.headers["location"].startswith("/admin")
    assert store.rows_read - before >= total
    page = admin.get("/admin").text
    assert "audit chain BROKEN" in page and "entry 8" in page

    # The command line always reads the whole chain.
    monkeypatch.setenv("GATEWAY_STORE_SQLITE_PATH", str(store.path))
    assert main(["audit", "verify"]) == 1


def test_the_whole_chain_is_read_again_after_the_interval(rig: Rig, tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "counted.db")
    gw = rig.gateway(store=store)
    gw.loop.run(gw.app.state.gateway.services.audit.record("test.first", "someone"))
    admin = sign_in(gw, "admin", "/admin")
    _view(gw, admin, store)
    db = sqlite3.connect(store.path)
    with db:
        db.execute("UPDATE audit SET body = replace(body, 'someone', 'nobody') WHERE seq = 1")
    db.close()
    _read, page = _view(gw, admin, store)
    assert "audit chain intact" in page   # not re-read yet: that is the bounded interval
    gw.clock.advance(FULL_CHECK_SECONDS + 1)
    admin = sign_in(gw, "admin", "/admin")   # the first sign-in has idled out by now
    _read, page = _view(gw, admin, store)
    assert "audit chain BROKEN" in page and "the whole chain was read" in page
