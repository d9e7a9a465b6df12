"""Answering a meeting request by mail (iTIP REPLY over iMIP, RFC 5546 / RFC 6047), for an
invitation whose event is not in the member's calendar (an outside organiser's meeting that
Exchange did not file, a deleted event): the organiser's calendar system reads the REPLY as
Outlook's own Accept would be read.

Also the identity Exchange gives an outside organiser's meeting: a third-party UID is kept
inside a GlobalObjectId (MS-OXCICAL 2.1.3.1.1.20.26, the byte layout in MS-ASEMAIL 4.3
example 2), and Graph's ``iCalUId`` is that id in hex, not the UID the invitation carries.

Built from validated values only: the organiser's address is parsed and checked, the
invitation's text is escaped as iCalendar TEXT, and no header object of the invitation is
copied (CVE-2024-6923).
"""

from __future__ import annotations

import re
import struct
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from gateway.errors import BadRequest
from gateway.mail.compose import parse_address_list
from gateway.mail.mime import Address, CalendarInvite

GOID_PREFIX = "040000008200E00074C5B7101A82E008"
PARTSTAT = {"accept": "ACCEPTED", "tentative": "TENTATIVE", "decline": "DECLINED"}
SUBJECT_WORD = {"accept": "Accepted", "tentative": "Tentative", "decline": "Declined"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def exchange_ical_uid(uid: str) -> str:
    """The ``iCalUId`` Graph shows for a meeting whose invitation carried ``uid``: itself
    when it is already a GlobalObjectId in hex (Outlook's own), else the "vCal-Uid" form."""
    if re.fullmatch(r"[0-9A-Fa-f]+", uid) and uid.upper().startswith(GOID_PREFIX):
        return uid.upper()
    data = b"vCal-Uid" + struct.pack("<I", 1) + uid.encode() + b"\x00"
    head = bytes.fromhex(GOID_PREFIX) + bytes(4) + bytes(8) + bytes(8)
    return (head + struct.pack("<I", len(data)) + data).hex().upper()


def _text(value: str, limit: int = 2000) -> str:
    """An iCalendar TEXT value (RFC 5545 3.3.11)."""
    value = value[:limit].replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return _CONTROL.sub(" ", value.replace("\r\n", "\n").replace("\n", "\\n"))


def _fold(line: str) -> str:
    """Lines of at most 75 octets, continued with a space (RFC 5545 3.1)."""
    out: list[str] = []
    current = b""
    for ch in line:
        b = ch.encode()
        if len(current) + len(b) > (75 if not out else 74):
            out.append(current.decode())
            current = b""
        current += b
    out.append(current.decode())
    return "\r\n ".join(out)


def _when(value: datetime | date | None) -> str | None:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.strftime("%Y%m%dT%H%M%S")
        return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    if isinstance(value, date):
        return "VALUE=DATE:" + value.strftime("%Y%m%d")
    return None


def reply_ics(invite: CalendarInvite, organizer: str, me: Address, answer: str, comment: str,
              now: datetime) -> str:
    """The VCALENDAR of a REPLY; ``organizer`` is the checked address to answer."""
    if invite.uid is None or answer not in PARTSTAT:
        raise BadRequest("This invitation cannot be answered by mail.")
    name = _CONTROL.sub("", me.name).replace('"', "")[:200]
    cn = f';CN="{name}"' if name else ""
    lines = ["BEGIN:VCALENDAR", "PRODID:-//Council//Failover mail gateway//EN",
             "VERSION:2.0", "METHOD:REPLY", "BEGIN:VEVENT",
             "UID:" + _CONTROL.sub("", invite.uid[:1024]),
             "DTSTAMP:" + now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ"),
             "ORGANIZER:mailto:" + organizer,
             f"ATTENDEE;PARTSTAT={PARTSTAT[answer]}{cn}:mailto:{me.email}"]
    start = _when(invite.start)
    if start:
        lines.append(("DTSTART;" if start.startswith("VALUE") else "DTSTART:") + start)
    if invite.summary:
        lines.append("SUMMARY:" + _text(invite.summary, 500))
    if comment.strip():
        lines.append("COMMENT:" + _text(comment))
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return "\r\n".join(_fold(x) for x in lines) + "\r\n"


def reply_message(invite: CalendarInvite, me: Address, answer: str, comment: str,
                  now: datetime) -> tuple[bytes, str]:
    """The iMIP REPLY message and its one envelope recipient (the organiser)."""
    if invite.organizer is None:
        raise BadRequest("This invitation names no organiser to answer.")
    organizer = parse_address_list(invite.organizer.email)
    if len(organizer) != 1:
        raise BadRequest("The organiser's address in this invitation is not valid.")
    ics = reply_ics(invite, organizer[0].email, me, answer, comment, now)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = str(me)
    msg["To"] = organizer[0].email
    summary = _CONTROL.sub(" ", invite.summary or "Meeting")[:200]
    msg["Subject"] = f"{SUBJECT_WORD[answer]}: {summary}"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=me.email.rsplit("@", 1)[-1] or "gateway.invalid")
    text = f"{me.name or me.email} has {SUBJECT_WORD[answer].lower()} this invitation."
    if comment.strip():
        text += "\n\n" + comment.strip()[:2000]
    msg.set_content(text)
    msg.add_alternative(ics, subtype="calendar", params={"method": "REPLY"})
    return msg.as_bytes(), organizer[0].email
