"""The HTTP API control: named bearer keys (hashed, revocable), JSON in and out, the same
rules as the page and the CLI, the timeline and the audit trail."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.auth import apikeys
from gateway.devstack.users import DRILL_GROUP, EMPTY_GROUP
from tests.conftest import Gateway, sign_in, start_gateway


@pytest.fixture
def api(stack: Any, loop_thread: Any, tmp_path: Any) -> Iterator[tuple[Gateway, Any]]:
    """A gateway in standby and a client holding a live API key named `runbook`."""
    gw = start_gateway(stack, loop_thread, tmp_path, failover__initial_mode="standby")
    key = loop_thread.run(apikeys.create(gw.app.state.gateway.services.store, "runbook", "test",
                                         time.time()))
    client = gw.client(headers={"Authorization": f"Bearer {key}"})
    try:
        yield gw, client
    finally:
        gw.stop()


def test_read_and_flip_with_a_key(api: tuple[Gateway, Any]) -> None:
    """GET shows the switch; POST flips it, recorded as made by api:<key name>."""
    gw, client = api
    state = client.get("/api/failover").json()
    assert (state["mode"], state["version"], state["store_ok"]) == ("standby", 0, True)
    r = client.post("/api/failover", json={"mode": "active", "reason": "INC-9 MDM outage",
                                           "until": "2h", "message": "Use the gateway.",
                                           "version": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["mode"], body["by"], body["version"]) == ("active", "api:runbook", 1)
    assert body["until"].endswith("Z")
    assert sign_in(gw, "member").get("/failover-probe").status_code == 404  # let in


@pytest.mark.parametrize("auth", [None, "Bearer gwk_forged-key-that-was-never-made",
                                  "Basic dXNlcjpwYXNz", "Bearer not-even-our-format"])
def test_missing_or_forged_key_is_refused_and_audited(api: tuple[Gateway, Any],
                                                      auth: str | None) -> None:
    """No key, a forged key or another scheme: 401 JSON, recorded as api.refused."""
    gw, _ = api
    headers = {"Authorization": auth} if auth else {}
    r = gw.client(headers=headers).get("/api/failover")
    assert r.status_code == 401 and r.json()["error"] == "BadApiKey"
    entries = gw.loop.run(gw.app.state.gateway.services.audit.entries())
    assert entries[-1].kind == "api.refused"


def test_forged_key_cannot_flip(api: tuple[Gateway, Any]) -> None:
    """A POST with a forged key is refused and changes nothing."""
    gw, _ = api
    r = gw.client(headers={"Authorization": "Bearer gwk_forged"}).post(
        "/api/failover", json={"mode": "active", "reason": "r"})
    assert r.status_code == 401
    assert gw.loop.run(gw.app.state.gateway.services.failover.current()).version == 0


def test_revoked_key_is_refused(api: tuple[Gateway, Any]) -> None:
    """A key works until revoked, then gets 401."""
    gw, client = api
    assert client.get("/api/failover").status_code == 200
    assert gw.loop.run(apikeys.revoke(gw.app.state.gateway.services.store, "runbook", time.time()))
    r = client.get("/api/failover")
    assert r.status_code == 401 and "revoked" in r.json()["message"]


@pytest.mark.parametrize("payload,status,words", [
    ({"mode": "sideways", "reason": "r"}, 400, "Unknown mode"),
    ({"mode": "active"}, 400, "reason is required"),
    ({"mode": "drill", "reason": "r", "group": DRILL_GROUP}, 400, "time it ends"),
    ({"mode": "drill", "reason": "r", "group": DRILL_GROUP, "until": "2001-01-01T00:00Z"},
     400, "already passed"),
    ({"mode": "active", "reason": "r", "version": "zero"}, 400, "integer"),
    ({"mode": "active", "reason": 5}, 400, "string"),
    ([1, 2], 400, "JSON object"),
])
def test_bad_requests_get_json_errors(
    api: tuple[Gateway, Any], payload: object, status: int, words: str,
) -> None:
    """Bad input is refused with a JSON error that says what is wrong."""
    _, client = api
    r = client.post("/api/failover", json=payload)
    assert r.status_code == status and words in r.json()["message"]


def test_non_json_body_is_refused(api: tuple[Gateway, Any]) -> None:
    """A form-encoded body is refused: the API speaks JSON."""
    _, client = api
    r = client.post("/api/failover", data={"mode": "active", "reason": "r"})
    assert r.status_code == 400 and "JSON" in r.json()["message"]


def test_stale_version_is_a_conflict_naming_the_change(api: tuple[Gateway, Any]) -> None:
    """A flip based on an old version gets 409 naming who changed it meanwhile."""
    _, client = api
    assert client.post("/api/failover", json={"mode": "active", "reason": "first",
                                              "version": 0}).status_code == 200
    r = client.post("/api/failover", json={"mode": "standby", "reason": "late", "version": 0})
    assert r.status_code == 409 and "api:runbook set it to active" in r.json()["message"]


def test_timeline_and_audit_over_the_api(api: tuple[Gateway, Any]) -> None:
    """Incidents, audit export (JSON and CSV) and chain verification are available."""
    _, client = api
    client.post("/api/failover", json={"mode": "active", "reason": "outage"})
    client.post("/api/failover", json={"mode": "standby", "reason": "over"})
    inc = client.get("/api/failover/incidents").json()
    assert inc["incidents"][0]["reasons"] == ["outage"] and inc["monthly"][0]["incidents"] == 1
    assert client.get("/api/failover/incidents?format=csv").text.startswith("start,end")
    entries = client.get("/api/audit", params={"since": "2000-01-01"}).json()
    assert [e["kind"] for e in entries][:2] == ["failover.changed", "failover.changed"]
    assert client.get("/api/audit?format=csv").text.startswith("seq,")
    assert client.get("/api/audit?format=xml").status_code == 400
    verdict = client.get("/api/audit/verify").json()
    assert verdict["ok"] and verdict["entries"] >= 2


def test_bearer_with_a_browser_cookie_is_still_an_api_call(api: tuple[Gateway, Any]) -> None:
    """A bearer key decides, whatever cookie comes along (issue 14, case 8): a cross-site page
    cannot make a browser send an Authorization header without a CORS preflight we never
    grant. Without the key, the same cookie-carrying POST still needs the CSRF token."""
    gw, _ = api
    admin = sign_in(gw, "admin")
    key = gw.loop.run(apikeys.create(gw.app.state.gateway.services.store, "second", "t",
                                     time.time()))
    r = admin.post("/api/failover", json={"mode": "active", "reason": "r"},
                   headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    r = admin.post("/api/failover", json={"mode": "active", "reason": "r"})
    assert r.status_code == 403 and r.json()["error"] == "CsrfFailed"


def test_etag_and_if_match_guard_a_change(api: tuple[Gateway, Any]) -> None:
    """GET gives the version as an ETag; a POST with If-Match of an old one gets 409."""
    _, client = api
    r = client.get("/api/failover")
    assert r.headers["etag"] == '"0"'
    ok = client.post("/api/failover", json={"mode": "active", "reason": "first"},
                     headers={"If-Match": '"0"'})
    assert ok.status_code == 200 and ok.headers["etag"] == '"1"'
    late = client.post("/api/failover", json={"mode": "standby", "reason": "late"},
                       headers={"If-Match": '"0"'})
    assert late.status_code == 409 and "changed meanwhile" in late.json()["message"]
    assert client.get("/api/failover").json()["mode"] == "active"


@pytest.mark.parametrize("headers,body,words", [
    ({"If-Match": "0"}, {}, "ETag"),
    ({"If-Match": 'W/"0"'}, {}, "ETag"),
    ({"If-Match": '"0"'}, {"version": 1}, "disagree"),
])
def test_bad_if_match_is_refused(
    api: tuple[Gateway, Any], headers: dict[str, str], body: dict[str, int], words: str,
) -> None:
    """An If-Match that is not our ETag, or that contradicts `version`, is a 400."""
    gw, client = api
    r = client.post("/api/failover", json={"mode": "active", "reason": "r", **body},
                    headers=headers)
    assert r.status_code == 400 and words in r.json()["message"]
    assert gw.loop.run(gw.app.state.gateway.services.failover.current()).version == 0


def test_a_key_that_looked_is_refused_after_another_change(api: tuple[Gateway, Any]) -> None:
    """Without a version, the one this key last saw guards its change: another key's flip
    in between gets it 409 naming both versions; after looking again it goes through."""
    gw, client = api
    other_key = gw.loop.run(apikeys.create(gw.app.state.gateway.services.store, "pager", "test",
                                           time.time()))
    other = gw.client(headers={"Authorization": f"Bearer {other_key}"})
    assert client.get("/api/failover").json()["version"] == 0      # runbook looks
    assert other.post("/api/failover", json={"mode": "active",     # pager never looked:
                                             "reason": "pager"}).status_code == 200  # blind
    stale = client.post("/api/failover", json={"mode": "drill", "reason": "rehearse",
                                               "group": DRILL_GROUP, "until": "1h"})
    assert stale.status_code == 409
    message = stale.json()["message"]
    assert "api:pager set it to active" in message and "You last saw version 0" in message
    assert client.get("/api/failover").json()["version"] == 1
    r = client.post("/api/failover", json={"mode": "standby", "reason": "looked again"})
    assert r.status_code == 200 and r.json()["version"] == 2


def test_drill_group_is_checked_in_the_directory(api: tuple[Gateway, Any]) -> None:
    """A drill names its group's directory name and member count; an empty group is refused
    (400, nothing changed) unless "force": true, which is audited."""
    gw, client = api
    drill = {"mode": "drill", "reason": "rehearsal", "until": "1h"}
    empty = client.post("/api/failover", json={**drill, "group": EMPTY_GROUP})
    assert empty.status_code == 400 and "has nobody in it" in empty.json()["message"]
    assert '"force": true' in empty.json()["message"]
    assert client.get("/api/failover").json()["version"] == 0
    assert client.post("/api/failover", json={**drill, "group": EMPTY_GROUP,
                                              "force": "yes"}).status_code == 400
    forced = client.post("/api/failover", json={**drill, "group": EMPTY_GROUP, "force": True})
    assert forced.status_code == 200
    assert forced.json()["group_check"] == {
        "confirmed": False, "name": "Mail gateway drill: next quarter", "members": 0,
        "problem": forced.json()["group_check"]["problem"]}
    kinds = [e.kind for e in gw.loop.run(gw.app.state.gateway.services.audit.entries())]
    assert "failover.drill.group_unconfirmed" in kinds
    ok = client.post("/api/failover", json={**drill, "group": DRILL_GROUP})
    assert ok.status_code == 200, ok.text
    assert ok.json()["group_check"] == {"confirmed": True, "members": 1,
                                        "name": "Mail gateway drill: members"}
    assert ok.json()["group"] == DRILL_GROUP
