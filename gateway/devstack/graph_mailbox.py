"""The mailbox-settings part of the Microsoft Graph stand-in: each sample member's automatic
replies (out of office), as ``GET /v1.0/me/mailboxSettings`` (``$select`` honoured),
``GET /v1.0/me/mailboxSettings/automaticRepliesSetting`` and ``PATCH /v1.0/me/mailboxSettings``
serve them, as strictly as Graph does:

- a token for https://graph.microsoft.com is required (401 ``InvalidAuthenticationToken``);
  reading needs ``MailboxSettings.Read`` or ``MailboxSettings.ReadWrite``, changing needs
  ``MailboxSettings.ReadWrite``, else 403 ``ErrorAccessDenied`` (permission tables of
  learn.microsoft.com/graph/api/user-get-mailboxsettings and user-update-mailboxsettings);
- ``automaticRepliesSetting`` is the resource of
  learn.microsoft.com/graph/api/resources/automaticrepliessetting: ``status`` one of
  disabled|alwaysEnabled|scheduled, ``externalAudience`` one of none|contactsOnly|all,
  ``internalReplyMessage``/``externalReplyMessage`` (HTML), and ``scheduledStartDateTime``/
  ``scheduledEndDateTime`` as dateTimeTimeZone (learn.microsoft.com/graph/api/resources/
  datetimetimezone: a wall ``dateTime`` without offset and a ``timeZone``, Windows or IANA
  name). Exchange keeps the schedule even while replies are off and answers it in UTC;
- a PATCH that leaves the status ``scheduled`` needs both dates, the end after the start,
  else 400 ``ErrorInvalidScheduledOofDuration`` "The scheduled duration for sending automatic
  replies isn't valid." (Exchange's error, as reported in ecederstrand/exchangelib issue 617);
  an unknown enum value is 400 ``ErrorInvalidRequest``; an unknown zone 400
  ``TimeZoneNotSupportedException``. The answer is 200 with the properties as stored.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.calendar.zones import UnknownZone, format_wall, parse_wall, zone
from gateway.devstack.tokens import GRAPH_AUDIENCE, TokenSigner

READ = {"mailboxsettings.read", "mailboxsettings.readwrite"}
WRITE = {"mailboxsettings.readwrite"}
STATUSES = ("disabled", "alwaysEnabled", "scheduled")
AUDIENCES = ("none", "contactsOnly", "all")
CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#users('{oid}')/mailboxSettings"


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status: int, code: str, message: str) -> JSONResponse:
    rid = str(uuid.uuid4())
    return JSONResponse({"error": {"code": code, "message": message, "innerError": {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "request-id": rid,
        "client-request-id": rid}}}, status_code=status, headers={"request-id": rid})


def member_claims(signer: TokenSigner, request: Request, wanted: set[str],
                  ) -> dict[str, Any] | JSONResponse:
    """The token's claims if it is Graph's and carries one of ``wanted`` (lower case)."""
    auth = request.headers.get("authorization", "")
    try:
        claims: dict[str, Any] = signer.verify(auth.removeprefix("Bearer "), GRAPH_AUDIENCE)
    except jwt.InvalidTokenError:
        return error(401, "InvalidAuthenticationToken",
                     "Access token has expired or is not yet valid.")
    scopes = {s.lower() for s in str(claims.get("scp", "")).split()}
    if not scopes & wanted or not claims.get("oid"):
        return error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try "
                     "again.")
    return claims


def _when(value: Any, name: str) -> datetime:
    """A dateTimeTimeZone as an aware UTC moment."""
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise _Refused(400, "ErrorInvalidRequest", f"The value of '{name}' is not valid.")
    tz = str(value.get("timeZone") or "UTC")
    try:
        wall = parse_wall(value["dateTime"])
        return wall.replace(tzinfo=zone(tz)).astimezone(UTC)
    except UnknownZone:
        raise _Refused(400, "TimeZoneNotSupportedException",
                       "A valid TimeZone value must be specified. The following TimeZone "
                       f"value is not supported: '{tz[:40]}'.") from None
    except ValueError:
        raise _Refused(400, "ErrorInvalidRequest",
                       f"The value of '{name}' is not valid.") from None


def _utc(moment: datetime) -> dict[str, str]:
    return {"dateTime": format_wall(moment.astimezone(UTC).replace(tzinfo=None)),
            "timeZone": "UTC"}


class GraphMailbox:
    def __init__(self, signer: TokenSigner) -> None:
        self.signer = signer
        self.requests = 0
        self._lock = threading.Lock()
        self.settings: dict[str, dict[str, Any]] = {}
        self._unavailable = 0

    def routes(self) -> list[Route]:
        return [
            Route("/v1.0/me/mailboxSettings", self._settings, methods=["GET", "PATCH"]),
            Route("/v1.0/me/mailboxSettings/automaticRepliesSetting", self._replies,
                  methods=["GET"]),
        ]

    def reset(self) -> None:
        with self._lock:
            self.settings.clear()
            self.requests = 0
            self._unavailable = 0

    def unavailable(self, count: int = 1) -> None:
        """The next ``count`` requests get 503 (no Retry-After), as Graph does when the
        mailbox's server is away."""
        with self._lock:
            self._unavailable = count

    def _away(self) -> Response | None:
        with self._lock:
            self.requests += 1
            if self._unavailable <= 0:
                return None
            self._unavailable -= 1
        return error(503, "serviceNotAvailable", "The service is temporarily unavailable.")

    def replies(self, oid: str) -> dict[str, Any]:
        """The member's stored automaticRepliesSetting (start and end as UTC moments)."""
        with self._lock:
            if oid not in self.settings:
                # A mailbox that never had a schedule: Exchange shows one anyway, from the next
                # whole hour for a day.
                start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + \
                    timedelta(hours=1)
                self.settings[oid] = {"status": "disabled", "externalAudience": "all",
                                      "internalReplyMessage": "", "externalReplyMessage": "",
                                      "start": start, "end": start + timedelta(days=1)}
            return self.settings[oid]

    def _render(self, oid: str) -> dict[str, Any]:
        s = self.replies(oid)
        return {"status": s["status"], "externalAudience": s["externalAudience"],
                "internalReplyMessage": s["internalReplyMessage"],
                "externalReplyMessage": s["externalReplyMessage"],
                "scheduledStartDateTime": _utc(s["start"]),
                "scheduledEndDateTime": _utc(s["end"])}

    async def _replies(self, request: Request) -> Response:
        away = self._away()
        if away is not None:
            return away
        claims = member_claims(self.signer, request, READ)
        if isinstance(claims, Response):
            return claims
        oid = str(claims["oid"])
        return JSONResponse({"@odata.context": CONTEXT.format(oid=oid) +
                             "/automaticRepliesSetting", **self._render(oid)})

    async def _settings(self, request: Request) -> Response:
        away = self._away()
        if away is not None:
            return away
        write = request.method == "PATCH"
        claims = member_claims(self.signer, request, WRITE if write else READ)
        if isinstance(claims, Response):
            return claims
        oid = str(claims["oid"])
        if write:
            try:
                self._patch(oid, await request.body())
            except _Refused as r:
                return error(r.status, r.code, r.message)
        full = {"automaticRepliesSetting": self._render(oid), "timeZone": "GMT Standard Time",
                "language": {"locale": "en-GB", "displayName": "English (United Kingdom)"},
                "dateFormat": "dd/MM/yyyy", "timeFormat": "HH:mm",
                "delegateMeetingMessageDeliveryOptions": "sendToDelegateOnly"}
        select = [s.strip() for s in request.query_params.get("$select", "").split(",")
                  if s.strip()]
        body = {k: v for k, v in full.items() if not select or k in select}
        return JSONResponse({"@odata.context": CONTEXT.format(oid=oid), **body})

    def _patch(self, oid: str, raw: bytes) -> None:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise _Refused(400, "BadRequest", "Unable to read JSON request payload. Please "
                           "ensure Content-Type header is set and payload is of valid JSON "
                           "format.")
        change = body.get("automaticRepliesSetting")
        if change is None:
            return
        if not isinstance(change, dict):
            raise _Refused(400, "ErrorInvalidRequest",
                           "The value of 'automaticRepliesSetting' is not valid.")
        new = dict(self.replies(oid))
        for key, allowed in (("status", STATUSES), ("externalAudience", AUDIENCES)):
            if key in change:
                if change[key] not in allowed:
                    raise _Refused(400, "ErrorInvalidRequest",
                                   f"Requested value '{str(change[key])[:40]}' was not found.")
                new[key] = change[key]
        for key in ("internalReplyMessage", "externalReplyMessage"):
            if key in change:
                if not isinstance(change[key], str):
                    raise _Refused(400, "ErrorInvalidRequest",
                                   f"The value of '{key}' is not valid.")
                new[key] = change[key]
        for key, slot in (("scheduledStartDateTime", "start"), ("scheduledEndDateTime", "end")):
            if key in change:
                new[slot] = _when(change[key], key)
        if new["status"] == "scheduled" and (
                "scheduledStartDateTime" not in change or "scheduledEndDateTime" not in change
                or new["end"] <= new["start"]):
            raise _Refused(400, "ErrorInvalidScheduledOofDuration",
                           "The scheduled duration for sending automatic replies isn't valid.")
        with self._lock:
            self.settings[oid] = new
