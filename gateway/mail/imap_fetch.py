"""What a message's FETCH answer holds, typed: ``parse_fetch`` (and its fast paths for a
``(UID FLAGS)`` page, ``parse_fetch_flags``, and for the preview lines' partial fetch of one
body part, ``parse_fetch_section``) gives one ``FetchData`` per message, with its
ENVELOPE (``Envelope``) and BODYSTRUCTURE (``BodyPart``, the tree of parts) parsed.

The responses come as aioimaplib hands them over and are rejoined and tokenized by
``gateway.mail.imap_tokens``; the other responses (LIST, STATUS, SEARCH, SELECT) are
``gateway.mail.imap_mailboxes``. Anything malformed raises ImapParseError and nothing else,
because the input is whatever the server (or someone between it and us) sends; in
``parse_fetch`` one unreadable message costs only itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from gateway.mail.headers import (
    Address,
    clean_text,
    decode_rfc2047,
    decode_rfc2231_params,
    parse_date,
)
from gateway.mail.imap_tokens import (
    Atom,
    ImapParseError,
    Lines,
    Value,
    _int,
    _internaldate,
    _list,
    _Memo,
    _opt_int,
    _parse_values,
    _strip,
    _text,
    split_responses,
)

# ---- FETCH ------------------------------------------------------------------------------

@dataclass(slots=True)
class FetchData:
    seq: int
    items: dict[str, Value]             # every item as tokenized, keyed by upper-case name
    uid: int | None = None
    flags: tuple[str, ...] | None = None
    internaldate: datetime | None = None
    size: int | None = None
    envelope: Envelope | None = None
    bodystructure: BodyPart | None = None
    sections: dict[str, bytes | None] = field(default_factory=dict)   # BODY[...] and the like
    # The response could not be parsed (a hostile structure thousands of levels deep, say):
    # only seq and, if it could be found, the UID are known.
    unreadable: bool = False

    def section(self, spec: str) -> bytes | None:
        """Contents of e.g. "BODY.PEEK[HEADER.FIELDS (FROM)]" (servers answer without PEEK)."""
        key = " ".join(spec.upper().replace(".PEEK[", "[").split())
        return self.sections.get(key)


_SECTION = re.compile(r"BODY\[|BINARY\[|RFC822(\.HEADER|\.TEXT)?\Z")
_FETCH_START = re.compile(rb"(?:\* )?\d+ FETCH[ (]", re.IGNORECASE)


def parse_fetch(lines: Lines, *, tail: bool = True) -> list[FetchData]:
    """FETCH responses, in order. Other untagged responses in the lines are skipped."""
    out = []
    memo = _Memo()
    for response in split_responses(lines, tail=tail):
        if _FETCH_START.match(response):
            try:
                out.append(_fetch_response(response, memo))
            except (ImapParseError, RecursionError):
                # Rule: one bad message costs only itself; the others in the answer stand.
                out.append(_unreadable(response))
    return out


# A steady page asks only for UID and FLAGS of its 50 messages (the summaries are kept on
# the connection), and the answer is 50 lines such as ``* 7 FETCH (UID 12 FLAGS (\Seen))``:
# one regex per line reads them at a tenth of the general parser's cost. Anything else (other
# items, quoted or non-ASCII flags, literals) goes to parse_fetch.
_FLAG_LIST = rb"\(([\x20!#-'*-Z\\\]^-z|~]*)\)"
_UID_FLAGS = re.compile(rb"(?:\* )?(\d{1,10}) FETCH \((?:UID (\d{1,10}) FLAGS " + _FLAG_LIST
                        + rb"|FLAGS " + _FLAG_LIST + rb" UID (\d{1,10}))\)\Z", re.IGNORECASE)


def parse_fetch_flags(lines: Lines, *, tail: bool = True) -> list[FetchData]:
    """The FETCH responses of a ``(UID FLAGS)`` fetch; the same as parse_fetch gives.

    A steady folder page reads fifty of these on every view, so the work per line is kept to
    one match: a page has a handful of distinct flag lists, each read once (``seen``)."""
    items = list(lines)[:-1] if tail else list(lines)
    out = []
    seen: dict[bytes, tuple[tuple[str, ...], list[Value]]] = {}
    match = _UID_FLAGS.match
    for item in items:
        m = match(item) if isinstance(item, bytes | bytearray) else None
        if m is None:
            if isinstance(item, bytes | bytearray) and not _FETCH_START.match(item) \
                    and not item.endswith(b"}"):
                continue   # another untagged response (EXISTS, EXPUNGE, ...)
            return parse_fetch(lines, tail=tail)
        seq, uid, raw, raw_after, uid_after = m.groups()
        if raw is None:
            raw, uid = raw_after, uid_after
        known = seen.get(raw)
        if known is None:
            names = tuple(raw.decode("ascii").split())
            if any(n.upper() == "NIL" for n in names):
                return parse_fetch(lines, tail=tail)
            known = seen[raw] = (names, [Atom(f) for f in names])
        u = int(uid)
        # Each message gets its own list: nothing shares mutable parts between messages.
        out.append(FetchData(int(seq), {"UID": Atom(str(u)), "FLAGS": known[1].copy()},
                             u, known[0]))
    return out


# The preview lines' FETCH (``UID BODY.PEEK[1]<0.512>``) of a page is fifty answers such as
# ``* 7 FETCH (UID 12 BODY[1]<0> {154}``, the literal, ``)``: read by one match per message.
# Anything else (NIL or a quoted string for the section, the items in another order, more
# items, another untagged response) goes to parse_fetch.
_UID_SECTION = re.compile(rb"(?:\* )?(\d{1,10}) FETCH \(UID (\d{1,10}) (BODY\[[0-9.]*\]<\d{1,10}>) "
                          rb"\{(\d{1,12})\}\Z")


def parse_fetch_section(lines: Lines, *, tail: bool = True) -> list[FetchData]:
    """The FETCH responses of a ``(UID BODY.PEEK[part]<0.n>)`` fetch; what parse_fetch gives.

    A cold page reads fifty of these for its preview lines, so the general parser's work
    (rejoining each literal into its response, then tokenizing it) is skipped where every
    answer has the shape Dovecot sends. Exchange's was not seen: if it differs (the items in
    another order, say), its answers are read by parse_fetch as before."""
    items = list(lines)[:-1] if tail else list(lines)
    if len(items) % 3:
        return parse_fetch(lines, tail=tail)
    out = []
    match = _UID_SECTION.match
    for i in range(0, len(items), 3):
        head, data, end = items[i:i + 3]
        m = match(head) if type(head) is bytes else None
        if m is None or end != b")" or not isinstance(data, bytes | bytearray) \
                or len(data) != int(m.group(4)):
            return parse_fetch(lines, tail=tail)
        seq, uid, key = int(m.group(1)), int(m.group(2)), m.group(3).decode("ascii")
        body = bytes(data)
        out.append(FetchData(seq, {"UID": Atom(str(uid)), key: body}, uid,
                             sections={key: body}))
    return out


def parse_fetch_of(items: str, lines: Lines) -> list[FetchData]:
    """The answer to a FETCH of ``items`` (as sent), by its fast path where it has one."""
    if items == "(UID FLAGS)":
        return parse_fetch_flags(lines)
    if items.startswith("(UID BODY.PEEK[") and " " not in items[5:]:
        return parse_fetch_section(lines)
    return parse_fetch(lines)


_SEQ = re.compile(rb"(?:\* )?(\d+) FETCH", re.IGNORECASE)
_UID = re.compile(rb"[( ]UID (\d{1,10})[ )]", re.IGNORECASE)


def _unreadable(response: bytes) -> FetchData:
    seq = _SEQ.match(response)
    uid = _UID.search(response[:4096]) or _UID.search(response)
    return FetchData(seq=int(seq.group(1)) if seq else 0, items={},
                     uid=int(uid.group(1)) if uid else None, unreadable=True)


def parse_fetch_response(response: bytes) -> FetchData:
    return _fetch_response(response, _Memo())


def _fetch_response(response: bytes, memo: _Memo) -> FetchData:
    values = _strip(_parse_values(response, memo))
    if (len(values) != 3 or not isinstance(values[1], Atom) or values[1].upper() != "FETCH"
            or not isinstance(values[2], list)):
        raise ImapParseError("FETCH response is not 'n FETCH (...)'")
    pairs = values[2]
    if len(pairs) % 2:
        raise ImapParseError("FETCH items are not name/value pairs")
    fetched = FetchData(seq=_int(values[0], "message number"), items={})
    for name, value in zip(pairs[::2], pairs[1::2], strict=True):
        if not isinstance(name, Atom):
            raise ImapParseError("FETCH item name is not an atom")
        key = memo.keys.get(name)
        if key is None:
            key = memo.keys[name] = " ".join(name.upper().split())
        fetched.items[key] = value
        if key == "UID":
            fetched.uid = _int(value, "UID")
        elif key == "FLAGS":
            fetched.flags = _flags(value, memo)
        elif key == "RFC822.SIZE":
            fetched.size = _int(value, "RFC822.SIZE")
        elif key == "INTERNALDATE":
            fetched.internaldate = _internaldate(_text(value) or "")
        elif key == "ENVELOPE":
            fetched.envelope = _envelope(value, memo)
        elif key in ("BODYSTRUCTURE", "BODY") and isinstance(value, list):
            fetched.bodystructure = _bodystructure(value, memo)
        elif _SECTION.match(key):
            if isinstance(value, list):
                raise ImapParseError("message data is a list")
            fetched.sections[key] = value.encode("utf-8") if isinstance(value, Atom) else value
    return fetched


def _flags(value: Value, memo: _Memo) -> tuple[str, ...]:
    flags = _list(value, "FLAGS")
    key = tuple(flags)
    try:
        return memo.flags[key]
    except KeyError:
        names = memo.flags[key] = tuple(_text(f) or "" for f in flags)
    except TypeError:   # a list among them: unhashable, and refused by _text
        return tuple(_text(f) or "" for f in flags)
    return names


# ---- ENVELOPE and BODYSTRUCTURE ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Envelope:
    date: datetime | None
    subject: str
    from_: list[Address]
    sender: list[Address]
    reply_to: list[Address]
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    in_reply_to: str | None
    message_id: str | None


def _envelope(value: Value, memo: _Memo) -> Envelope:
    fields = _list(value, "ENVELOPE")
    if len(fields) < 10:
        raise ImapParseError("ENVELOPE has fewer than 10 fields")
    addresses = [_addresses(f, memo) for f in fields[2:8]]
    return Envelope(date=parse_date(_text(fields[0])),
                    subject=decode_rfc2047(_text(fields[1]) or ""),
                    from_=addresses[0], sender=addresses[1], reply_to=addresses[2],
                    to=addresses[3], cc=addresses[4], bcc=addresses[5],
                    in_reply_to=_msgid(fields[8]), message_id=_msgid(fields[9]))


def _msgid(value: Value) -> str | None:
    return clean_text(_text(value) or "") or None


def _addresses(value: Value, memo: _Memo) -> list[Address]:
    out: list[Address] = []
    if value is None:
        return out
    for item in _list(value, "address list"):
        if not isinstance(item, list) or len(item) < 4:
            _list(item, "address")   # raises for what is not a list
            raise ImapParseError("address has fewer than 4 fields")
        key = tuple(item[:4])
        try:
            address = memo.addresses[key]
        except KeyError:
            address = memo.addresses[key] = _address(key)
        except TypeError:   # a list among the fields: unhashable, and refused by _text
            address = _address(key)
        if address is not None:
            out.append(address)
    return out


def _address(parts: tuple[Value, ...]) -> Address | None:
    name, _adl, mailbox, host = (_text(p) for p in parts)
    if mailbox is None or host is None:   # RFC 3501 group syntax markers
        return None
    email = "".join(clean_text(f"{mailbox}@{host}").split())
    return Address(decode_rfc2047(name or ""), email)


@dataclass(slots=True)
class BodyPart:
    part_id: str          # "1", "1.2"; "" for a multipart message's root; "2.TEXT" inside
    type: str             # lower-case: "text", "multipart", ...
    subtype: str
    params: dict[str, str] = field(default_factory=dict)
    id: str | None = None
    description: str | None = None
    encoding: str | None = None
    size: int = 0
    lines: int | None = None
    disposition: str | None = None
    disposition_params: dict[str, str] = field(default_factory=dict)
    filename: str | None = None          # decoded, not yet made safe: see headers.safe_filename
    envelope: Envelope | None = None     # of an attached message/rfc822
    children: list[BodyPart] = field(default_factory=list)

    @property
    def content_type(self) -> str:
        return f"{self.type}/{self.subtype}"

    @property
    def is_attachment(self) -> bool:
        if self.type == "multipart":
            return False
        if self.disposition == "attachment" or self.type == "message":
            return True
        if self.filename:
            return not (self.disposition == "inline" and self.id)   # a cid: inline image
        return self.type in ("application", "audio", "video")

    @property
    def has_attachments(self) -> bool:
        return any(part.is_attachment for part in self.walk())

    def walk(self) -> Iterator[BodyPart]:
        stack = [self]
        while stack:
            part = stack.pop()
            yield part
            stack.extend(reversed(part.children))

    def find(self, part_id: str) -> BodyPart | None:
        return next((p for p in self.walk() if p.part_id == part_id), None)


def parse_bodystructure(value: Value) -> BodyPart:
    return _bodystructure(value, _Memo())


def _bodystructure(value: Value, memo: _Memo) -> BodyPart:
    parts = _list(value, "BODYSTRUCTURE")
    top_id = "" if parts and isinstance(parts[0], list) else "1"
    return _body(parts, top_id, top_id, memo)


def _body(parts: list[Value], part_id: str, prefix: str, memo: _Memo) -> BodyPart:
    if not parts:
        raise ImapParseError("empty body structure")
    if isinstance(parts[0], list):
        count = len(parts)
        for i, part in enumerate(parts):
            if not isinstance(part, list):
                count = i
                break
        children = []
        for n, child in enumerate(parts[:count], 1):
            child_id = f"{prefix}.{n}" if prefix else str(n)
            children.append(_body(_list(child, "body part"), child_id, child_id, memo))
        ext = parts[count + 1:]
        node = BodyPart(part_id, "multipart", (_lower(parts[count], memo) or "mixed")
                        if count < len(parts) else "mixed", children=children)
        node.params = _params(ext[0], memo) if ext else {}
        _disposition(node, ext[1] if len(ext) > 1 else None, memo)
        return node
    if len(parts) < 7:
        raise ImapParseError("body part has fewer than 7 fields")
    node = BodyPart(part_id, _lower(parts[0], memo), _lower(parts[1], memo),
                    params=_params(parts[2], memo), id=_text(parts[3]), description=_text(parts[4]),
                    encoding=_lower(parts[5], memo) or None, size=_opt_int(parts[6]) or 0)
    index = 7
    if node.type == "text":
        node.lines, index = _opt_int(parts[7]) if len(parts) > 7 else None, 8
    elif node.content_type in ("message/rfc822", "message/global") and len(parts) >= 10:
        node.envelope = _envelope(parts[7], memo)
        inner = _list(parts[8], "encapsulated body")
        multipart = bool(inner) and isinstance(inner[0], list)
        node.children = [_body(inner, f"{part_id}.TEXT" if multipart else f"{part_id}.1",
                               part_id, memo)]
        node.lines, index = _opt_int(parts[9]), 10
    _disposition(node, parts[index + 1] if len(parts) > index + 1 else None, memo)
    return node


def _lower(value: Value, memo: _Memo) -> str:
    """(_text(value) or "").lower(), worked out once per page for each string."""
    if type(value) is not bytes:
        return (_text(value) or "").lower()
    text = memo.lower.get(value)
    if text is None:
        text = memo.lower[value] = (_text(value) or "").lower()
    return text


def _params(value: Value, memo: _Memo) -> dict[str, str]:
    items = _list(value, "body parameters")
    if len(items) % 2:
        raise ImapParseError("body parameters are not name/value pairs")
    key = tuple(items)
    try:
        return dict(memo.params[key])
    except KeyError:
        params = memo.params[key] = _params_of(items)
    except TypeError:   # a list among them: unhashable, and refused by _text
        return _params_of(items)
    return dict(params)


def _params_of(items: list[Value]) -> dict[str, str]:
    pairs = [(_text(k) or "", _text(v) or "") for k, v in zip(items[::2], items[1::2], strict=True)]
    if any("*" in k for k, _ in pairs):
        return decode_rfc2231_params(pairs)
    plain: dict[str, str] = {}   # what decode_rfc2231_params makes of keys without "*"
    for k, v in pairs:
        plain.setdefault(k.strip().lower(), v)
    return plain


def _disposition(node: BodyPart, value: Value, memo: _Memo) -> None:
    if isinstance(value, list) and value:
        node.disposition = _lower(value[0], memo) or None
        node.disposition_params = _params(value[1], memo) if len(value) > 1 else {}
    elif isinstance(value, bytes | Atom):
        node.disposition = (_text(value) or "").lower() or None
    name = node.disposition_params.get("filename") or node.params.get("name")
    node.filename = decode_rfc2047(name) if name else None
