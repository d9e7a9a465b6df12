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
from gateway.mail.addresses import parse_address_list as read_address_list
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
    # What of the original's address lists could not be read as an address, shown to the
    # member beside the form instead of being guessed into a recipient.
    left_out: list[str]


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


def parse_address_list(text: str) -> list[Address]:
    """What a member typed in To/Cc/Bcc ('"Smith, Jo" <jo@x.example>; c@d.example') ->
    Address list without duplicates, read by the one strict reader
    (``gateway.mail.addresses``). BadRequest names the first element that is not an
    acceptable address: nothing is guessed, so the envelope is exactly what the field shows.
    """
    # Line breaks or controls anywhere but around a separator: refused, not folded away.
    if _CONTROL.search(re.sub(r"\s*([,;])\s*", r"\1 ", text).strip()):
        raise BadRequest(f'"{_shown(text)}" contains a line break or control character.')
    found = read_address_list(text)
    if found.unreadable:
        raise BadRequest(f'"{_shown(found.unreadable[0].text)}" is not a valid email address.')
    if found.truncated:
        raise BadRequest(f"A message can go to at most {MAX_RECIPIENTS} addresses.")
    out: list[Address] = []
    seen: set[str] = set()
    for item in found.addresses:
        address = Address(clean_text(item.name)[:200], validate_email(item.email))
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

def _valid(found: Iterable[Address], left_out: list[str] | None = None) -> list[Address]:
    out: list[Address] = []
    for address in found:
        try:
            out.extend(_checked([address]))
        except BadRequest:
            # "root@localhost" and other addresses mail cannot be sent to: named to the member.
            if left_out is not None:
                left_out.append(address.email)
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
    left_out: list[str] = []
    sent_by_me = bool(original.from_) and all(a.email.lower() in mine for a in original.from_)
    heads = ["To"] if sent_by_me else ["Reply-To"] + ([] if original.reply_to else ["From"])
    to = _valid(original.to if sent_by_me else (original.reply_to or original.from_), left_out)
    to = _without(to, set(mine)) or to[:1]
    cc: list[Address] = []
    if reply_all:
        heads += ["To", "Cc"]
        cc = _without(_valid([*original.to, *original.cc], left_out),
                      mine | {a.email.lower() for a in to})
    for head in dict.fromkeys(heads):
        left_out.extend(original.unreadable.get(head, []))
    when = _when(original)
    intro = f"On {when}, {_who(original)} wrote:" if when else f"{_who(original)} wrote:"
    quoted = "\n".join("> " + line for line in _original_text(original).split("\n"))
    return ReplyFields(
        to=to, cc=cc, subject=_prefixed(original.subject, "Re:", r"(re|aw|sv|antw)(\[\d+\])?:"),
        in_reply_to=next(iter(_msgids([original.message_id])), None),
        references=_msgids([*original.references, original.message_id]),
        quoted_text=f"{intro}\n{quoted}\n", left_out=list(dict.fromkeys(left_out)))


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
