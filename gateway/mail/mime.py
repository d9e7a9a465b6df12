"""Raw RFC 5322 bytes -> typed view models for the mail pages (no email objects leak out):
the message's text and HTML bodies, its attachments by IMAP part number, and a meeting
invitation it carries. Header decoding (RFC 2047, RFC 2231, charsets, dates, addresses,
safe filenames) is ``gateway.mail.headers``, re-exported here.

Mail is hostile input. Everything here degrades instead of raising: an unknown charset
falls back, a malformed header reads as empty, a multipart nested deeper than the stdlib
can recurse (RecursionError near 1,000 levels) shows its headers and a note. We parse with
policy compat32, whose headers are plain strings: policy.default builds header objects
that raise ValueError on a CR or LF inside an address (see CVE-2024-6923 in FIELD-NOTES).
"""

from __future__ import annotations

import email
import email.header
import email.parser
import email.policy
import email.utils
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.errors import MessageError
from email.message import Message
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.errors import NotFound
from gateway.mail.addresses import parse_address_list, parse_addresses
from gateway.mail.headers import (
    Address,
    clean_text,
    decode_bytes,
    decode_rfc2047,
    decode_rfc2231_params,
    parse_date,
    safe_filename,
)

# The header helpers are part of this module's interface too (the views and the IMAP
# parser have long imported them from here).
__all__ = ["Address", "AttachmentInfo", "CalendarAttendee", "CalendarInvite", "MessageView",
           "attachment_bytes", "clean_text", "decode_bytes", "decode_rfc2047",
           "decode_rfc2231_params", "parse_addresses", "parse_calendar", "parse_date",
           "parse_message", "safe_filename"]

MAX_ADDRESSES = 1_000         # attendees read from an invitation
MAX_DEPTH = 50                 # multipart levels walked; deeper parts are not shown
MAX_TEXT_CHARS = 2_000_000

# Parse failures the stdlib is known to produce on hostile mail. Listed, not a bare
# Exception, so that real bugs in our own code still surface in tests.
_PARSE_ERRORS = (ValueError, LookupError, TypeError, IndexError, AttributeError,
                 MessageError, RecursionError)

_MSGID = re.compile(r"<[^<>\s]{1,250}>")
_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    part_id: str          # IMAP part number ("2", "1.3"), the same numbering as BODYSTRUCTURE
    filename: str         # already made safe by safe_filename
    content_type: str     # as declared (validated shape), never guessed from the name
    size: int             # decoded bytes
    content_id: str | None
    inline: bool


@dataclass(slots=True)
class MessageView:
    from_: list[Address] = field(default_factory=list)
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    reply_to: list[Address] = field(default_factory=list)
    date: datetime | None = None
    subject: str = ""
    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    text: str | None = None
    html: str | None = None       # raw: sanitize.py decides what of it may be shown
    attachments: list[AttachmentInfo] = field(default_factory=list)
    calendar: CalendarInvite | None = None
    notes: list[str] = field(default_factory=list)   # what could not be shown, for the member
    # Address-list elements that are not well-formed mailboxes, by header ("To": [...]):
    # shown to the member as they are, never guessed into an address.
    unreadable: dict[str, list[str]] = field(default_factory=dict)


# ---- meeting invitations (text/calendar) ------------------------------------------------

@dataclass(frozen=True, slots=True)
class CalendarAttendee:
    name: str
    email: str
    status: str | None    # PARTSTAT, lower-case: "needs-action", "accepted", ...


@dataclass(frozen=True, slots=True)
class CalendarInvite:
    method: str | None    # REQUEST, CANCEL, REPLY ...
    uid: str | None
    summary: str
    start: datetime | date | None   # naive when the zone is one we cannot name
    end: datetime | date | None
    location: str
    organizer: Address | None
    attendees: list[CalendarAttendee]


# Outlook writes Windows zone names in TZID; the common ones for a UK council.
_WINDOWS_ZONES = {"gmt standard time": "Europe/London", "greenwich standard time": "UTC",
                  "w. europe standard time": "Europe/Berlin", "romance standard time":
                  "Europe/Paris", "utc": "UTC", "eastern standard time": "America/New_York"}
_CAL_LINE = re.compile(r'([A-Za-z0-9-]++)((?:;[A-Za-z0-9-]++=(?:"[^"]*+"|[^";:,]*+)'
                       r'(?:,(?:"[^"]*+"|[^";:,]*+))*+)*+):(.*)')
_CAL_PARAM = re.compile(r';([A-Za-z0-9-]+)=("[^"]*"|[^";:]*)')  # applied to the matched params


