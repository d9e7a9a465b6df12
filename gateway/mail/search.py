"""IMAP search that works on Exchange Online: the search keys (quoting, dates, criteria) built
from what a member typed, and the matching of terms Exchange cannot search for.

Exchange Online refuses ``SEARCH CHARSET UTF-8`` with ``NO [BADCHARSET (US-ASCII)]``
(MailKit issues 16 and 808, angus-mail 145, go-imap 48, php-imap 184, node-imap 802), so
every search goes out as plain US-ASCII with no CHARSET. A term with other letters ("Siân",
"Llŷr") is searched on the server by its longest ASCII fragment that starts a word ("Si",
"Ll"), or, when it has none, over a bounded window of the newest messages; the candidates'
envelopes are then fetched and only exact matches kept (case-insensitive, NFKC-normalised)
on the decoded From name and address, To, or Subject.

Search keys are built here from validated values (quoted, control characters refused), so
nothing a member types can add an IMAP command.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from gateway.calendar.zones import form_date
from gateway.errors import BadRequest, MailError
from gateway.mail import mailbox
from gateway.mail.headers import Address
from gateway.mail.imap import ImapConn
from gateway.mail.imap_fetch import Envelope

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
MAX_HITS_PER_FOLDER = 200
# Non-ASCII terms: how many server hits have their envelopes checked, and how many of the
# newest messages are looked at when a term has no ASCII fragment to search on.
MAX_CANDIDATES = 1000
WINDOW = 1000
MIN_FRAGMENT = 2
_FRAGMENT = re.compile(r"(?:^|(?<=\s))[\x21-\x7e]+")


def refuse_controls(value: str) -> None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise BadRequest("Search text cannot contain control characters.")


def quote(value: str) -> str:
    """An IMAP quoted string of ASCII ``value``."""
    refuse_controls(value)
    if not value.isascii():
        raise ValueError("only ASCII goes into a search key (Exchange takes US-ASCII only)")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def imap_date(d: date) -> str:
    return f"{d.day}-{MONTHS[d.month - 1]}-{d.year}"


def normalise(text: str) -> str:
    """For comparing: compatibility-normalised and case-folded ("ŷ" typed as y + combining
    circumflex equals the precomposed letter; "SIÂN" equals "siân")."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def ascii_fragment(term: str) -> str | None:
    """The longest run of ASCII letters that starts a word of ``term``: "Siân" gives "Si",
    "Pont Llŷr" gives "Pont". A word's start, because a server matching by word prefix finds
    it as surely as one matching any substring. Exchange searches its content index by word
    prefix: Microsoft's search-operator reference for Exchange says only prefix matches are
    supported, not suffix or substring ones (OfficeDocs-Exchange,
    message-properties-and-search-operators.md; pull requests 491 and 2641), and client
    maintainers see IMAP SEARCH answered from a word index (MailKit issues 1043 and 1787).
    Dovecot matches any substring, a superset, so the dev stack finds what Exchange finds.
    None when no run is long enough to narrow a search."""
    runs = _FRAGMENT.findall(unicodedata.normalize("NFC", term))
    best = max(runs, key=len, default="")
    return best if len(best) >= MIN_FRAGMENT else None


@dataclass(frozen=True)
class Check:
    """An exact match the server could not make: ``field`` is "from", "to", "subject" or
    "text" (from or subject, for the free-text box)."""
    field: str
    needle: str

    def matches(self, env: Envelope) -> bool:
        def people(addresses: Sequence[Address]) -> list[str]:
            return [f"{a.name} {a.email}" for a in addresses]
        haystacks = {"from": people(env.from_), "to": people(env.to),
                     "subject": [env.subject],
                     "text": [*people(env.from_), env.subject]}[self.field]
        return any(self.needle in normalise(h) for h in haystacks)


@dataclass(frozen=True)
class Plan:
    """What to ask the server (ASCII keys only) and what to check on the answers."""
    criteria: list[str]
    checks: list[Check] = field(default_factory=list)
    window: bool = False


