"""The switch in the running gateway over HTTPS: every mode against every kind of user, the
admin page control (confirmation, reason, recent sign-in, concurrent flips, who is signed
in), the public status page, drill revert by the injected clock, and sign-in/out/refusal
entries in the audit trail."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.devstack.users import DRILL_GROUP, EMPTY_GROUP, PILOT_GROUP, user
from gateway.switch.machine import Flip, Mode
from tests.conftest import Gateway, authorize, csrf_of, post_callback, sign_in, start_gateway

PROBE = "/failover-probe"   # no such page: 404 when admitted, the standby page when not


@pytest.fixture
def fgw(stack: Any, loop_thread: Any, tmp_path: Any) -> Iterator[Gateway]:
    """A gateway starting in standby, with the pilot group configured; `norole` is made a
    pilot-group member for the test."""
    pilot = user("norole")
    stack.entra.set_groups(pilot.oid, [PILOT_GROUP])
    gw = start_gateway(stack, loop_thread, tmp_path, failover__initial_mode="standby",
                       failover__pilot_groups=[PILOT_GROUP],
                       access__member_groups=[PILOT_GROUP])
    try:
        yield gw
    finally:
        stack.entra.set_groups(pilot.oid, None)
        gw.stop()


def flip(gw: Gateway, mode: str, **kw: Any) -> None:
    gw.loop.run(gw.app.state.gateway.services.failover.flip(Flip(mode, kw.pop("reason", "test"),
                                                         "test", **kw)))


def admitted(client: Any) -> bool:
    r = client.get(PROBE)
    if r.status_code == 403:
        assert 'id="standby"' in r.text
        return False
    assert r.status_code == 404, r.text
    return True


def audit_kinds(gw: Gateway) -> list[tuple[str, str]]:
    entries = gw.loop.run(gw.app.state.gateway.services.audit.entries())
    return [(e.kind, e.actor) for e in entries]


def test_every_mode_against_every_kind_of_user(fgw: Gateway) -> None:
    """Standby: admin+pilot; active: all members; drill: admin+pilot+drill group. People
    already signed in are let in or shown the standby page on their next request."""
    clients = {who: sign_in(fgw, who) for who in ("admin", "norole", "member", "member2")}
    expected = {
        "standby": {"admin": True, "norole": True, "member": False, "member2": False},
        "active": {"admin": True, "norole": True, "member": True, "member2": True},
        "drill": {"admin": True, "norole": True, "member": False, "member2": True},
        "standby again": {"admin": True, "norole": True, "member": False, "member2": False},
    }
    for step, want in expected.items():
        if step == "drill":
            flip(fgw, "drill", group=DRILL_GROUP, until=time.time() + 3600)
        elif step != "standby":
            flip(fgw, step.split()[0])
        got = {who: admitted(c) for who, c in clients.items()}
        assert got == want, step


def test_user_without_role_gets_no_session_in_any_mode(fgw: Gateway) -> None:
    """Someone with no role or group is refused at sign-in even in active mode."""
    flip(fgw, "active")
    client = fgw.client()
    r = post_callback(fgw, client, authorize(fgw, client, "canary"))
    assert r.status_code == 403 and "not set up" in r.text
    assert ("auth.refused", user("canary").email) in audit_kinds(fgw)


def test_standby_page_shows_ict_message(fgw: Gateway) -> None:
    """A refused member sees the standby page with ICT's message and a status link."""
    flip(fgw, "active")
    flip(fgw, "standby", message="The iPad app is back. Use it again.")
    r = sign_in(fgw, "member").get("/")
    assert r.status_code == 403
    assert "The iPad app is back. Use it again." in r.text and 'href="/status"' in r.text


