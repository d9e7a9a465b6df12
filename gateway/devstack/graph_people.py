"""The people part of the Microsoft Graph stand-in: ``GET /v1.0/me/people``, the people most
relevant to the signed-in member (colleagues among the sample users, and a few outside
correspondents), as strictly as Graph's People API:

- the person resource of learn.microsoft.com/graph/api/resources/person (``displayName``,
  ``givenName``, ``surname``, ``jobTitle``, ``department``, ``userPrincipalName``,
  ``scoredEmailAddresses`` of ``{address, relevanceScore, selectionLikelihood}``,
  ``personType`` ``{class, subclass}``), most relevant first;
- ``$search`` (learn.microsoft.com/graph/people-insights-overview, "Search people"): a quoted
  or bare term matched against names and addresses, each word of it the start of a word;
  ``$top`` (default 10) a positive whole number, ``$select`` names of the person's
  properties only: an unknown one is 400 ``RequestBroker--ParseUri`` "Could not find a
  property named '...' on type 'Microsoft.OutlookServices.Person'." (as the People API
  answers; reported in microsoftgraph/msgraph-sdk-dotnet issues);
- delegated ``People.Read`` or ``People.Read.All`` (learn.microsoft.com/graph/api/
  user-list-people, permissions), else 403 ``ErrorAccessDenied``. ``refused`` holds the
  members for whom the stand-in answers as if People.Read had not been consented (the
  sample user "member2" by default), so the gateway's fallback can be seen and tested.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.devstack.graph_mailbox import error, member_claims
from gateway.devstack.tokens import TokenSigner
from gateway.devstack.users import USERS, by_oid, user

SCOPES = {"people.read", "people.read.all"}
PROPERTIES = ("id", "displayName", "givenName", "surname", "birthday", "personNotes",
              "isFavorite", "jobTitle", "companyName", "yomiCompany", "department",
              "officeLocation", "profession", "userPrincipalName", "imAddress",
              "scoredEmailAddresses", "phones", "postalAddresses", "websites", "personType")
CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#users('{oid}')/people"
# Outside people the sample members write to (addresses on reserved example domains).
OUTSIDE = (
    ("Helen Clarke", "Helen", "Clarke", "helen.clarke@partner.example", "Planning adviser"),
    ("Jordan Ellis", "Jordan", "Ellis", "j.ellis@parish.example", "Parish clerk"),
    ("Democratic Services", "", "", "democratic.services@council.example", ""),
)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def _person(pid: str, name: str, given: str, surname: str, address: str, job: str,
            score: float, organisation: bool) -> dict[str, Any]:
    return {"id": pid, "displayName": name, "givenName": given or None,
            "surname": surname or None, "birthday": "", "personNotes": "", "isFavorite": False,
            "jobTitle": job or None, "companyName": None, "yomiCompany": "",
            "department": None, "officeLocation": None, "profession": "",
            "userPrincipalName": address if organisation else "", "imAddress": None,
            "scoredEmailAddresses": [{"address": address, "relevanceScore": score,
                                      "selectionLikelihood": "notSpecified"}],
            "phones": [], "postalAddresses": [], "websites": [],
            "personType": {"class": "Person", "subclass": "OrganizationUser" if organisation
                           else "PersonalContact"}}


def people_of(oid: str) -> list[dict[str, Any]]:
    """The member's relevant people, most relevant first."""
    rows = []
    score = 30.0
    for u in USERS:
        if u.oid == oid or u.key == "canary":
            continue
        given, _, surname = u.name.removeprefix("Cllr ").partition(" ")
        rows.append(_person(u.oid, u.name, given, surname, u.email, "Councillor"
                            if u.name.startswith("Cllr") else "", score, True))
        score -= 2
    for n, (name, given, surname, address, job) in enumerate(OUTSIDE):
        rows.append(_person(f"0a0b0c0d-0000-4000-8000-{n:012x}", name, given, surname,
                            address, job, score, address.endswith("@council.example")))
        score -= 2
    return rows


def _matches(person: dict[str, Any], term: str) -> bool:
    words = [w.lower() for w in _WORD.findall(term)]
    if not words:
        return True
    haystack = " ".join([str(person.get("displayName") or "")] + [
        e["address"] for e in person["scoredEmailAddresses"]])
    have = [w.lower() for w in _WORD.findall(haystack)]
    return all(any(h.startswith(w) for h in have) for w in words)


class GraphPeople:
    def __init__(self, signer: TokenSigner) -> None:
        self.signer = signer
        self.requests = 0
        self.refused: set[str] = set()
        self.reset()

    def routes(self) -> list[Route]:
        return [Route("/v1.0/me/people", self._people, methods=["GET"])]

    def reset(self) -> None:
        self.requests = 0
        self.refused = {user("member2").oid}

    async def _people(self, request: Request) -> Response:
        self.requests += 1
        claims = member_claims(self.signer, request, SCOPES)
        if isinstance(claims, Response):
            return claims
        oid = str(claims["oid"])
        if oid in self.refused or by_oid(oid) is None:
            return error(403, "ErrorAccessDenied",
                         "Access is denied. Check credentials and try again.")
        q = request.query_params
        raw_top = q.get("$top", "10")
        if not raw_top.isdigit() or int(raw_top) < 1:
            return error(400, "RequestBroker--ParseUri",
                         f"Invalid value '{raw_top[:20]}' for $top query option.")
        select = [s.strip() for s in q.get("$select", "").split(",") if s.strip()]
        for name in select:
            if name not in PROPERTIES:
                return error(400, "RequestBroker--ParseUri",
                             f"Could not find a property named '{name[:60]}' on type "
                             "'Microsoft.OutlookServices.Person'.")
        term = q.get("$search", "").strip()
        if len(term) >= 2 and term[0] == term[-1] == '"':
            term = term[1:-1]
        rows = [p for p in people_of(oid) if _matches(p, term)][:int(raw_top)]
        if select:
            rows = [{k: v for k, v in p.items() if k in select or k == "id"} for p in rows]
        return JSONResponse({"@odata.context": CONTEXT.format(oid=oid), "value": rows})
