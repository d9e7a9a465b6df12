"""Raw RFC 5322 bytes -> typed view models for the mail pages (no email objects leak out),
plus the header-decoding helpers that imap_parse shares: RFC 2047 words, RFC 2231
parameters, charsets with fallback, dates, safe attachment filenames.

Mail is hostile input. Everything here degrades instead of raising: an unknown charset
falls back, a malformed header reads as empty, a multipart nested deeper than the stdlib
can recurse (RecursionError near 1,000 levels) shows its headers and a note. We parse with
policy compat32, whose headers are plain strings: policy.default builds header objects
that raise ValueError on a CR or LF inside an address (see CVE-2024-6923 in FIELD-NOTES).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.header
import email.parser
import email.policy
import email.utils
import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from email.errors import MessageError
from email.message import Message
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.errors import NotFound

MAX_HEADER_CHARS = 16_384      # decoding cost of RFC 2047 words grows fast on hostile input
MAX_ADDRESS_CHARS = 65_536     # a council-wide To: line is large but not this large
MAX_ADDRESSES = 1_000
MAX_DEPTH = 50                 # multipart levels walked; deeper parts are not shown
MAX_TEXT_CHARS = 2_000_000

# Parse failures the stdlib is known to produce on hostile mail. Listed, not a bare
# Exception, so that real bugs in our own code still surface in tests.
_PARSE_ERRORS = (ValueError, LookupError, TypeError, IndexError, AttributeError,
                 MessageError, RecursionError)

_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
# Embedding, override and isolate controls reorder what the reader sees (U+202E turns
# "invoice\u202efdp.exe" into "invoiceexe.pdf"); marks are harmless but go too.
_BIDI = re.compile(r"[\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")
# What either of the two takes out: text without any is only collapsed.
_UNCLEAN = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")
_MSGID = re.compile(r"<[^<>\s]{1,250}>")
_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


@dataclass(frozen=True, slots=True)
class Address:
    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


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


# ---- header helpers (shared with imap_parse) -------------------------------------------

def clean_text(value: str) -> str:
    """One line of display text: controls and bidi overrides out, whitespace collapsed."""
    if (value.isascii() and value.isprintable()) or not _UNCLEAN.search(value):
        return " ".join(value.split())   # the common case: nothing to take out
    return " ".join(_BIDI.sub("", _CONTROLS.sub(" ", value)).split())


def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    # Looked up for every string of every message: cached, but only for names short enough
    # to be real charsets, so hostile input cannot fill the cache with large keys.
    return _codec_cached(charset) if len(charset) <= 64 else _codec_lookup(charset)


@functools.lru_cache(maxsize=256)
def _codec_cached(charset: str) -> str | None:
    return _codec_lookup(charset)


def _codec_lookup(charset: str) -> str | None:
    name = charset.strip().strip("\"'").lower()
    name = {"iso-8859-8-i": "iso-8859-8", "gb2312": "gb18030", "x-gbk": "gb18030"}.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    # "base64", "zlib", "hex" are codecs too, but bytes-to-bytes ones: not a charset.
    return info.name if getattr(info, "_is_text_encoding", True) else None


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset; fall back to UTF-8, then Windows-1252, never raise."""
    codec = _codec(charset)
    for name in (codec, "utf-8"):
        if name:
            try:
                return data.decode(name)
            except (ValueError, LookupError):  # UnicodeError is a ValueError
                continue
    return data.decode("cp1252", errors="replace")


def _unsurrogate(value: str) -> str:
    # compat32 keeps 8-bit header octets as surrogate escapes. Decode each run on its own:
    # one header may mix UTF-8 and Latin-1 names.
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    return re.sub("[\udc80-\udcff]+", lambda m: decode_bytes(
        m.group().encode("utf-8", "surrogateescape"), "utf-8"), value)


# An RFC 2047 encoded word. Charset may carry a language ("utf-8*en"); the text holds no
# spaces or "?". Matching is linear: no part can overlap the next.
_EWORD = re.compile(r"=\?([^?\s]{1,64})\?([qQbB])\?([^?\s]*)\?=")


def decode_rfc2047(value: str) -> str:
    """Decode RFC 2047 encoded words and return clean one-line text (never raises).

    Our own loop rather than email.header.decode_header, which gives up on the whole header
    when one word is bad base64. Adjacent words of one charset are joined before decoding,
    since mailers split multi-byte characters across words."""
    value = value[:MAX_HEADER_CHARS]
    if not value.isascii():
        value = _unsurrogate(value)
    if "=?" not in value:   # no encoded word: nothing to decode
        return clean_text(value)
    out: list[str] = []
    pending: tuple[str, bytearray] | None = None
    pos = 0
    for match in _EWORD.finditer(value):
        between = value[pos:match.start()]
        charset = match.group(1).split("*", 1)[0].lower()
        data = _word_bytes(match.group(2).lower(), match.group(3))
        if data is None:   # undecodable: keep the word as it was written
            between, data, charset = between + match.group(), bytearray(), ""
        if pending and (between.strip() or charset != pending[0]):
            out.append(decode_bytes(bytes(pending[1]), pending[0]))
            pending = None
        if pending is None or between.strip():
            out.append(between)
        if pending is None:
            pending = (charset, bytearray())
        pending[1].extend(data)
        pos = match.end()
    if pending:
        out.append(decode_bytes(bytes(pending[1]), pending[0]))
    out.append(value[pos:])
    return clean_text("".join(out))