def test_admin_flips_from_the_page_with_confirmation(fgw: Gateway) -> None:
    """Review shows a confirmation (nothing changes yet); confirming flips the switch, the
    audit records the admin, and the member's next request is let in."""
    admin, member = sign_in(fgw, "admin"), sign_in(fgw, "member")
    page = admin.get("/admin")
    assert page.status_code == 200 and 'id="mode">standby<' in page.text
    form = {"csrf_token": csrf_of(admin, "/admin"), "mode": "active",
            "reason": "MDM outage INC-7", "until": "", "group": "", "message": "",
            "version": "0"}
    review = admin.post("/admin/switch", data=form, headers={"Origin": fgw.url})
    assert review.status_code == 200 and "Yes, switch to active" in review.text
    assert not admitted(member)
    done = admin.post("/admin/switch", data={**form, "confirm": "yes"},
                      headers={"Origin": fgw.url})
    assert done.status_code == 303 and done.headers["location"] == "/admin?changed=1"
    page = admin.get("/admin?changed=1")
    assert 'id="mode">active<' in page.text and "MDM outage INC-7" in page.text
    assert admitted(member)
    entries = fgw.loop.run(fgw.app.state.gateway.services.audit.entries())
    change = [e for e in entries if e.kind == "failover.changed"][-1]
    assert change.actor == f"{user('admin').name} <{user('admin').email}>"
    assert change.data["reason"] == "MDM outage INC-7"


def test_page_refuses_a_missing_reason_and_an_unknown_mode(fgw: Gateway) -> None:
    """No reason or an unknown mode re-shows the page with the error; nothing changes."""
    admin = sign_in(fgw, "admin")
    token = csrf_of(admin, "/admin")
    for mode, reason, words in (("active", " ", "reason is required"),
                                ("sideways", "r", "Unknown mode")):
        r = admin.post("/admin/switch", headers={"Origin": fgw.url}, data={
            "csrf_token": token, "mode": mode, "reason": reason, "version": "0",
            "confirm": "yes"})
        assert r.status_code == 400 and words in r.text
    assert fgw.loop.run(fgw.app.state.gateway.services.failover.current()).mode is Mode.STANDBY


def test_page_flip_needs_a_recent_sign_in(fgw: Gateway) -> None:
    """After reauth_minutes the page asks the admin to sign in again and changes nothing."""
    admin = sign_in(fgw, "admin")
    token = csrf_of(admin, "/admin")
    fgw.clock.advance(16 * 60)
    r = admin.post("/admin/switch", headers={"Origin": fgw.url}, data={
        "csrf_token": token, "mode": "active", "reason": "r", "version": "0", "confirm": "yes"})
    assert r.status_code == 403 and 'id="reauth"' in r.text
    assert "/auth/start?fresh=1&amp;next=%2Fadmin" in r.text
    assert fgw.loop.run(fgw.app.state.gateway.services.failover.current()).mode is Mode.STANDBY


def test_two_admins_confirming_at_once_the_later_sees_the_earlier(fgw: Gateway) -> None:
    """Both confirm a flip from the same page version: the second gets 409 naming the first
    change, and the first change stands."""
    first, second = sign_in(fgw, "admin"), sign_in(fgw, "admin")
    forms = [{"csrf_token": csrf_of(c, "/admin"), "version": "0", "confirm": "yes"}
             for c in (first, second)]
    r1 = first.post("/admin/switch", headers={"Origin": fgw.url},
                    data={**forms[0], "mode": "active", "reason": "outage"})
    r2 = second.post("/admin/switch", headers={"Origin": fgw.url},
                     data={**forms[1], "mode": "drill", "reason": "rehearsal",
                           "group": DRILL_GROUP, "until": "2h"})
    assert r1.status_code == 303
    assert r2.status_code == 409 and "changed meanwhile" in r2.text and "outage" in r2.text
    assert fgw.loop.run(fgw.app.state.gateway.services.failover.current()).mode is Mode.ACTIVE


def test_admin_page_lists_who_is_signed_in(fgw: Gateway) -> None:
    """The page counts and names the people signed in now, and whether they are let in."""
    sign_in(fgw, "member")
    admin = sign_in(fgw, "admin")
    page = admin.get("/admin").text
    assert 'id="signed-in-count">2<' in page
    assert user("member").email in page and "standby page" in page


def test_admin_page_and_exports_are_for_admins_only(fgw: Gateway) -> None:
    """A member in active mode is refused the admin page and its exports."""
    flip(fgw, "active")
    member = sign_in(fgw, "member")
    for path in ("/admin", "/admin/audit.csv", "/admin/incidents.json"):
        r = member.get(path)
        assert r.status_code == 403 and "Failover switch" not in r.text


