"""The directory part of the Microsoft Graph stand-in: groups, as the CLI checks a drill group.

Serves ``GET /v1.0/groups/{id}`` (``$select`` honoured for ``id`` and ``displayName``) and
``GET /v1.0/groups/{id}/transitiveMembers/microsoft.graph.user/$count`` for the dev stack's
groups (``gateway.devstack.users.GROUPS``; members are the sample users carrying the group),
as strictly as Graph does:

- a token for ``https://graph.microsoft.com`` is required (401 ``InvalidAuthenticationToken``);
- it must carry ``GroupMember.Read.All``, ``Group.Read.All`` or ``Directory.Read.All`` (app
  roles in ``roles``, or delegated in ``scp``), else 403 ``Authorization_RequestDenied``
  (permission tables of learn.microsoft.com/graph/api/group-get and
  group-list-transitivemembers);
- an id that is not a GUID is 400 ``Request_BadRequest`` "Invalid object identifier"; an
  unknown one 404 ``Request_ResourceNotFound``;
- ``/$count`` without ``ConsistencyLevel: eventual`` is 400 ``Request_UnsupportedQuery`` (an
  advanced query: learn.microsoft.com/graph/aad-advanced-queries; the error text as seen in
  azurekid/ScEntra issue 17 and microsoft-graph-docs-contrib issue 3370), and the count is
  answered as ``text/plain``.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway.devstack.tokens import GRAPH_AUDIENCE, TokenSigner
from gateway.devstack.users import GROUPS, members_of

READ_PERMISSIONS = {"groupmember.read.all", "group.read.all", "directory.read.all",
                    "groupmember.readwrite.all", "group.readwrite.all"}
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def _error(status: int, code: str, message: str) -> JSONResponse:
    rid = str(uuid.uuid4())
    return JSONResponse({"error": {"code": code, "message": message, "innerError": {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "request-id": rid,
        "client-request-id": rid}}}, status_code=status, headers={"request-id": rid})


class GraphDirectory:
    def __init__(self, signer: TokenSigner) -> None:
        self.signer = signer
        self.requests = 0

    def routes(self) -> list[Route]:
        return [
            Route("/v1.0/groups/{group_id}", self._group, methods=["GET"]),
            Route("/v1.0/groups/{group_id}/transitiveMembers/microsoft.graph.user/$count",
                  self._count, methods=["GET"]),
        ]

    def _check(self, request: Request) -> tuple[str, Response | None]:
        self.requests += 1
        auth = request.headers.get("authorization", "")
        try:
            claims = self.signer.verify(auth.removeprefix("Bearer "), GRAPH_AUDIENCE)
        except jwt.InvalidTokenError:
            return "", _error(401, "InvalidAuthenticationToken",
                              "Access token has expired or is not yet valid.")
        granted = {r.lower() for r in claims.get("roles", [])} | {
            s.lower() for s in str(claims.get("scp", "")).split()}
        if not granted & READ_PERMISSIONS:
            return "", _error(403, "Authorization_RequestDenied",
                              "Insufficient privileges to complete the operation.")
        gid = request.path_params["group_id"]
        if not _GUID.match(gid):
            return "", _error(400, "Request_BadRequest", f"Invalid object identifier '{gid[:80]}'.")
        known = {g.lower(): g for g in GROUPS}
        if gid.lower() not in known:
            return "", _error(404, "Request_ResourceNotFound",
                              f"Resource '{gid}' does not exist or one of its queried "
                              "reference-property objects are not present.")
        return known[gid.lower()], None

    async def _group(self, request: Request) -> Response:
        gid, refused = self._check(request)
        if refused is not None:
            return refused
        full = {"id": gid, "displayName": GROUPS[gid], "securityEnabled": True,
                "mailEnabled": False, "groupTypes": [], "description": None}
        select = [s.strip() for s in request.query_params.get("$select", "").split(",")
                  if s.strip()]
        body = {k: v for k, v in full.items() if not select or k in select}
        context = "https://graph.microsoft.com/v1.0/$metadata#groups" + (
            f"({','.join(select)})/$entity" if select else "/$entity")
        return JSONResponse({"@odata.context": context, **body})

    async def _count(self, request: Request) -> Response:
        gid, refused = self._check(request)
        if refused is not None:
            return refused
        if request.headers.get("consistencylevel", "").lower() != "eventual":
            return _error(400, "Request_UnsupportedQuery",
                          "Raw count (/$count) is not supported because the "
                          "'ConsistencyLevel:eventual' header is missing. Refer to "
                          "https://aka.ms/graph-docs/advanced-queries for more information")
        return PlainTextResponse(str(len(members_of(gid))))
