"""Outgoing mail: checked recipient lists, the bytes of a new message, and the fields of a
reply or forward.

A message is built only from values validated here, never from header objects copied out
of a parsed message: Python 3.11.7 predates the fix for CVE-2024-6923, where an encoded
CR/LF in a copied header is written back as a real header line (an injected Bcc). Every
header value is one line of text before it is set, and the finished header block is
checked against the list of headers we meant to write.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage

from gateway.errors import BadRequest, PayloadTooLarge
from gateway.mail.mime import Address, MessageView, clean_text, safe_filename
from gateway.mail.sanitize import html_to_text

MAX_RECIPIENTS = 500
MAX_QUOTED_CHARS = 200_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_MSGID = re.compile(r"<[!-;=?-~]{1,250}>")
_TYPE = re.compile(r"([a-z0-9][a-z0-9!#$&^_.+-]{0,63})/([a-z0-9][a-z0-9!#$&^_.+-]{0,126})")
_HEADERS = {"from", "to", "cc", "subject", "date", "message-id", "in-reply-to", "references",
            "mime-version", "content-type", "content-transfer-encoding"}


@dataclass(frozen=True, slots=True)
class BuiltMessage:
    data: bytes             # CRLF line endings, ready for SMTP and IMAP APPEND
    recipients: list[str]   # the SMTP envelope: To, Cc and Bcc, without duplicates
    message_id: str


@dataclass(frozen=True, slots=True)
class ReplyFields:
    to: list[Address]
    cc: list[Address]
    subject: str
    in_reply_to: str | None
    references: list[str]
    quoted_text: str


@dataclass(frozen=True, slots=True)
class ForwardFields:
    subject: str
    header_block: str       # "---------- Forwarded message ----------" From/Date/Subject/To/Cc
    quoted_text: str        # header block and the original text, for the editor


def _shown(piece: str) -> str:
    piece = " ".join(_CONTROL.sub(" ", piece).split())
    return piece if len(piece) <= 60 else piece[:57] + "..."


def validate_email(addr: str) -> str:
    """The address with its domain lower-cased and IDNA-encoded; BadRequest naming it if
    it is not a plain user@domain.example address."""
    local, at, domain = addr.strip().rpartition("@")
    ascii_domain = _domain(domain)
    if not at or len(local) > 64 or not _LOCAL.fullmatch(local) or ascii_domain is None:
        raise BadRequest(f'"{_shown(addr)}" is not a valid email address.')
    return f"{local}@{ascii_domain}"


def _domain(domain: str) -> str | None:
    try:
        ascii_domain = domain.rstrip(".").lower().encode("idna").decode("ascii")
    except UnicodeError:
        return None
    labels = ascii_domain.split(".")
    if (len(ascii_domain) > 253 or len(labels) < 2 or labels[-1].isdigit()
            or not all(_LABEL.fullmatch(label) for label in labels)):
        return None
    return ascii_domain


def _split(text: str) -> list[str]:
    pieces: list[str] = []
    current: list[str] = []
    quoted = angle = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"' and not angle:
            quoted = not quoted
        elif ch == "<" and not quoted:
            angle = True
        elif ch == ">" and not quoted:
            angle = False
        elif ch in ",;" and not quoted and not angle:
            pieces.append("".join(current))
            current = []
            continue
        current.append(ch)
    pieces.append("".join(current))
    return [p.strip() for p in pieces if p.strip()]


def parse_address_list(text: str) -> list[Address]:
    """'Name <a@b.example>, c@d.example; ...' -> Address list without duplicates.
    BadRequest names the first address that is not acceptable."""
    out: list[Address] = []
    seen: set[str] = set()
    for piece in _split(text):
        if _CONTROL.search(piece):
            raise BadRequest(f'"{_shown(piece)}" contains a line break or control character.')
        match = re.fullmatch(r"(.*?)<([^<>]*)>", piece, re.DOTALL)
        name, addr = (match.group(1), match.group(2)) if match else ("", piece)
        name = name.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = re.sub(r"\\(.)", r"\1", name[1:-1])
        address = Address(clean_text(name)[:200], validate_email(addr))
        if address.email.lower() not in seen:
            seen.add(address.email.lower())
            out.append(address)
    if len(out) > MAX_RECIPIENTS:
        raise BadRequest(f"A message can go to at most {MAX_RECIPIENTS} addresses.")
    return out


def _checked(addresses: Iterable[Address]) -> list[Address]:
    return [Address(clean_text(a.name)[:200], validate_email(a.email)) for a in addresses]


def _header_addresses(addresses: Sequence[Address]) -> list[HeaderAddress]:
    return [HeaderAddress(display_name=a.name, addr_spec=a.email) for a in addresses]


def _msgids(values: Iterable[str | None]) -> list[str]:
    found = [v.strip() for v in values if v and _MSGID.fullmatch(v.strip())]
    unique = list(dict.fromkeys(found))
    return unique[:1] + unique[1:][-19:]   # the thread's root and the recent ones


def build_message(*, from_addr: Address, to: Sequence[Address], cc: Sequence[Address] = (),
                  bcc: Sequence[Address] = (), subject: str, text_body: str,
                  html_body: str | None = None,
                  attachments: Sequence[tuple[str, str, bytes]] = (),
                  in_reply_to: str | None = None, references: Sequence[str] = (),
                  message_id_domain: str, date: datetime | None = None,
                  max_bytes: int | None = None,
                  require_recipients: bool = True,
                  message_id_local: str | None = None) -> BuiltMessage:
    """The RFC 5322 bytes of a new message (UTF-8, CRLF) and its envelope recipients.
    Bcc recipients are in the envelope only, never in a header."""
    sender, = _checked([from_addr])
    to_list, cc_list, bcc_list = _checked(to), _checked(cc), _checked(bcc)
    recipients = list(dict.fromkeys(a.email for a in [*to_list, *cc_list, *bcc_list]))
    if not recipients and require_recipients:   # a draft may have none yet
        raise BadRequest("Add at least one recipient.")
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = _header_addresses([sender])
    if to_list:
        msg["To"] = _header_addresses(to_list)
    if cc_list:
        msg["Cc"] = _header_addresses(cc_list)
    msg["Subject"] = clean_text(subject)[:500]
    msg["Date"] = email.utils.format_datetime(date or datetime.now(UTC))
    id_domain = _domain(message_id_domain)
    if id_domain is None:
        raise ValueError("message_id_domain is not a domain name")   # configuration, not input
    # A caller-chosen local part (letters, digits, - and _ only) keeps the Message-ID the
    # same across retries of one message, so a retry can see whether it already went.
    if message_id_local is not None and re.fullmatch(r"[A-Za-z0-9_-]{8,64}", message_id_local):
        message_id = f"<{message_id_local}@{id_domain}>"
    else:
        message_id = email.utils.make_msgid(domain=id_domain)
    msg["Message-ID"] = message_id
    if parent := _msgids([in_reply_to]):
        msg["In-Reply-To"] = parent[0]
    if chain := _msgids([*references, *parent]):
        msg["References"] = " ".join(chain)
    msg.set_content(_body(text_body), subtype="plain", charset="utf-8")
    if html_body is not None:
        msg.add_alternative(_body(html_body), subtype="html", charset="utf-8")
    for filename, content_type, data in attachments:
        match = _TYPE.fullmatch(content_type.strip().lower())
        maintype, subtype = match.groups() if match else ("application", "octet-stream")
        if maintype in ("multipart", "message"):   # sent as the bytes they are, base64
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(bytes(data), maintype=maintype, subtype=subtype,
                           filename=safe_filename(filename))
    data = msg.as_bytes(policy=email.policy.SMTP)
    _check_headers(data)
    if max_bytes is not None and len(data) > max_bytes:
        raise PayloadTooLarge("This message with its attachments is larger than can be sent.")
    return BuiltMessage(data, recipients, message_id)


def _body(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def _check_headers(data: bytes) -> None:
    # Belt and braces: the top-level header block holds exactly the headers we set.
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii", errors="replace")
    names = [line.split(":", 1)[0].strip().lower()
             for line in head.split("\r\n") if line and line[0] not in " \t"]
    if len(names) != len(set(names)) or not set(names) <= _HEADERS:
        raise BadRequest("That message could not be built safely.")


# ---- replies and forwards --------------------------------------------------------------

def _valid(addresses: Iterable[Address]) -> list[Address]:
    out: list[Address] = []
    for address in addresses:
        try:
            out.extend(_checked([address]))
        except BadRequest:
            continue   # "undisclosed-recipients:;" and other non-addresses in hostile mail
    return out


def _without(addresses: Iterable[Address], exclude: set[str]) -> list[Address]:
    out = []
    for address in addresses:
        if address.email.lower() not in exclude:
            exclude.add(address.email.lower())
            out.append(address)
    return out


def _prefixed(subject: str, prefix: str, pattern: str) -> str:
    subject = clean_text(subject)
    return subject if re.match(pattern, subject, re.IGNORECASE) else f"{prefix} {subject}".strip()


def _who(original: MessageView) -> str:
    sender = original.from_[0] if original.from_ else None
    return (sender.name or sender.email) if sender else "Unknown sender"


def _when(original: MessageView) -> str:
    d = original.date
    return f"{d:%a} {d.day} {d:%b %Y} at {d:%H:%M}" if d else ""


def _original_text(original: MessageView) -> str:
    text = original.text if original.text is not None else html_to_text(original.html or "")
    return text.replace("\r\n", "\n")[:MAX_QUOTED_CHARS]


def reply_fields(original: MessageView, me: str, reply_all: bool) -> ReplyFields:
    """Recipients, subject, threading headers and quoted text of a reply."""
    mine = {me.strip().lower()}
    sent_by_me = bool(original.from_) and all(a.email.lower() in mine for a in original.from_)
    to = _valid(original.to if sent_by_me else (original.reply_to or original.from_))
    to = _without(to, set(mine)) or to[:1]
    cc = _without(_valid([*original.to, *original.cc]), mine | {a.email.lower() for a in to}) \
        if reply_all else []
    when = _when(original)
    intro = f"On {when}, {_who(original)} wrote:" if when else f"{_who(original)} wrote:"
    quoted = "\n".join("> " + line for line in _original_text(original).split("\n"))
    return ReplyFields(
        to=to, cc=cc, subject=_prefixed(original.subject, "Re:", r"(re|aw|sv|antw)(\[\d+\])?:"),
        in_reply_to=next(iter(_msgids([original.message_id])), None),
        references=_msgids([*original.references, original.message_id]),
        quoted_text=f"{intro}\n{quoted}\n")


def forward_fields(original: MessageView) -> ForwardFields:
    """Subject and the quoted header block of a forward. The original attachments go with
    it byte for byte: fetch them with mime.attachment_bytes and pass them to build_message."""
    lines = ["---------- Forwarded message ----------",
             f"From: {', '.join(str(a) for a in original.from_)}"]
    if original.date:
        lines.append(f"Date: {_when(original)}")
    lines.append(f"Subject: {clean_text(original.subject)}")
    for label, addresses in (("To", original.to), ("Cc", original.cc)):
        if addresses:
            lines.append(f"{label}: {', '.join(str(a) for a in addresses)}")
    block = "\n".join(clean_text(line) for line in lines) + "\n"
    return ForwardFields(
        subject=_prefixed(original.subject, "Fw:", r"(fw|fwd|wg|tr)(\[\d+\])?:"),
        header_block=block, quoted_text=f"{block}\n{_original_text(original)}\n")