def test_admin_exports_timeline_and_audit(fgw: Gateway) -> None:
    """The admin page exports the incident timeline and the audit trail."""
    flip(fgw, "active", reason="outage one")
    flip(fgw, "standby", reason="over")
    admin = sign_in(fgw, "admin")
    inc = admin.get("/admin/incidents.json").json()
    assert inc["incidents"][0]["reasons"] == ["outage one"]
    csv_text = admin.get("/admin/audit.csv").text
    assert csv_text.startswith("seq,time,kind,actor,data,hash")
    assert "failover.changed" in csv_text and "auth.signin" in csv_text
    assert "outage one" in admin.get("/admin").text


def test_public_status_page_needs_no_sign_in_and_hides_internals(fgw: Gateway) -> None:
    """/status shows mode, since and ICT's message to anyone; never who or why."""
    flip(fgw, "active", reason="secret supplier dispute", message="Use this route for mail.")
    client = fgw.client()
    r = client.get("/status")
    assert r.status_code == 200 and 'id="mode">active<' in r.text
    assert "Use this route for mail." in r.text and "supplier" not in r.text
    data = client.get("/status?format=json").json()
    assert data["mode"] == "active" and data["message"] == "Use this route for mail."
    assert "reason" not in data and "by" not in data


def test_drill_reverts_at_its_end_time_for_signed_in_members(fgw: Gateway) -> None:
    """A drill member is let in during the drill and sees standby once it has ended."""
    member2 = sign_in(fgw, "member2")
    flip(fgw, "drill", group=DRILL_GROUP, until=fgw.clock() + 600)
    assert admitted(member2)
    fgw.clock.advance(601)
    assert not admitted(member2)
    assert ("failover.changed", "system") in audit_kinds(fgw)


def test_sign_in_sign_out_and_refusals_are_audited(fgw: Gateway) -> None:
    """Sign-in, sign-out and a standby refusal (once, not per page) reach the audit trail."""
    member = sign_in(fgw, "member")
    for _ in range(3):
        assert not admitted(member)
    # The standby page still carries the sign-out form and its token.
    r = member.post("/auth/signout", data={"csrf_token": csrf_of(member, PROBE)},
                    headers={"Origin": fgw.url})
    assert r.status_code == 303
    kinds = audit_kinds(fgw)
    email = user("member").email
    assert ("auth.signin", email) in kinds and ("auth.signout", email) in kinds
    assert kinds.count(("access.refused", email)) == 1


def test_drill_form_shows_the_group_from_the_directory_or_refuses_it(fgw: Gateway) -> None:
    """The page's drill looks its group up in the directory (the Graph stand-in) as the
    CLI does: the confirmation names the group and its member count; an unknown id, a
    group with nobody in it or an id that is not one is refused with a plain page and
    nothing changes."""
    admin = sign_in(fgw, "admin")
    form = {"csrf_token": csrf_of(admin, "/admin"), "mode": "drill", "reason": "rehearsal",
            "until": "1h", "message": "", "version": "0"}
    review = admin.post("/admin/switch", data={**form, "group": DRILL_GROUP},
                        headers={"Origin": fgw.url})
    assert review.status_code == 200 and "Yes, switch to drill" in review.text
    assert "Mail gateway drill: members: 1 person in the directory" in review.text
    for group, said in ((EMPTY_GROUP, "has nobody in it"),
                        ("0b7f6c1e-0000-4000-8000-000000000000", "No group"),
                        ("not-a-guid", "is not an Entra group object id")):
        for confirm in ("", "yes"):
            refused = admin.post("/admin/switch",
                                 data={**form, "group": group, "confirm": confirm},
                                 headers={"Origin": fgw.url})
            assert refused.status_code == 400, (group, refused.text[:300])
            assert said in refused.text and "Nothing was changed." in refused.text
            assert "Traceback" not in refused.text
    assert fgw.loop.run(fgw.app.state.gateway.services.failover.current()).version == 0
    done = admin.post("/admin/switch", data={**form, "group": DRILL_GROUP, "confirm": "yes"},
                      headers={"Origin": fgw.url})
    assert done.status_code == 303
    assert fgw.loop.run(fgw.app.state.gateway.services.failover.current()).mode == "drill"
