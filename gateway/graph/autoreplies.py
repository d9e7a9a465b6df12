"""The member's automatic replies (out of office) through Microsoft Graph:
``GET /me/mailboxSettings/automaticRepliesSetting`` and ``PATCH /me/mailboxSettings``
(delegated ``MailboxSettings.ReadWrite``; learn.microsoft.com/graph/api/user-update-mailboxsettings
and learn.microsoft.com/graph/api/resources/automaticrepliessetting).

Members type plain text; it goes to Graph escaped as HTML (``sanitize.text_to_html``), and the
HTML Graph holds (perhaps written in Outlook) comes back as text (``sanitize.html_to_text``),
so nothing a member or Outlook wrote is ever shown as markup. Dates travel as
dateTimeTimeZone: the member's wall time with the gateway's zone going out, whatever zone
Exchange answers in coming back (it answers UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.calendar.zones import UnknownZone, format_wall, parse_wall, zone
from gateway.errors import UpstreamError
from gateway.graph.client import GraphHttp, TokenSource, call
from gateway.mail import sanitize

STATUSES = ("disabled", "alwaysEnabled", "scheduled")
AUDIENCES = ("none", "contactsOnly", "all")
MAX_MESSAGE = 8000


@dataclass
class AutoReplies:
    status: str = "disabled"
    audience: str = "all"
    internal: str = ""            # plain text
    external: str = ""
    start: datetime | None = None  # aware, in the gateway's zone
    end: datetime | None = None


def _moment(raw: Any, tz: ZoneInfo) -> datetime | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("dateTime"), str):
        return None
    try:
        wall = parse_wall(raw["dateTime"])
        return wall.replace(tzinfo=zone(str(raw.get("timeZone") or "UTC"))).astimezone(tz)
    except (ValueError, UnknownZone):
        return None


def parse(body: dict[str, Any], tz: ZoneInfo) -> AutoReplies:
    status = body.get("status")
    audience = body.get("externalAudience")
    if status not in STATUSES:
        raise UpstreamError("Exchange sent automatic replies the gateway cannot read.")

    def text(key: str) -> str:
        value = body.get(key)
        return sanitize.html_to_text(value) if isinstance(value, str) else ""
    return AutoReplies(status=str(status),
                       audience=str(audience) if audience in AUDIENCES else "all",
                       internal=text("internalReplyMessage"),
                       external=text("externalReplyMessage"),
                       start=_moment(body.get("scheduledStartDateTime"), tz),
                       end=_moment(body.get("scheduledEndDateTime"), tz))


def to_graph(r: AutoReplies, tz_name: str) -> dict[str, Any]:
    """The PATCH body. Dates go only with a schedule (Exchange keeps the old ones otherwise)."""
    setting: dict[str, Any] = {
        "status": r.status, "externalAudience": r.audience,
        "internalReplyMessage": sanitize.text_to_html(r.internal[:MAX_MESSAGE]),
        "externalReplyMessage": sanitize.text_to_html(r.external[:MAX_MESSAGE])}
    if r.status == "scheduled":
        if r.start is None or r.end is None:
            raise ValueError("a schedule needs a start and an end")
        tz = zone(tz_name)
        for key, moment in (("scheduledStartDateTime", r.start), ("scheduledEndDateTime", r.end)):
            wall = moment.astimezone(tz).replace(tzinfo=None)
            setting[key] = {"dateTime": format_wall(wall), "timeZone": tz_name}
    return {"automaticRepliesSetting": setting}


async def get_replies(g: GraphHttp, token: TokenSource) -> AutoReplies:
    body = await call(g, token, "GET", "me/mailboxSettings/automaticRepliesSetting")
    return parse(body, zone(g.timezone))


async def set_replies(g: GraphHttp, token: TokenSource, r: AutoReplies) -> AutoReplies:
    answer = await call(g, token, "PATCH", "me/mailboxSettings", json=to_graph(r, g.timezone))
    body = answer.get("automaticRepliesSetting")
    if not isinstance(body, dict):
        raise UpstreamError("Exchange sent automatic replies the gateway cannot read.")
    return parse(body, zone(g.timezone))
