"""What the server says about mailboxes, typed: LIST / LSUB / XLIST (``MailboxInfo``: name,
delimiter, flags and special use), STATUS (``MailboxStatus``: counts), SELECT / EXAMINE
(``SelectInfo``: count, UIDVALIDITY, flags), the message numbers of SEARCH / SORT and the
destination UIDs of a COPYUID code (UIDPLUS, RFC 4315).

The responses come as aioimaplib hands them over and are rejoined and tokenized by
``gateway.mail.imap_tokens``; FETCH is ``gateway.mail.imap_fetch``. Anything malformed
raises ImapParseError and nothing else, because the input is whatever the server (or
someone between it and us) sends.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.mail.headers import decode_bytes
from gateway.mail.imap_tokens import (
    Atom,
    ImapParseError,
    Lines,
    Value,
    _int,
    _list,
    _strip,
    _text,
    parse_values,
    split_responses,
)
from gateway.mail.utf7 import Utf7Error, decode_mailbox

# ---- LIST and STATUS --------------------------------------------------------------------

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


# ---- SEARCH and SELECT ------------------------------------------------------------------

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
            try:
                values = _list(parse_values(flags.group(1))[0], "FLAGS")
            except ImapParseError:
                continue      # the flags are for information; the counts are what matter
            names = tuple(_text(v) or "" for v in values)
            if b"PERMANENT" in item[:20].upper():
                info.permanent_flags = names
            else:
                info.flags = names
        if b"[READ-ONLY]" in item.upper():
            info.read_only = True
    return info


# ---- UIDPLUS ------------------------------------------------------------------------------

def copyuid(lines: Sequence[object], limit: int = 1000) -> list[int]:
    """The destination UIDs of a ``[COPYUID validity source-set dest-set]`` code."""
    for line in lines:
        if not isinstance(line, bytes) or b"[COPYUID " not in line:
            continue
        words = line.split(b"[COPYUID ", 1)[1].split(b"]", 1)[0].split()
        if len(words) != 3:
            return []
        out: list[int] = []
        try:
            for piece in words[2].split(b","):
                lo, _, hi = piece.partition(b":")
                first, last = int(lo), int(hi or lo)
                step = 1 if last >= first else -1
                out.extend(range(first, last + step, step))
                if len(out) > limit:
                    return []
        except ValueError:
            return []
        return out
    return []
