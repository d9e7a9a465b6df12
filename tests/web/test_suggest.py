"""Address suggestions over HTTPS (``/mail/people``) with a signed-in member, against the dev
stack: from Graph people search when People.Read is granted, and from the member's own Sent
Items when Graph refuses it; JSON only, nothing for a term too short, sign-in required."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Gateway, module_gateway, sign_in
from tests.web.mailhelp import deliver, message, unique

gw = module_gateway("suggestgw")


def ask(client: httpx.Client, q: str) -> dict[str, Any]:
    r = client.get("/mail/people", params={"q": q}, headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert "no-store" in r.headers["cache-control"]
    body: dict[str, Any] = r.json()
    return body


def test_graph_people_search_for_a_member_with_people_read(gw: Gateway) -> None:
    member = sign_in(gw, "member")
    before = gw.stack.graph.people.requests
    body = ask(member, "priya")
    assert body["source"] == "directory"
    assert body["people"] == [{"name": "Priya Shah (ICT)", "address": "priya.shah@council.example",
                               "label": "Priya Shah (ICT) <priya.shah@council.example>"}]
    assert gw.stack.graph.people.requests == before + 1
    assert ask(member, " ") == {"source": "", "people": []}


def test_recent_correspondents_when_people_read_is_refused(gw: Gateway) -> None:
    # The stand-in answers member2 (Cllr Jo Evans) as if People.Read were not consented.
    name = unique("Pat Green")
    deliver(gw, "member2", message(unique("Library hours"), sender="jo.evans@council.example",
                                   to=f'"{name}" <pat.green@library.example>'),
            folder="Sent Items")
    member2 = sign_in(gw, "member2")
    body = ask(member2, "pat")
    assert body["source"] == "recent"
    assert {"name": name, "address": "pat.green@library.example",
            "label": f"{name} <pat.green@library.example>"} in body["people"]
    assert ask(member2, "library.example")["people"][0]["address"] == \
        "pat.green@library.example"
    assert ask(member2, "zzzz-nobody")["people"] == []


def test_someone_just_written_to_is_suggested_at_once(gw: Gateway) -> None:
    """Cllr Jo Evans (no People.Read) asks for suggestions, so her recent correspondents are
    kept for a minute; she then writes to someone new through the gateway, and the very next
    suggestion offers them (the kept list is forgotten when the gateway sends)."""
    from tests.web.test_mail import compose_form
    member2 = sign_in(gw, "member2")
    ask(member2, "pat")                       # reads Sent Items and keeps what it found
    address = f"{unique('sam').split()[-1].lower()}.rivers@parish.example"
    assert ask(member2, address)["people"] == []
    action, fields = compose_form(member2, "/mail/compose")
    fields.update(to=f'"Sam Rivers" <{address}>', subject=unique("Parish meeting"),
                  body="See you there.", do="send")
    r = member2.post(action, data=fields, headers={"Origin": gw.url})
    assert r.status_code == 303, r.text
    assert ask(member2, address)["people"] == [
        {"name": "Sam Rivers", "address": address, "label": f"Sam Rivers <{address}>"}]


def test_suggestions_need_a_signed_in_member(gw: Gateway) -> None:
    anonymous = gw.client()
    r = anonymous.get("/mail/people", params={"q": "jo"},
                      headers={"Accept": "application/json"})
    assert r.status_code in (401, 303) and "jo.evans" not in r.text
