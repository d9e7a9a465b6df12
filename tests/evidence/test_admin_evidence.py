"""The evidence pages under /admin, against a real gateway over HTTPS with the dev stack: the
report on screen for any period (strict CSP, nothing external), the signed ZIP download,
admins only; a broken audit chain marks the timeline red and refuses exports; the
notification list shows kept deliveries with the change they belong to."""

from __future__ import annotations

import io
import re
import sqlite3
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.devstack.stack import DevStack
from gateway.evidence.signing import load_public, verify
from gateway.services import Services
from tests.conftest import Gateway, LoopThread, csrf_of, sign_in, start_gateway


@pytest.fixture
def gw(stack: DevStack, loop_thread: LoopThread, tmp_path: Path) -> Iterator[Gateway]:
    g = start_gateway(stack, loop_thread, tmp_path, failover__initial_mode="standby",
                      notify__webhooks=["http://127.0.0.1:9/hook-secret-token"],
                      notify__backoff_seconds=60.0, notify__attempts=1)
    yield g
    g.stop()


def _flip(g: Gateway, client: Any, mode: str, reason: str) -> None:
    r = client.post("/admin/switch", data={
        "csrf_token": csrf_of(client, "/admin"), "mode": mode, "reason": reason, "until": "",
        "group": "", "message": "", "version": _version(client), "confirm": "yes"},
        headers={"Origin": g.url})
    assert r.status_code == 303, r.text


def _version(client: Any) -> str:
    m = re.search(r'data-version="(\d+)"', client.get("/admin").text)
    assert m
    return m.group(1)


def test_report_on_screen_and_signed_download(gw: Gateway) -> None:
    admin = sign_in(gw, "admin", "/admin")
    page = admin.get("/admin/evidence", params={"since": "1h"})
    assert page.status_code == 200
    html = page.text
    assert "Mail service evidence report" in html and "<svg" in html
    assert "<script" not in html.lower()
    csp = page.headers["content-security-policy"]
    assert "'unsafe-inline'" not in csp.split("style-src")[1].split(";")[0]
    nonce = csp.split("'nonce-")[1].split("'")[0]
    assert f'<style nonce="{nonce}">' in html
    bad = admin.get("/admin/evidence", params={"since": "tomorrow-ish"})
    assert bad.status_code == 400 and "is not a time" in bad.text

    z = admin.get("/admin/evidence/download", params={"since": "1h", "format": "json"})
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    files = zipfile.ZipFile(io.BytesIO(z.content))
    names = files.namelist()
    report = next(n for n in names if n.endswith(".json"))
    key = load_public(files.read("evidence-public.pem"))
    assert verify(key, files.read(report), files.read(report + ".sig"))
    assert not verify(key, files.read(report) + b" ", files.read(report + ".sig"))
    assert "openssl pkeyutl -verify" in files.read("HOW-TO-VERIFY.txt").decode()

    member = sign_in(gw, "member", "/")
    assert member.get("/admin/evidence").status_code == 403
    assert member.get("/admin/evidence/download").status_code == 403


def test_broken_chain_marks_the_timeline_and_refuses_exports(gw: Gateway) -> None:
    admin = sign_in(gw, "admin", "/admin")
    assert admin.get("/admin/audit.json").status_code == 200
    db = sqlite3.connect(gw.settings.store.sqlite_path)
    with db:
        db.execute("UPDATE audit SET body = replace(body, 'auth', 'AUTH') WHERE seq = 1")
    db.close()
    # An old entry is read again by the whole-chain re-check (the button, or hourly): views
    # in between read only new entries (tests/faults/test_admin_audit.py).
    assert admin.post("/admin/audit/verify", data={"csrf_token": csrf_of(admin, "/admin")},
                      headers={"Origin": gw.url}).status_code == 303
    page = admin.get("/admin").text
    assert 'id="timeline-untrusted"' in page and "BROKEN" in page
    refused = admin.get("/admin/audit.json")
    assert refused.status_code == 409 and "does not verify" in refused.text
    forced = admin.get("/admin/incidents.csv", params={"force": "1"})
    assert forced.status_code == 200 and forced.headers["x-audit-chain"] == "does-not-verify"
    report = admin.get("/admin/evidence", params={"since": "1h"}).text
    assert "DOES NOT VERIFY" in report


def test_notifications_are_listed_with_their_change(gw: Gateway) -> None:
    """The webhook points at a closed port: the delivery is kept as pending with the change
    it belongs to and its next try; the URL's secret never shows."""
    admin = sign_in(gw, "admin", "/admin")
    _flip(gw, admin, "active", "MDM outage INC-7")

    async def kept() -> list[Any]:
        svc: Services = gw.app.state.gateway.services
        await svc.notifier.drain(10)
        return await svc.store.notifications_recent()

    rows = gw.loop.run(kept())
    assert rows and rows[0].state == "pending" and rows[0].attempts == 1
    assert "standby -> active" in rows[0].change and "hook-secret-token" not in rows[0].target
    page = admin.get("/admin").text
    section = page.split('id="deliveries"')[1]
    assert "standby -&gt; active" in section and "webhook 127.0.0.1:9" in section
    assert "next try" in section and "hook-secret-token" not in page
