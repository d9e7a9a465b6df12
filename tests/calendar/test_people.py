"""People search through Graph, adapter against the stand-in over TLS: what it finds, the
query it sends (quoted $search, $top, $select), and the refusals Graph gives."""

from __future__ import annotations

import ssl

import httpx
import pytest

from gateway.errors import Forbidden
from gateway.graph import people
from tests.calendar.rig import GraphRig

SCP = "Calendars.ReadWrite People.Read User.Read"


def test_finds_colleagues_by_the_start_of_a_name_or_address(rig: GraphRig) -> None:
    g, tok = rig.http(), rig.token(scp=SCP)
    found = rig.run(people.search(g, tok, "jo"))
    # Jo Evans, and Jordan Ellis: "jo" starts both names. The colleague is more relevant.
    assert [s.address for s in found] == ["jo.evans@council.example", "j.ellis@parish.example"]
    assert found[0].label == "Cllr Jo Evans <jo.evans@council.example>"
    assert [s.address for s in rig.run(people.search(g, tok, "priya sh"))] == [
        "priya.shah@council.example"]
    assert [s.address for s in rig.run(people.search(g, tok, "partner"))] == [
        "helen.clarke@partner.example"]
    assert rig.run(people.search(g, tok, "nobody-by-this-name")) == []
    # Never themselves, best first, and $top honoured.
    many = rig.run(people.search(g, tok, "c", top=3))
    assert len(many) == 3 and "alex.morgan@council.example" not in {s.address for s in many}


def test_quotes_and_backslashes_cannot_break_out_of_the_search(rig: GraphRig) -> None:
    assert people.clean_term('jo" OR "x\\') == "jo OR x"
    found = rig.run(people.search(rig.http(), rig.token(scp=SCP), '"jo evans"'))
    assert [s.address for s in found] == ["jo.evans@council.example"]


def _get(rig: GraphRig, scp: str, who: str = "member", **params: str) -> httpx.Response:
    tok = rig.run(rig.token(who, scp=scp)(False))
    with httpx.Client(verify=ssl.create_default_context(cafile=rig.ca_file)) as c:
        return c.get(rig.stand_in.base_url + "/v1.0/me/people", params=params,
                     headers={"Authorization": "Bearer " + tok})


def test_stand_in_answers_graphs_person_shape(rig: GraphRig) -> None:
    r = _get(rig, SCP, **{"$search": '"jo"'})
    assert r.status_code == 200
    person = r.json()["value"][0]
    assert person["personType"] == {"class": "Person", "subclass": "OrganizationUser"}
    assert person["scoredEmailAddresses"][0]["address"] == "jo.evans@council.example"
    assert isinstance(person["scoredEmailAddresses"][0]["relevanceScore"], float)
    narrow = _get(rig, SCP, **{"$search": "jo", "$select": "displayName"}).json()["value"][0]
    assert set(narrow) == {"id", "displayName"}


@pytest.mark.parametrize("params", [{"$select": "displayName,email"}, {"$top": "0"},
                                    {"$top": "ten"}])
def test_stand_in_refuses_what_graph_refuses(rig: GraphRig, params: dict[str, str]) -> None:
    r = _get(rig, SCP, **params)
    assert r.status_code == 400 and r.json()["error"]["code"] == "RequestBroker--ParseUri"


def test_without_people_read_graph_says_access_denied(rig: GraphRig) -> None:
    r = _get(rig, "Calendars.ReadWrite User.Read")
    assert r.status_code == 403 and r.json()["error"]["code"] == "ErrorAccessDenied"
    with pytest.raises(Forbidden):
        rig.run(people.search(rig.http(), rig.token("member2", scp=SCP), "alex"))