def _word_bytes(encoding: str, text: str) -> bytearray | None:
    if encoding == "q":
        raw = text.replace("_", " ").encode("ascii", "replace")
        return bytearray(re.sub(rb"=([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw))
    try:
        return bytearray(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
    except (binascii.Error, ValueError):
        return None


def decode_rfc2231_params(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Join RFC 2231 continuations (name*0*=utf-8''a%20b; name*1*=...) into one value each.

    Keys come back lower-case. An encoded value wins over a plain one of the same name.
    """
    plain: dict[str, str] = {}
    pieces: dict[str, dict[int, tuple[str, bool]]] = {}
    for key, value in pairs:
        key = key.strip().lower()
        match = re.fullmatch(r"([^*]+)\*(\d{1,3})?(\*?)", key)
        if match is None:
            plain.setdefault(key, value)
        elif match.group(2) is None:
            pieces.setdefault(match.group(1), {})[0] = (value, True)
        else:
            index = int(match.group(2))
            pieces.setdefault(match.group(1), {})[index] = (value, bool(match.group(3)))
    for base, segments in pieces.items():
        charset = None
        buf = bytearray()
        index = 0
        while index in segments:
            text, encoded = segments[index]
            if encoded:
                if index == 0 and text.count("'") >= 2:
                    charset, _lang, text = text.split("'", 2)
                buf += _percent_decode(text)
            else:
                buf += text.encode("utf-8", "surrogateescape")
            index += 1
        if index:
            plain[base] = decode_bytes(bytes(buf), charset or "utf-8")
    return plain


def _percent_decode(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogateescape")
    return re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw)


_ZONES: dict[str, timezone] = {}   # "+0100" -> its zone; few exist, bounded all the same
_MONTH_NUMBERS = {m: i for i, m in enumerate(
    "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
_RFC5322_DATE = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?(\d{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|"
    r"Nov|Dec) ([1-9]\d{3}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})")


def parse_date(value: str | None) -> datetime | None:
    """RFC 5322 date -> aware datetime (UTC when the zone is unknown), or None."""
    if not value:
        return None
    if match := _RFC5322_DATE.fullmatch(value):
        # The usual "Wed, 04 Nov 2026 03:30:04 +0000", read as parsedate_to_datetime reads
        # it (-0000 means "zone unknown": UTC; an odd offset such as +0160 is 1 h + 60 min
        # there too), and None where that raises. Anything else takes the general path.
        day, month, year, hour, minute, second, sign, tzh, tzm = match.groups()
        try:
            zone = _ZONES.get(sign + tzh + tzm)
            if zone is None:
                seconds = int(tzh) * 3600 + int(tzm) * 60
                zone = UTC if sign == "-" and not seconds else timezone(
                    timedelta(seconds=-seconds if sign == "-" else seconds))
                if len(_ZONES) < 512:
                    _ZONES[sign + tzh + tzm] = zone
            return datetime(int(year), _MONTH_NUMBERS[month], int(day), int(hour), int(minute),
                            int(second), tzinfo=zone)
        except (ValueError, OverflowError):
            return None
    try:
        parsed = email.utils.parsedate_to_datetime(clean_text(value[:200]))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_addresses(value: str | None) -> list[Address]:
    """An address header -> Address list; names decoded, nothing raised."""
    if not value:
        return []
    # Encoded words may hide ",", ":" or "@" (=?utf-8?q?x=0D=0ABcc:_a@b?=), which would
    # split the list in the wrong places: stand each in for a placeholder while splitting.
    words: list[str] = []

    def stash(match: re.Match[str]) -> str:
        words.append(match.group())
        return f"\ue000{len(words) - 1}\ue001"

    def restore(text: str) -> str:
        return re.sub("\ue000(\\d+)\ue001", lambda m: words[int(m.group(1))], text)

    masked = _EWORD.sub(stash, _unsurrogate(value[:MAX_ADDRESS_CHARS]))
    try:
        pairs = email.utils.getaddresses([_CONTROLS.sub(" ", masked)])
    except (ValueError, IndexError, TypeError):
        return []
    out: list[Address] = []
    for name, addr in pairs[:MAX_ADDRESSES]:
        addr = "".join(clean_text(restore(addr)).split())
        name = decode_rfc2047(restore(name))
        if addr or name:
            out.append(Address(name, addr))
    return out


def safe_filename(name: str | None, fallback: str = "attachment.bin", limit: int = 120) -> str:
    """A filename fit to offer for download: no path, controls, bidi tricks or leading dots;
    the extension kept when the name must be shortened."""
    if not name:
        return fallback
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")  # Cc Cf Cs Co Cn
    name = re.sub(r'[<>:"|?*]', "_", name)
    # No ".." anywhere: some unpackers and download managers still read it as "go up".
    name = re.sub(r"\.{2,}", ".", name).strip(" .")
    if not name:
        return fallback
    if len(name) > limit:
        _stem, dot, ext = name.rpartition(".")
        ext = ext if dot and 0 < len(ext) <= 16 else ""
        name = name[: limit - len(ext) - 1].rstrip(" .") + ("." + ext if ext else "")
    return name or fallback


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
    return MessageView(
        from_=parse_addresses(_header(msg, "From")),
        to=parse_addresses(_header(msg, "To")),
        cc=parse_addresses(_header(msg, "Cc")),
        reply_to=parse_addresses(_header(msg, "Reply-To")),
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