@dataclass(frozen=True)
class Query:
    q: str = ""
    sender: str = ""
    to: str = ""
    subject: str = ""
    body: str = ""
    since: date | None = None
    before: date | None = None
    unread: bool = False

    def plan(self) -> Plan:
        keys: list[str] = []
        checks: list[Check] = []
        window = False

        def term(value: str, check_field: str) -> str | None:
            """The ASCII text to send for ``value`` (None: send nothing, look at the window)."""
            nonlocal window
            refuse_controls(value)
            if value.isascii():
                return value
            checks.append(Check(check_field, normalise(value)))
            fragment = ascii_fragment(value)
            if fragment is None:
                window = True
            return fragment

        if self.q:
            text = term(self.q, "text")
            if text is not None and self.q.isascii():
                # Free text: sender, subject or body, as Outlook's search box does.
                keys += ["OR", "OR", "FROM", quote(text), "SUBJECT", quote(text),
                         "BODY", quote(text)]
            elif text is not None:
                # Not the body: only headers can be checked for the exact term.
                keys += ["OR", "FROM", quote(text), "SUBJECT", quote(text)]
        for key, value, check_field in (("FROM", self.sender, "from"), ("TO", self.to, "to"),
                                        ("SUBJECT", self.subject, "subject")):
            if value:
                text = term(value, check_field)
                if text is not None:
                    keys += [key, quote(text)]
        if self.body:
            # The body cannot be checked from the envelope: a non-ASCII body term is searched
            # on its ASCII fragment only (a wider net, never a narrower one).
            fragment = self.body if self.body.isascii() else ascii_fragment(self.body)
            refuse_controls(self.body)
            if fragment is not None:
                keys += ["BODY", quote(fragment)]
        if self.since:
            keys += ["SINCE", imap_date(self.since)]
        if self.before:
            keys += ["BEFORE", imap_date(self.before)]
        if self.unread:
            keys.append("UNSEEN")
        return Plan(keys or ["ALL"], checks, window)

    def criteria(self) -> list[str]:
        return self.plan().criteria

    @property
    def empty(self) -> bool:
        return not (self.q or self.sender or self.to or self.subject or self.body
                    or self.since or self.before or self.unread)


def _date(value: str, name: str) -> date | None:
    if not value:
        return None
    d = form_date(value)
    if d is None:
        raise BadRequest(f"The {name} date is not a date (use the date picker).")
    return d


def parse_query(params: dict[str, str]) -> Query:
    def text(k: str) -> str:
        return params.get(k, "").strip()[:200]
    return Query(q=text("q"), sender=text("from"), to=text("to"), subject=text("subject"),
                 body=text("body"), since=_date(text("since"), "from"),
                 before=_date(text("before"), "to"), unread=params.get("unread") == "1")


async def search_folder(conn: ImapConn, folder: str, query: Query,
                        limit: int = MAX_HITS_PER_FOLDER) -> list[int]:
    """UIDs in ``folder`` matching ``query``, newest first, at most ``limit``."""
    plan = query.plan()
    criteria = plan.criteria
    if plan.window:
        await conn.select(mailbox.mailbox_arg(folder), readonly=True)
        if conn.exists == 0:
            return []
        # Sequence numbers follow arrival: the newest WINDOW messages.
        criteria = [f"{max(1, conn.exists - WINDOW + 1)}:*",
                    *(c for c in criteria if c != "ALL")]
    uids = await mailbox.search_uids(conn, folder, criteria)
    if not plan.checks:
        return uids[:limit]
    candidates = uids[:MAX_CANDIDATES]
    envelopes = await mailbox.fetch_envelopes(conn, folder, candidates)
    hits = [u for u in candidates
            if (env := envelopes.get(u)) is not None and all(c.matches(env) for c in plan.checks)]
    return hits[:limit]


async def find_message_id(conn: ImapConn, folder: str, message_id: str) -> bool:
    """Whether ``folder`` holds a message with this Message-ID: ``UID SEARCH HEADER
    Message-ID`` in plain US-ASCII, which Exchange runs (a Message-ID is ASCII by RFC 5322).
    Raises MailError when the server cannot say."""
    if not message_id.isascii() or any(ord(c) < 0x21 or ord(c) == 0x7F for c in message_id):
        raise MailError("That Message-ID cannot be searched for.")
    return bool(await mailbox.search_uids(conn, folder,
                                          ["HEADER", "Message-ID", quote(message_id)]))
