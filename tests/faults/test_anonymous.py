"""Anonymous load (issue 14, case 6): bad API keys and sign-in starts are limited per
address with 429 and Retry-After; refusals reach the audit trail as a few aggregated
entries, not one row each; pre-sign-in state stays bounded."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import httpx

from gateway.auth import apikeys
from tests.conftest import ca_context
from tests.faults.conftest import Rig
from tests.web.mailhelp import unique


def _from(gw: Any, address: str) -> httpx.Client:
    """A client whose connections come from another loopback address."""
    c = httpx.Client(base_url=gw.url, verify=ca_context(gw.stack), trust_env=False,
                     follow_redirects=False, timeout=30,
                     transport=httpx.HTTPTransport(local_address=address,
                                                   verify=ca_context(gw.stack)))
    gw.clients.append(c)
    return c


def _refusals(gw: Any) -> list[dict[str, Any]]:
    rows = gw.loop.run(gw.app.state.gateway.services.store.audit_rows())
    bodies = [json.loads(r.body) for r in rows]
    return [b["data"] for b in bodies if b["kind"] == "api.refused"]


def test_bad_key_flood_gets_429_and_a_few_aggregated_audit_entries(rig: Rig) -> None:
    """50 bad keys from one address: 5 are checked (401), the rest get 429 with Retry-After
    and no store work; the audit trail gets one entry, then one aggregated entry for the
    other 49 once the minute is over (it got 50 rows). A valid key from another address
    still works meanwhile."""
    gw = rig.gateway(access__api_refusals_per_minute=5)
    attacker = _from(gw, "127.0.0.1")
    codes = [attacker.get("/api/failover", headers={"Authorization": f"Bearer gw_bad{i}"})
             for i in range(50)]
    assert [r.status_code for r in codes[:5]] == [401] * 5
    assert {r.status_code for r in codes[5:]} == {429}
    assert int(codes[-1].headers["retry-after"]) <= 60
    assert len(_refusals(gw)) == 1

    key = gw.loop.run(apikeys.create(gw.app.state.gateway.services.store, unique("ops").replace(
        " ", "-"), "test", gw.clock()))
    ops = _from(gw, "127.0.0.2")
    assert ops.get("/api/failover", headers={"Authorization": f"Bearer {key}"}
                   ).status_code == 200

    gw.clock.advance(61)
    assert attacker.get("/api/failover", headers={"Authorization": "Bearer gw_again"}
                        ).status_code == 401
    refusals = _refusals(gw)
    assert len(refusals) == 3
    [aggregated] = [r for r in refusals if r.get("aggregated")]
    assert aggregated["refusals"] == 49 and aggregated["addresses"] == 1


def test_sign_in_starts_are_bounded_per_address(rig: Rig) -> None:
    """Each /auth/start keeps a flow for ten minutes; past the per-address limit the answer
    is a 429 page with Retry-After and nothing is stored; another address is unaffected."""
    gw = rig.gateway(access__signin_starts_per_address=5)
    flood = _from(gw, "127.0.0.1")
    answers = [flood.get("/auth/start", params={"next": "/"}) for _ in range(20)]
    assert [r.status_code for r in answers[:5]] == [303] * 5
    assert {r.status_code for r in answers[5:]} == {429}
    assert answers[-1].headers.get("retry-after")
    assert "Too many sign-ins" in answers[-1].text and "Traceback" not in answers[-1].text
    with sqlite3.connect(gw.settings.store.sqlite_path) as db:
        [(flows,)] = db.execute("SELECT count(*) FROM auth_flows").fetchall()
    assert flows == 5
    assert _from(gw, "127.0.0.3").get("/auth/start").status_code == 303
