"""Address suggestions for the member writing a message: Microsoft Graph people search
(``GET /me/people?$search=...``, delegated ``People.Read``; learn.microsoft.com/graph/api/
user-list-people and learn.microsoft.com/graph/people-insights-overview), the people most
relevant to them, best first, with the addresses Graph scores for each
(``scoredEmailAddresses``, resource learn.microsoft.com/graph/api/resources/person).

Only names and addresses are asked for (``$select``) and nothing of either is logged.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import UpstreamError
from gateway.graph.client import GraphHttp, TokenSource, call

MAX_TERM = 100


@dataclass(frozen=True)
class Suggestion:
    name: str
    address: str

    @property
    def label(self) -> str:
        return f"{self.name} <{self.address}>" if self.name and self.name != self.address \
            else self.address


def clean_term(term: str) -> str:
    """The search term as Graph's ``$search`` takes it: quotes and backslashes would end or
    escape the quoted string, control characters mean nothing in a name."""
    kept = "".join(c for c in term if c.isprintable() and c not in '"\\')
    return " ".join(kept.split())[:MAX_TERM]


async def search(g: GraphHttp, token: TokenSource, term: str, top: int = 8
                 ) -> list[Suggestion]:
    text = clean_term(term)
    if not text:
        return []
    body = await call(g, token, "GET", "me/people", params={
        "$search": f'"{text}"', "$top": str(top),
        "$select": "displayName,scoredEmailAddresses"})
    value = body.get("value")
    if not isinstance(value, list):
        raise UpstreamError("Microsoft Graph sent a people list the gateway cannot read.")
    out: list[Suggestion] = []
    seen: set[str] = set()
    for person in value:
        if not isinstance(person, dict):
            continue
        name = person.get("displayName")
        for scored in person.get("scoredEmailAddresses") or []:
            address = scored.get("address") if isinstance(scored, dict) else None
            if isinstance(address, str) and "@" in address and address.lower() not in seen:
                seen.add(address.lower())
                out.append(Suggestion(name if isinstance(name, str) else "", address))
                break    # the best-scored address of each person
    return out[:top]