def parse_calendar(text: str, max_lines: int = 20_000) -> CalendarInvite | None:
    """The first VEVENT of an iCalendar text, minimally: enough to show an invitation."""
    lines = re.sub(r"\r?\n[ \t]", "", text[:MAX_TEXT_CHARS]).splitlines()[:max_lines]
    stack: list[str] = []
    method: str | None = None
    props: dict[str, tuple[dict[str, str], str]] = {}
    attendees: list[CalendarAttendee] = []
    for line in lines:
        match = _CAL_LINE.fullmatch(line)
        if match is None:
            continue
        name, value = match.group(1).upper(), match.group(3)
        params = {k.upper(): v.strip('"') for k, v in _CAL_PARAM.findall(match.group(2))}
        if name == "BEGIN":
            if value.upper() == "VEVENT" and props:
                break   # only the first event
            stack.append(value.upper())
        elif name == "END":
            if stack and stack[-1] == "VEVENT" and value.upper() == "VEVENT":
                stack.pop()
                break
            if stack:
                stack.pop()
        elif stack == ["VCALENDAR"] and name == "METHOD":
            method = clean_text(value).upper() or None
        elif stack[-1:] == ["VEVENT"]:
            if name == "ATTENDEE" and len(attendees) < MAX_ADDRESSES:
                attendees.append(CalendarAttendee(
                    clean_text(params.get("CN", "")), _mailto(value),
                    params.get("PARTSTAT", "").lower() or None))
            else:
                props.setdefault(name, (params, value))
    if not props:
        return None
    organizer = None
    if "ORGANIZER" in props:
        params, value = props["ORGANIZER"]
        organizer = Address(clean_text(params.get("CN", "")), _mailto(value))
    return CalendarInvite(
        method=method, uid=clean_text(props["UID"][1]) if "UID" in props else None,
        summary=_cal_text(props.get("SUMMARY")), location=_cal_text(props.get("LOCATION")),
        start=_cal_time(props.get("DTSTART")), end=_cal_time(props.get("DTEND")),
        organizer=organizer, attendees=attendees)


def _mailto(value: str) -> str:
    value = clean_text(value)
    return value[7:] if value.lower().startswith("mailto:") else value


def _cal_text(prop: tuple[dict[str, str], str] | None) -> str:
    if prop is None:
        return ""
    unescaped = re.sub(r"\\([\\;,nN])", lambda m: "\n" if m.group(1) in "nN" else m.group(1),
                       prop[1])
    return clean_text(unescaped)


def _cal_time(prop: tuple[dict[str, str], str] | None) -> datetime | date | None:
    if prop is None:
        return None
    params, value = prop
    match = re.fullmatch(r"(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z?))?", value.strip())
    if match is None:
        return None
    try:
        y, mo, d = (int(match.group(i)) for i in (1, 2, 3))
        if match.group(4) is None:
            return date(y, mo, d)
        hh, mm, ss = (int(match.group(i)) for i in (4, 5, 6))
        stamp = datetime(y, mo, d, hh, mm, ss)
    except ValueError:
        return None
    if match.group(7):
        return stamp.replace(tzinfo=UTC)
    tzid = params.get("TZID", "").strip()
    try:
        return stamp.replace(tzinfo=ZoneInfo(_WINDOWS_ZONES.get(tzid.lower(), tzid)))
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return stamp


# ---- message parsing --------------------------------------------------------------------

def _header(msg: Message, name: str) -> str | None:
    wanted = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == wanted:
            return re.sub(r"\r?\n(?=[ \t])", "", str(value))
    return None


def _param(part: Message, name: str, header: str) -> str | None:
    try:
        value = part.get_param(name, header=header)
    except _PARSE_ERRORS:
        return None
    if isinstance(value, tuple):   # RFC 2231: (charset, language, percent-decoded text)
        charset, _lang, text = value
        try:
            raw = text.encode("latin-1")
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "surrogateescape")
        return clean_text(decode_bytes(raw, charset))
    if isinstance(value, str):
        # Many mailers put RFC 2047 words in a quoted filename; decode those too.
        return decode_rfc2047(email.utils.unquote(value))
    return None


def _content_type(part: Message) -> str:
    try:
        ctype = part.get_content_type().lower()
    except _PARSE_ERRORS:
        return "application/octet-stream"
    return ctype if _TYPE.fullmatch(ctype) else "application/octet-stream"


def _walk(msg: Message, notes: list[str]) -> Iterator[tuple[str, Message]]:
    """Leaf parts with IMAP part numbers, iteratively, to a bounded depth."""
    stack: list[tuple[str, Message, int]] = [("" if _is_container(msg) else "1", msg, 0)]
    while stack:
        part_id, part, depth = stack.pop()
        if not _is_container(part):
            yield part_id, part
            continue
        if depth >= MAX_DEPTH:
            notes.append("Parts nested too deeply are not shown.")
            continue
        children = part.get_payload()
        if isinstance(children, list):
            kids = [(f"{part_id}.{n}" if part_id else str(n), child, depth + 1)
                    for n, child in enumerate(children, 1) if isinstance(child, Message)]
            stack.extend(reversed(kids))


