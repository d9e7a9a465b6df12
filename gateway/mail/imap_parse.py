"""Parsing of IMAP server responses (RFC 3501) as aioimaplib hands them over.

aioimaplib 2.0.3 does not parse: `Response.lines` is a list of lines with the leading "* "
removed (for FETCH, LIST, STATUS, SEARCH it also drops the keyword, except FETCH's
"n FETCH"), each literal as its own bytearray right after the line that announced it
("{42}"), the rest of that line as the next item, and the tagged completion text last.
`split_responses` puts literals back in line; `parse_values` tokenizes one response into
atoms, strings, NIL and nested lists; the parse_* functions build typed results.

Anything malformed raises ImapParseError and nothing else. Parsing is iterative, linear
in the input and bounded in nesting depth, because the input is whatever the server (or
someone between it and us) sends.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TypeAlias

from gateway.mail.mime import (
    Address,
    clean_text,
    decode_bytes,
    decode_rfc2047,
    decode_rfc2231_params,
    parse_date,
)
from gateway.mail.utf7 import Utf7Error, decode_mailbox

MAX_DEPTH = 100


class ImapParseError(ValueError):
    """The server's response could not be understood."""


class Atom(str):
    """An IMAP atom (number, flag, keyword, section spec) as distinct from a string."""


Value: TypeAlias = bytes | Atom | list["Value"] | None
Lines = Sequence[bytes | bytearray]

_LITERAL_AT_END = re.compile(rb"~?\{(\d{1,12})\+?\}\Z")
_LITERAL = re.compile(rb"~?\{(\d{1,12})\+?\}\r\n")
_ATOM_RUN = re.compile(rb'[^\x00-\x20\x7f()"{\[]*')
_QUOTED_RUN = re.compile(rb'[^"\\\r\n]*')
_CTL = re.compile(rb"[\x00-\x1f\x7f]")


def split_responses(lines: Lines, *, tail: bool = True) -> list[bytes]:
    """Rejoin aioimaplib's items into one bytes string per response, literals inline as
    {n}CRLF<data>. With tail=True the last item (the tagged completion text) is dropped."""
    items = list(lines)[:-1] if tail else list(lines)
    responses: list[bytes] = []
    current: list[bytes | bytearray] | None = None   # the pieces of the response so far
    expect: int | None = None
    after_literal = False
    for item in items:
        if not isinstance(item, bytes | bytearray):
            raise ImapParseError("response item is not bytes")
        if expect is not None:
            if len(item) != expect or current is None:
                raise ImapParseError("literal size does not match its announcement")
            current += (b"\r\n", item)
            expect, after_literal = None, True
            continue
        # After a literal the line goes on (" FLAGS ...", ")"); aioimaplib drops an empty
        # remainder, so anything else is the next response.
        if current is not None and after_literal and item[:1] in (b" ", b")"):
            current.append(item)
        else:
            if current is not None:
                responses.append(b"".join(current))
            current = [item]
        after_literal = False
        expect = None
        if item.endswith(b"}"):   # digits hold no "{": the last one is the literal's
            brace = item.rfind(b"{")
            match = _LITERAL_AT_END.match(item, brace) if brace >= 0 else None
            expect = int(match.group(1)) if match else None
    if expect is not None:
        raise ImapParseError("response ends where a literal was announced")
    if current is not None:
        responses.append(b"".join(current))
    return responses


class _Memo:
    """What one parse_fetch call has already worked out, since a page of messages repeats
    itself: atoms (NIL, item names, flags) decoded once; FETCH item names and FLAGS lists
    read once; body types, subtypes and encodings lower-cased once; body parameters
    (("charset" "utf-8")) and addresses (the same sender in From, Sender and Reply-To of
    message after message) built once. It lives for one call only, so it is never larger
    than the response. Atom, Address and tuples are immutable and shared; parameter dicts
    are handed out as copies."""

    __slots__ = ("addresses", "atoms", "flags", "keys", "lower", "params")

    def __init__(self) -> None:
        self.atoms: dict[bytes, Atom] = {}
        self.keys: dict[str, str] = {}
        self.lower: dict[bytes, str] = {}
        self.flags: dict[tuple[Value, ...], tuple[str, ...]] = {}
        self.params: dict[tuple[Value, ...], dict[str, str]] = {}
        self.addresses: dict[tuple[Value, ...], Address | None] = {}


