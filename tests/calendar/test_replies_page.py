"""The automatic replies page over HTTPS with a signed-in member, against the dev stack's
Entra and Graph stand-ins: the form, saving through Graph, errors that keep the text, CSRF."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from gateway.devstack.graph import GraphStandIn
from gateway.devstack.users import user
from tests.conftest import csrf_of, module_gateway, signed_in

gw = module_gateway("replygw")
member = signed_in("member")


@pytest.fixture(autouse=True)
def fresh(stack: Any) -> Iterator[GraphStandIn]:
    stack.graph.reset()
    yield stack.graph
    stack.graph.reset()


def save(member: httpx.Client, **fields: str) -> httpx.Response:
    data = {"csrf_token": csrf_of(member, "/settings/replies"), "audience": "all",
            "internal": "", "external": "", **fields}
    return member.post("/settings/replies", data=data)


def test_mail_pages_link_to_the_settings_page(member: httpx.Client) -> None:
    assert 'href="/settings/replies"' in member.get("/mail").text
    page = member.get("/settings/replies")
    assert page.status_code == 200
    assert 'value="disabled" checked' in page.text and 'name="csrf_token"' in page.text


def test_turning_on_between_dates_across_the_march_clock_change(member: httpx.Client,
                                                                fresh: GraphStandIn) -> None:
    r = save(member, status="scheduled", start_date="2027-03-27", start_time="09:00",
             end_date="2027-03-29", end_time="09:00", audience="contactsOnly",
             internal="At the LGA conference.\nBack Monday.", external="Out of office.")
    assert r.status_code == 303 and r.headers["location"] == "/settings/replies?done=1"
    stored = fresh.mailbox.replies(user("member").oid)
    assert stored["status"] == "scheduled" and stored["externalAudience"] == "contactsOnly"
    assert stored["start"] == datetime(2027, 3, 27, 9, tzinfo=UTC)     # GMT
    assert stored["end"] == datetime(2027, 3, 29, 8, tzinfo=UTC)       # BST
    page = member.get(r.headers["location"]).text
    assert "were saved" in page and 'value="scheduled" checked' in page
    assert 'value="2027-03-27"' in page and 'value="2027-03-29"' in page
    assert page.count('value="09:00"') == 2
    assert "At the LGA conference.\nBack Monday.</textarea>" in page


def test_october_clock_change_and_turning_off(member: httpx.Client, fresh: GraphStandIn) -> None:
    r = save(member, status="scheduled", start_date="2027-10-30", start_time="17:30",
             end_date="2027-11-02", end_time="")
    assert r.status_code == 303
    stored = fresh.mailbox.replies(user("member").oid)
    assert stored["start"] == datetime(2027, 10, 30, 16, 30, tzinfo=UTC)   # BST
    assert stored["end"] == datetime(2027, 11, 2, 0, 0, tzinfo=UTC)        # GMT
    assert save(member, status="disabled").status_code == 303
    assert fresh.mailbox.replies(user("member").oid)["status"] == "disabled"


@pytest.mark.parametrize(("fields", "says"), [
    ({"start_date": "2027-03-29", "end_date": "2027-03-28"}, "The end must be after"),
    ({"start_date": "", "end_date": "2027-03-28"}, "Give the first day"),
    ({"start_date": "29/03/2027", "end_date": "2027-03-30"}, "Give the first day"),
])
def test_bad_dates_show_the_form_again_with_the_text_kept(
    member: httpx.Client, fresh: GraphStandIn, fields: dict[str, str], says: str,
) -> None:
    r = save(member, status="scheduled", internal="Typed with care", **fields)
    assert r.status_code == 400 and says in r.text
    assert "Typed with care</textarea>" in r.text
    assert fresh.mailbox.replies(user("member").oid)["status"] == "disabled"


def test_unknown_choice_is_a_plain_400(member: httpx.Client) -> None:
    r = save(member, status="sometimes")
    assert r.status_code == 400 and "Choose whether" in r.text


def test_graph_away_keeps_the_text(member: httpx.Client, fresh: GraphStandIn) -> None:
    token = csrf_of(member, "/settings/replies")
    fresh.mailbox.unavailable()
    r = member.post("/settings/replies", data={
        "csrf_token": token, "status": "alwaysEnabled", "audience": "all",
        "internal": "Please keep me", "external": ""})
    assert r.status_code == 503 and "Please keep me</textarea>" in r.text


def test_saving_needs_the_csrf_token(member: httpx.Client, fresh: GraphStandIn) -> None:
    r = member.post("/settings/replies", data={"status": "alwaysEnabled"})
    assert r.status_code == 403
    assert fresh.mailbox.replies(user("member").oid)["status"] == "disabled"
