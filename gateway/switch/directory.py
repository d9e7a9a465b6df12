"""Looking a drill group up in the directory before a drill starts: its name and how many
people are in it, from Microsoft Graph with the gateway's own app-only token.

A drill admits ICT admins, the pilot groups and one named Entra group (by object id, as the
``groups`` claim carries it). A mistyped id, a group from another tenant or an empty group
would make a drill that admits nobody and proves nothing, so the CLI and the API look it up:
``GET /groups/{id}?$select=id,displayName`` and
``GET /groups/{id}/transitiveMembers/microsoft.graph.user/$count`` (``ConsistencyLevel:
eventual``, an advanced query). That needs the application permission ``GroupMember.Read.All``
(deploy/entra/app-registration.md).

Errors: ``GroupNotFound`` (not a GUID, not in the directory) and ``GroupEmpty`` are the
group's fault; ``DirectoryUnavailable`` means the directory could not be asked (not
configured, no permission, unreachable) and says how to fix that.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from gateway.config import Settings
from gateway.errors import BadRequest, GatewayError

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class GroupInfo:
    id: str
    name: str
    members: int

    def text(self) -> str:
        people = "1 person" if self.members == 1 else f"{self.members} people"
        return f"{self.name} ({self.id}), {people}"


class GroupNotFound(BadRequest):
    pass


class GroupEmpty(BadRequest):
    def __init__(self, message: str, info: GroupInfo) -> None:
        super().__init__(message)
        self.info = info


class DirectoryUnavailable(GatewayError):
    status = 503
    title = "The directory could not be asked"


def _graph_error(r: httpx.Response) -> str:
    try:
        err = r.json().get("error", {})
        return f"{err.get('code', '')}: {str(err.get('message', ''))[:120]}"
    except ValueError:
        return f"HTTP {r.status_code}"


async def lookup_group(settings: Settings, group_id: str, *, tokens: Any = None,
                       transport: httpx.AsyncBaseTransport | None = None) -> GroupInfo:
    """The group's name and member count, or the error that says why not."""
    gid = group_id.strip()
    if not _GUID.match(gid):
        raise GroupNotFound(f"{group_id!r} is not an Entra group object id (a GUID such as "
                            "7d2e1b3f-3c4d-4e5f-9a01-b2c3d4e5f6a7; Entra admin centre, Groups, "
                            "Object ID).")
    entra = settings.entra
    if not (entra.authority and entra.client_id and entra.client_secret):
        raise DirectoryUnavailable("entra.authority, entra.client_id and entra.client_secret "
                                   "are needed to ask the directory.")
    from gateway.auth.apponly import AppTokens
    from gateway.health.monitor import ProbeFailed
    from gateway.health.probes import resource_of

    app_tokens = tokens or AppTokens(settings)
    graph = resource_of(settings.entra.graph_scope)
    try:
        token = await app_tokens.token(graph)
    except ProbeFailed as exc:
        raise DirectoryUnavailable(str(exc)) from None
    ca = settings.graph.ca_file or settings.entra.ca_file
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else True
    base = settings.graph.base_url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    async with httpx.AsyncClient(verify=verify, trust_env=False, transport=transport,
                                 timeout=settings.graph.timeout_seconds) as http:
        try:
            g = await http.get(f"{base}/groups/{quote(gid)}",
                               params={"$select": "id,displayName"}, headers=headers)
            if g.status_code == 404:
                raise GroupNotFound(f"No group {gid} in the directory: check the object id "
                                    "(Entra admin centre, Groups).")
            if g.status_code in (401, 403):
                raise DirectoryUnavailable(
                    f"Graph refused to read groups ({_graph_error(g)}): grant the app "
                    "registration the application permission GroupMember.Read.All, with "
                    "admin consent.")
            if g.status_code != 200:
                raise DirectoryUnavailable(f"Graph answered {_graph_error(g)}.")
            c = await http.get(f"{base}/groups/{quote(gid)}/transitiveMembers/"
                               "microsoft.graph.user/$count",
                               headers={**headers, "ConsistencyLevel": "eventual",
                                        "Accept": "text/plain"})
            if c.status_code != 200:
                raise DirectoryUnavailable(f"Graph would not count the members: "
                                           f"{_graph_error(c)}.")
            members = int(c.text.strip())
            name = str(g.json().get("displayName") or "(no name)")
        except httpx.HTTPError as exc:
            raise DirectoryUnavailable(f"Graph cannot be reached ({type(exc).__name__}).") \
                from None
        except ValueError:
            raise DirectoryUnavailable("Graph answered something that is not a group or a "
                                       "count.") from None
    info = GroupInfo(gid, name, members)
    if members == 0:
        raise GroupEmpty(f"The group {info.name} ({gid}) has nobody in it: a drill for it "
                         "would admit no member.", info)
    return info