def parse_values(data: bytes) -> list[Value]:
    """Tokenize one response: atoms, quoted strings, literals, NIL and nested lists."""
    return _parse_values(data, _Memo())


def _parse_values(data: bytes, memo: _Memo) -> list[Value]:
    values = None
    if type(data) is bytes:
        if b"{" not in data:
            values = _parse_plain(data, {}, memo)
        elif (inlined := _inline_literals(data)) is not None:
            values = _parse_plain(*inlined, memo)
    return _parse_general(data, memo) if values is None else values


def _inline_literals(data: bytes) -> tuple[bytes, dict[int, bytes]] | None:
    """The response with each literal replaced by an empty quoted string, and the literals'
    contents by the index of the string that stands in for them: for _parse_plain, which
    puts them back. None unless each literal starts a token outside any string (after a
    space, parenthesis or string, with an even number of quotes before it: _parse_plain
    refuses escaped quotes) and is complete, as _parse_general would read it."""
    out: list[bytes] = []
    literals: dict[int, bytes] = {}
    pos = quotes = 0
    while (match := _LITERAL.search(data, pos)) is not None:
        start, end = match.span()
        head = data[pos:start]
        quotes += head.count(b'"')
        size = int(match.group(1))
        if (quotes % 2 or data[start - 1:start] not in (b"", b" ", b"(", b")", b'"')
                or end + size > len(data)):
            return None
        literals[quotes // 2 + len(literals)] = data[end:end + size]
        out += (head, b'""')
        pos = end + size
    out.append(data[pos:])
    return b"".join(out), literals


def _parse_plain(data: bytes, literals: dict[int, bytes], memo: _Memo) -> list[Value] | None:
    """The common case, with C-speed splitting: strings without escapes, and outside them
    only atoms, spaces and parentheses (no control character, [section] or literal: those
    _inline_literals took out are put back from `literals`). None for anything else,
    which _parse_general then reads."""
    parts = data.split(b'"')
    if not len(parts) & 1:   # an unterminated string
        return None
    strings = parts[1::2]
    inside = b"".join(strings)
    if b"\\" in inside or b"\r" in inside or b"\n" in inside:
        return None
    for index, content in literals.items():
        if index >= len(strings) or strings[index]:   # cannot happen: _inline_literals
            return None
        strings[index] = content
    # Outside strings, with a lone '"' token where each string was: atoms are what lies
    # between spaces and parentheses (bytes.split() splits at ASCII whitespace only, and
    # its other kinds are controls, refused here).
    outside = b' " '.join(parts[0::2])
    if _NOT_PLAIN.search(outside):
        return None
    tokens = outside.replace(b"(", b" ( ").replace(b")", b" ) ").split()
    top: list[Value] = []
    stack = [top]
    append = top.append
    atoms = memo.atoms
    string_index = 0
    depth = 0   # len(stack) - 1
    for token in tokens:
        if token == b'"':
            append(strings[string_index])
            string_index += 1
        elif token == b"NIL":
            append(None)
        elif token == b"(":
            if depth == MAX_DEPTH:
                raise ImapParseError("lists nested too deeply")
            depth += 1
            inner: list[Value] = []
            append(inner)
            stack.append(inner)
            append = inner.append
        elif token == b")":
            if not depth:
                raise ImapParseError("unbalanced ')'")
            depth -= 1
            stack.pop()
            append = stack[-1].append
        else:
            atom = atoms.get(token)
            if atom is None:
                atom = _atom_value(token)
                if atom is not None:
                    atoms[token] = atom
            append(atom)
    if depth:
        raise ImapParseError("response ends inside a list")
    return top


_NOT_PLAIN = re.compile(rb"[\x00-\x1f\x7f{\[]")


def _parse_general(data: bytes, memo: _Memo) -> list[Value]:
    """Any response, token by token with one compiled regex. The tokens it does not take
    (literals, strings with escapes, [section] atoms) and every malformed one go through
    _token, which raises for anything malformed. _T_OTHER matches any byte, so finditer
    never skips input: each match starts where the previous one ended."""
    top: list[Value] = []
    stack = [top]
    append = top.append
    plain = type(data) is bytes
    atoms = memo.atoms
    pos = 0
    while True:
        for match in _TOKEN.finditer(data, pos):
            kind = match.lastindex
            if kind == _T_STRING:
                append(match.group(_T_STRING) if plain else bytes(match.group(_T_STRING)))
            elif kind == _T_ATOM:
                raw = match.group(_T_ATOM)
                atom = atoms.get(raw)
                if atom is None:
                    atom = _atom_value(raw)
                    if atom is not None:
                        atoms[raw] = atom
                append(atom)
            elif kind == _T_OPEN:
                if len(stack) > MAX_DEPTH:
                    raise ImapParseError("lists nested too deeply")
                inner: list[Value] = []
                append(inner)
                stack.append(inner)
                append = inner.append
            elif kind == _T_CLOSE:
                if len(stack) == 1:
                    raise ImapParseError("unbalanced ')'")
                stack.pop()
                append = stack[-1].append
            elif kind == _T_END:
                if len(stack) != 1:
                    raise ImapParseError("response ends inside a list")
                return top
            else:   # _T_OTHER
                pos = _token(data, match.start(_T_OTHER), stack)
                append = stack[-1].append
                break


def _atom_value(raw: bytes) -> Atom | None:
    text = raw.decode("utf-8", errors="replace")
    # upper() never shortens a string, so only three characters can make "NIL"
    return None if len(text) <= 3 and text.upper() == "NIL" else Atom(text)


# Token kinds, by capturing group; leading spaces are skipped, and quantifiers are
# possessive (no backtracking). _T_ATOM is a plain run of atom characters (NIL included);
# one that goes on with a [section] spec, BODY[HEADER.FIELDS (FROM)], or any other odd
# token is _T_OTHER, for _token.
_T_STRING, _T_OPEN, _T_CLOSE, _T_ATOM, _T_END, _T_OTHER = range(1, 7)
_TOKEN = re.compile(
    rb' *+(?:"([^"\\\r\n]*+)"'
    rb"|(\()"
    rb"|(\))"
    rb'|((?!~\{)[^\x00-\x20\x7f()"{\[]++)(?!\[)'
    rb"|(\Z)"
    rb"|(.))", re.DOTALL)


def _token(data: bytes, pos: int, stack: list[list[Value]]) -> int:
    """One token the fast path did not take, at pos (not a space): returns the new pos."""
    end = len(data)
    char = data[pos]
    if char == 0x22:  # "
        text, pos = _quoted(data, pos + 1)
        stack[-1].append(text)
    elif char == 0x7B or (char == 0x7E and data[pos + 1:pos + 2] == b"{"):
        match = _LITERAL.match(data, pos)
        if match is None:
            raise ImapParseError("malformed literal")
        start = match.end()
        size = int(match.group(1))
        if start + size > end:
            raise ImapParseError("literal runs past the end of the response")
        stack[-1].append(data[start:start + size])
        pos = start + size
    elif char < 0x20 or char == 0x7F:
        raise ImapParseError("control character in response")
    else:
        atom, pos = _atom(data, pos)
        stack[-1].append(None if atom.upper() == "NIL" else atom)
    return pos


def _run(pattern: re.Pattern[bytes], data: bytes, pos: int) -> int:
    match = pattern.match(data, pos)   # the patterns match the empty string: never None
    return match.end() if match else pos


def _quoted(data: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    while True:
        start, pos = pos, _run(_QUOTED_RUN, data, pos)
        out += data[start:pos]
        if pos >= len(data) or data[pos] in (0x0D, 0x0A):
            raise ImapParseError("unterminated quoted string")
        if data[pos] == 0x22:
            return bytes(out), pos + 1
        if pos + 1 >= len(data) or data[pos + 1] in (0x0D, 0x0A):   # backslash
            raise ImapParseError("bad escape in quoted string")
        out.append(data[pos + 1])
        pos += 2


def _atom(data: bytes, pos: int) -> tuple[Atom, int]:
    start = pos
    while True:
        pos = _run(_ATOM_RUN, data, pos)
        if pos < len(data) and data[pos] == 0x5B:
            # A section spec, BODY[HEADER.FIELDS (FROM TO)]<0>, holds spaces and parens.
            close = data.find(b"]", pos)
            if close < 0 or _CTL.search(data, pos, close):
                raise ImapParseError("unterminated '[' in atom")
            pos = close + 1
            continue
        break
    if pos == start:
        raise ImapParseError("empty atom")
    return Atom(data[start:pos].decode("utf-8", errors="replace")), pos


def _strip(values: list[Value], *keywords: str) -> list[Value]:
    """Drop a leading "*" and keyword, present or not (aioimaplib removes some)."""
    if values and values[0] == "*" and isinstance(values[0], Atom):
        values = values[1:]
    if values and isinstance(values[0], Atom) and values[0].upper() in keywords:
        values = values[1:]
    return values


def _int(value: Value, what: str) -> int:
    if isinstance(value, Atom) and value.isdigit() and value.isascii() and len(value) <= 20:
        return int(value)
    raise ImapParseError(f"{what} is not a number")


def _opt_int(value: Value) -> int | None:
    if isinstance(value, Atom) and value.isdigit() and value.isascii() and len(value) <= 20:
        return int(value)
    return None


def _text(value: Value) -> str | None:
    if type(value) is bytes:   # the common case, as decode_bytes(value, "utf-8") has it
        try:
            return value.decode()
        except UnicodeDecodeError:
            return decode_bytes(value, "utf-8")
    if value is None:
        return None
    if isinstance(value, Atom):
        return str(value)
    if isinstance(value, bytes):
        return decode_bytes(value, "utf-8")
    raise ImapParseError("expected a string, found a list")


def _list(value: Value, what: str) -> list[Value]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ImapParseError(f"{what} is not a list")
    return value


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
_MONTHS = {m: i for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_INTERNALDATE = re.compile(
    r" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})")


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


def _internaldate(text: str) -> datetime | None:
    match = _INTERNALDATE.fullmatch(text)
    if match is None or match.group(2).lower() not in _MONTHS:
        return None
    day, month, year, hour, minute, second, sign, tzh, tzm = match.groups()
    try:   # both the date and the zone (+9999) can be out of range
        zone = _ZONES.get(sign + tzh + tzm)
        if zone is None:
            offset = timedelta(hours=int(tzh), minutes=int(tzm)) * (-1 if sign == "-" else 1)
            zone = timezone(offset)
            if len(_ZONES) < 512:
                _ZONES[sign + tzh + tzm] = zone
        return datetime(int(year), _MONTHS[month.lower()], int(day), int(hour), int(minute),
                        int(second), tzinfo=zone)
    except ValueError:
        return None


_ZONES: dict[str, timezone] = {}   # "+0100" -> its zone; few exist, bounded all the same


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


def parse_envelope(value: Value) -> Envelope:
    return _envelope(value, _Memo())


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
    filename: str | None = None          # decoded, not yet made safe: see mime.safe_filename
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


# ---- LIST, STATUS, SEARCH, ESEARCH, CAPABILITY ------------------------------------------

SPECIAL_USE = frozenset({"\\all", "\\archive", "\\drafts", "\\flagged", "\\junk", "\\sent",
                         "\\trash", "\\important"})


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    name: str                  # for display: modified UTF-7 decoded
    raw_name: bytes            # as the server sent it: use this to address the mailbox
    delimiter: str | None
    flags: frozenset[str]      # lower-case: "\\noselect", "\\haschildren", "\\sent", ...

    @property
    def special_use(self) -> str | None:
        return next((f for f in sorted(self.flags) if f in SPECIAL_USE), None)

    @property
    def selectable(self) -> bool:
        return not self.flags & {"\\noselect", "\\nonexistent"}

    @property
    def has_children(self) -> bool:
        return "\\haschildren" in self.flags


def _mailbox_name(value: Value) -> tuple[str, bytes]:
    if not isinstance(value, bytes | Atom):
        raise ImapParseError("mailbox name is not a string")
    raw = value.encode("utf-8") if isinstance(value, Atom) else value
    try:
        return decode_mailbox(raw), raw
    except Utf7Error:   # some servers send UTF-8; show it rather than fail the folder list
        return decode_bytes(raw, "utf-8"), raw


def parse_list(lines: Lines, *, tail: bool = True) -> list[MailboxInfo]:
    """LIST / LSUB / XLIST responses; responses of another shape are skipped."""
    out = []
    for response in split_responses(lines, tail=tail):
        values = _strip(parse_values(response), "LIST", "LSUB", "XLIST")
        if len(values) < 3 or not isinstance(values[0], list):
            continue
        flags = frozenset((_text(f) or "").lower() for f in values[0])
        name, raw = _mailbox_name(values[2])
        out.append(MailboxInfo(name, raw, _text(values[1]), flags))
    return out


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    name: str
    raw_name: bytes
    messages: int | None
    unseen: int | None
    uidnext: int | None
    uidvalidity: int | None
    recent: int | None


def parse_status(lines: Lines, *, tail: bool = True) -> list[MailboxStatus]:
    out = []
    for response in split_responses(lines, tail=tail):
        values = _strip(parse_values(response))
        if len(values) == 3 and isinstance(values[0], Atom) and values[0].upper() == "STATUS":
            values = values[1:]
        if len(values) != 2 or not isinstance(values[1], list):
            continue
        items = values[1]
        if len(items) % 2:
            raise ImapParseError("STATUS items are not name/value pairs")
        counts = {(_text(k) or "").upper(): _int(v, "STATUS count")
                  for k, v in zip(items[::2], items[1::2], strict=True)}
        name, raw = _mailbox_name(values[0])
        out.append(MailboxStatus(name, raw, counts.get("MESSAGES"), counts.get("UNSEEN"),
                                 counts.get("UIDNEXT"), counts.get("UIDVALIDITY"),
                                 counts.get("RECENT")))
    return out


def parse_search(lines: Lines, *, tail: bool = True) -> list[int]:
    """Numbers from SEARCH (or SORT) responses, in server order."""
    out: list[int] = []
    for response in split_responses(lines, tail=tail):
        values = parse_values(response)
        starred = bool(values) and values[0] == "*"
        values = _strip(values, "SEARCH", "SORT")
        if starred and len(values) == len(parse_values(response)) - 1:
            continue   # "* 3 EXISTS" and the like: not a search result
        if values and isinstance(values[-1], list):   # CONDSTORE's (MODSEQ n)
            values = values[:-1]
        out.extend(_int(v, "SEARCH result") for v in values)
    return out


@dataclass(frozen=True, slots=True)
class EsearchResult:
    tag: str | None
    uid: bool
    count: int | None = None
    min: int | None = None
    max: int | None = None
    all: tuple[tuple[int, int], ...] = ()    # inclusive ranges, as sent

    def numbers(self, limit: int = 100_000) -> list[int]:
        out: list[int] = []
        for low, high in self.all:
            out.extend(range(low, min(high, low + limit - len(out) - 1) + 1))
            if len(out) >= limit:
                break
        return out


def parse_esearch(lines: Lines, *, tail: bool = True) -> EsearchResult | None:
    for response in split_responses(lines, tail=tail):
        values = _strip(parse_values(response), "ESEARCH")
        tag = None
        correlator = values[0] if values else None
        if isinstance(correlator, list):
            values = values[1:]
            if len(correlator) == 2 and isinstance(correlator[0], Atom):
                tag = _text(correlator[1])
        uid = bool(values) and isinstance(values[0], Atom) and values[0].upper() == "UID"
        values = values[1:] if uid else values
        if len(values) % 2:
            raise ImapParseError("ESEARCH items are not name/value pairs")
        data = {(_text(k) or "").upper(): v for k, v in zip(values[::2], values[1::2], strict=True)}
        return EsearchResult(
            tag, uid, count=_int(data["COUNT"], "COUNT") if "COUNT" in data else None,
            min=_int(data["MIN"], "MIN") if "MIN" in data else None,
            max=_int(data["MAX"], "MAX") if "MAX" in data else None,
            all=_sequence_set(data["ALL"]) if "ALL" in data else ())
    return None


def _sequence_set(value: Value) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, Atom):
        raise ImapParseError("sequence set is not an atom")
    ranges = []
    for piece in value.split(","):
        low, _, high = piece.partition(":")
        a, b = _int(Atom(low), "sequence number"), _int(Atom(high or low), "sequence number")
        ranges.append((min(a, b), max(a, b)))
    return tuple(ranges)


_CAPABILITY = re.compile(rb"(?:^(?:\* )?|\[)CAPABILITY ([^\]\r\n]*)", re.IGNORECASE)
_CAP_TOKEN = re.compile(r"[!#-'*-Z^-~]+")   # atom characters, upper-cased


def parse_capability(lines: Lines, *, tail: bool = True) -> frozenset[str]:
    """Capabilities from CAPABILITY responses (with or without the keyword, which aioimaplib
    strips) and from [CAPABILITY ...] response codes, including the tagged text's, where a
    login answer carries them."""
    items = [bytes(item) for item in lines]
    caps: set[str] = set()
    for index, item in enumerate(items):
        found = [m.group(1) for m in _CAPABILITY.finditer(item)]
        if not found and not (tail and index == len(items) - 1) and b"[" not in item:
            found = [item]
        for text in found:
            words = text.decode("ascii", errors="replace").upper().split()
            caps.update(w for w in words if _CAP_TOKEN.fullmatch(w) and w not in ("*", "OK"))
    return frozenset(caps)


@dataclass(slots=True)
class SelectInfo:
    exists: int | None = None
    recent: int | None = None
    uidvalidity: int | None = None
    uidnext: int | None = None
    unseen: int | None = None        # the first unseen message's number, not a count
    flags: tuple[str, ...] = ()
    permanent_flags: tuple[str, ...] = ()
    read_only: bool = False


_SELECT_CODE = re.compile(rb"\[(UIDVALIDITY|UIDNEXT|UNSEEN) (\d{1,20})\]", re.IGNORECASE)
_SELECT_COUNT = re.compile(rb"(?:\* )?(\d{1,20}) (EXISTS|RECENT)\Z", re.IGNORECASE)
_SELECT_FLAGS = re.compile(rb"(?:\* )?(?:OK \[PERMANENT)?FLAGS (\([^()]*\))", re.IGNORECASE)


def parse_select(lines: Lines) -> SelectInfo:
    """What SELECT / EXAMINE said about the mailbox (all items, tagged text included)."""
    info = SelectInfo()
    for item in (bytes(i) for i in lines):
        if count := _SELECT_COUNT.match(item):
            setattr(info, count.group(2).decode().lower(), int(count.group(1)))
        for code, number in _SELECT_CODE.findall(item):
            setattr(info, code.decode().lower(), int(number))
        if flags := _SELECT_FLAGS.match(item):
            values = _list(parse_values(flags.group(1))[0], "FLAGS")
            names = tuple(_text(v) or "" for v in values)
            if b"PERMANENT" in item[:20].upper():
                info.permanent_flags = names
            else:
                info.flags = names
        if b"[READ-ONLY]" in item.upper():
            info.read_only = True
    return info
