"""The Graph stand-in's groups, as strict as Graph: a Graph token with a group-reading
permission, GUID ids, 404 for unknown groups, and /$count only as an advanced query."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from gateway.auth.apponly import AppTokens
from gateway.devstack.stack import DevStack
from gateway.devstack.tokens import ACCESS_ISSUER, GRAPH_AUDIENCE
from gateway.devstack.users import DRILL_GROUP, EMPTY_GROUP, PILOT_GROUP, USERS
from tests.conftest import LoopThread, ca_context

COUNT = "/v1.0/groups/{}/transitiveMembers/microsoft.graph.user/$count"


@pytest.fixture
def graph(stack: DevStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.graph.base_url, verify=ca_context(stack),
                      trust_env=False, timeout=10) as client:
        yield client


def _token(stack: DevStack, **claims: object) -> dict[str, str]:
    now = int(time.time())
    body = {"aud": GRAPH_AUDIENCE, "iss": ACCESS_ISSUER, "iat": now, "exp": now + 600,
            "oid": "0e9f8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f", **claims}
    return {"Authorization": f"Bearer {stack.signer.sign(body)}"}


def test_app_only_token_from_the_entra_stand_in_reads_a_group_and_counts(
    stack: DevStack, graph: httpx.Client, loop_thread: LoopThread,
) -> None:
    """Through the real client-credentials flow (msal): the group, then its user count."""
    settings = stack.gateway_settings(8443)
    token = loop_thread.run(AppTokens(settings).token(GRAPH_AUDIENCE))
    auth = {"Authorization": f"Bearer {token}"}
    g = graph.get(f"/v1.0/groups/{DRILL_GROUP}", params={"$select": "id,displayName"},
                  headers=auth)
    assert g.status_code == 200
    assert g.json()["displayName"] == "Mail gateway drill: members"
    assert "securityEnabled" not in g.json()        # $select honoured
    def members(gid: str) -> str:
        return str(sum(1 for u in USERS if gid in u.groups))
    assert members(DRILL_GROUP) == "1" and members(EMPTY_GROUP) == "0"
    for gid in (DRILL_GROUP, PILOT_GROUP, EMPTY_GROUP):
        n = members(gid)
        c = graph.get(COUNT.format(gid), headers={**auth, "ConsistencyLevel": "eventual"})
        assert (c.status_code, c.text, c.headers["content-type"].split(";")[0]) == (
            200, n, "text/plain")


def test_count_without_consistency_level_is_refused(stack: DevStack, graph: httpx.Client) -> None:
    """/$count is an advanced query: without ConsistencyLevel: eventual, 400."""
    r = graph.get(COUNT.format(DRILL_GROUP), headers=_token(stack, roles=["GroupMember.Read.All"]))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "Request_UnsupportedQuery"


@pytest.mark.parametrize("claims,status,code", [
    ({"roles": ["Calendars.Read"]}, 403, "Authorization_RequestDenied"),
    ({"scp": "Calendars.ReadWrite User.Read"}, 403, "Authorization_RequestDenied"),
    ({"roles": ["GroupMember.Read.All"], "aud": "https://outlook.office.com"}, 401,
     "InvalidAuthenticationToken"),
])
def test_tokens_without_a_group_permission_are_refused(
    stack: DevStack, graph: httpx.Client, claims: dict[str, object], status: int, code: str,
) -> None:
    """A token without a group-reading permission gets 403; one for another resource 401."""
    r = graph.get(f"/v1.0/groups/{DRILL_GROUP}", headers=_token(stack, **claims))
    assert r.status_code == status and r.json()["error"]["code"] == code


@pytest.mark.parametrize("gid,status,code", [
    ("not-a-guid", 400, "Request_BadRequest"),
    ("0f0f0f0f-1111-4222-8333-444455556666", 404, "Request_ResourceNotFound"),
])
def test_bad_and_unknown_group_ids(stack: DevStack, graph: httpx.Client, gid: str, status: int,
                                   code: str) -> None:
    """An id that is not a GUID is a 400; an unknown GUID a 404, in Graph's error shapes."""
    r = graph.get(f"/v1.0/groups/{gid}", headers=_token(stack, roles=["GroupMember.Read.All"]))
    assert r.status_code == status and r.json()["error"]["code"] == code
