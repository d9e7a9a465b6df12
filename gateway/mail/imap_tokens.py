"""The IMAP value grammar (RFC 3501 section 9) as aioimaplib hands responses over: rejoin
its items into one response each (``split_responses``, literals put back in line), then
tokenize a response into atoms, strings, NIL and nested lists (``parse_values``), plus the
small readers of single values the response parsers share. ``gateway.mail.imap_fetch``
(FETCH) and ``gateway.mail.imap_mailboxes`` (LIST, STATUS, SEARCH, SELECT) build typed
results from these values.

aioimaplib 2.0.3 does not parse: ``Response.lines`` is a list of lines with the leading "* "
removed (for FETCH, LIST, STATUS, SEARCH it also drops the keyword, except FETCH's
"n FETCH"), each literal as its own bytearray right after the line that announced it
("{42}"), the rest of that line as the next item, and the tagged completion text last.

Anything malformed raises ImapParseError and nothing else. Tokenizing is iterative, linear
in the input and bounded in nesting depth, because the input is whatever the server (or
someone between it and us) sends.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TypeAlias

from gateway.mail.headers import Address, decode_bytes

MAX_DEPTH = 100


class ImapParseError(ValueError):
    """The server's response could not be understood."""


class Atom(str):
    """An IMAP atom (number, flag, keyword, section spec) as distinct from a string."""


Value: TypeAlias = bytes | Atom | list["Value"] | None
Lines = Sequence[bytes | bytearray]

_LITERAL_AT_END = re.compile(rb"~?\{(\d{1,12})\+?\}\Z")
_LITERAL = re.compile(rb"~?\{(\d{1,12})\+?\}\r\n")
# The same, for searching: a pattern that starts with "{" is found at C speed, one with an
# optional "~" first is tried at every byte (7 µs against 0.5 µs over a message's summary);
# _inline_literals takes in a "~" before it (literal8, RFC 3516) itself.
_LITERAL_FIND = re.compile(rb"\{(\d{1,12})\+?\}\r\n")
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
    while (match := _LITERAL_FIND.search(data, pos)) is not None:
        start, end = match.span()
        if data[start - 1:start] == b"~" and start > pos:
            start -= 1
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
    only atoms, spaces and parentheses (no control character or literal: those
    _inline_literals took out are put back from `literals`), and [section] specs only
    where they hold no space, parenthesis, quote or bracket ("BODY[1]<0>", which splits
    as one atom, as _parse_general reads it). None for anything else, which
    _parse_general then reads."""
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


# What _parse_plain refuses: a control character, a brace, or a "[" that does not open a
# [section] spec splitting as part of one atom, that is one with a space, control,
# parenthesis, quote, brace or bracket before its "]" or no "]" (there _parse_general finds
# the "]" instead). The character class comes first, so the scan runs at C speed; the
# lookbehind then lets a "[" through where a simple spec follows it.
_NOT_PLAIN = re.compile(rb'[\x00-\x1f\x7f{\[](?<!\[(?=[^\x00-\x20\x7f()"{\[\]]*\]))')


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


_MONTHS = {m: i for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_INTERNALDATE = re.compile(
    r" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})")


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