def _is_container(part: Message) -> bool:
    # compat32 reports message/rfc822 as multipart; we offer it as an attachment instead.
    return part.is_multipart() and _content_type(part).startswith("multipart/")


def _payload(part: Message) -> bytes:
    if _content_type(part) in ("message/rfc822", "message/global"):
        try:
            inner = part.get_payload(0)
            if isinstance(inner, Message):   # compat32 writes header values back as sent
                return inner.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))
            return b""
        except _PARSE_ERRORS:
            return b""
    try:
        data = part.get_payload(decode=True)
    except _PARSE_ERRORS:
        return b""
    return data if isinstance(data, bytes) else b""


def _disposition(part: Message) -> str:
    try:
        return (part.get_content_disposition() or "").lower()
    except _PARSE_ERRORS:
        return ""


def _attachment_info(part_id: str, part: Message, data: bytes) -> AttachmentInfo:
    ctype = _content_type(part)
    disposition = _disposition(part)
    cid = _header(part, "Content-ID")
    cid = clean_text(cid).strip("<>") or None if cid else None
    name = _param(part, "filename", "content-disposition") or _param(part, "name", "content-type")
    if not name and ctype in ("message/rfc822", "message/global"):
        inner = part.get_payload(0)
        subject = _header(inner, "Subject") if isinstance(inner, Message) else None
        name = (decode_rfc2047(subject or "") or "message") + ".eml"
    return AttachmentInfo(part_id=part_id, filename=safe_filename(name), content_type=ctype,
                          size=len(data), content_id=cid,
                          inline=disposition == "inline" or (not disposition and cid is not None))


def _is_body(part: Message, ctype: str) -> bool:
    if ctype not in ("text/plain", "text/html"):
        return False
    disposition = _disposition(part)
    has_name = bool(part.get_param("filename", header="content-disposition")
                    or part.get_param("name"))
    return disposition != "attachment" and not has_name


def _body_text(part: Message) -> str:
    return decode_bytes(_payload(part), part.get_content_charset())[:MAX_TEXT_CHARS]


def parse_message(raw: bytes) -> MessageView:
    """Parse one message for display. Never raises on malformed mail."""
    notes: list[str] = []
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    except RecursionError:
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            raw, headersonly=True)
        notes.append("This message is nested too deeply to show its contents.")
        return _headers_view(msg, notes)
    view = _headers_view(msg, notes)
    texts: list[str] = []
    htmls: list[str] = []
    for part_id, part in _walk(msg, notes):
        try:
            ctype = _content_type(part)
            if _is_body(part, ctype):
                (texts if ctype == "text/plain" else htmls).append(_body_text(part))
                continue
            if ctype == "text/calendar" and view.calendar is None:
                view.calendar = parse_calendar(_body_text(part))
                if _disposition(part) != "attachment":
                    continue
            if ctype.startswith("multipart/"):
                notes.append("A part of this message was malformed and is not shown.")
                continue
            view.attachments.append(_attachment_info(part_id, part, _payload(part)))
        except _PARSE_ERRORS:
            notes.append("A part of this message could not be read.")
    view.text = "\n".join(texts) if texts else None
    view.html = "\n".join(htmls) if htmls else None
    view.notes = list(dict.fromkeys(notes))
    return view


def _headers_view(msg: Message, notes: list[str]) -> MessageView:
    references = _MSGID.findall(_header(msg, "References") or "")
    lists = {name: parse_address_list(_header(msg, name))
             for name in ("From", "To", "Cc", "Reply-To")}
    return MessageView(
        from_=lists["From"].addresses, to=lists["To"].addresses, cc=lists["Cc"].addresses,
        reply_to=lists["Reply-To"].addresses,
        unreadable={name: [u.text for u in found.unreadable]
                    for name, found in lists.items() if found.unreadable},
        date=parse_date(_header(msg, "Date")),
        subject=decode_rfc2047(_header(msg, "Subject") or ""),
        message_id=next(iter(_MSGID.findall(_header(msg, "Message-ID") or "")), None),
        in_reply_to=next(iter(_MSGID.findall(_header(msg, "In-Reply-To") or "")), None),
        references=references[:1] + references[1:][-49:],   # the root and the recent ones
        notes=notes,
    )


def attachment_bytes(raw: bytes, part_id: str) -> tuple[AttachmentInfo, bytes]:
    """One part's decoded bytes by its part number; NotFound if there is no such leaf."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        for found_id, part in _walk(msg, []):
            if found_id == part_id:
                data = _payload(part)
                return _attachment_info(part_id, part, data), data
    except _PARSE_ERRORS as exc:
        raise NotFound("That attachment could not be read.") from exc
    raise NotFound("That attachment is not in this message.")
