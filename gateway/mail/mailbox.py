"""What the mail pages ask of a mailbox, as small functions that take a connection.

Owns the policy of reading Exchange over plain IMAP4rev1: folders (Exchange's names and
special uses, non-mail folders hidden), a page of a folder newest first by sequence number
(so its cost does not grow with the folder, and no SORT is needed), one message, flags,
moves, search and APPEND. Works with only what Exchange Online offers (no SORT, THREAD,
CONDSTORE or ESEARCH) and uses MOVE and UIDPLUS when offered.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from aioimaplib.aioimaplib import Command

from gateway.errors import MailError, NotFound, PayloadTooLarge
from gateway.mail.imap import ImapConn
from gateway.mail.imap_fetch import BodyPart, Envelope, FetchData, parse_fetch, parse_fetch_of
from gateway.mail.imap_mailboxes import copyuid, parse_list, parse_search
from gateway.mail.imap_tokens import ImapParseError
from gateway.mail.mime import clean_text
from gateway.mail.preview import ASKED_FIRST, line_of
from gateway.mail.preview import plan as preview_plan
from gateway.mail.utf7 import quote_mailbox

A = TypeVar("A")
B = TypeVar("B")

PER_PAGE = 50
# Message summaries kept per member (about three pages; gateway.mail.imap_pool._Slot):
# bounded, since a gateway holds them for each of up to a thousand members.
SUMMARY_CACHE = 150
SUMMARY_ITEMS = "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)"
# A page's summaries with the start of part 1, which is most messages' preview text
# (gateway.mail.preview.ASKED_FIRST): one round trip where there were two.
PAGE_ITEMS = f"{SUMMARY_ITEMS[:-1]} {ASKED_FIRST})"
# Exchange lists its non-mail folders over IMAP; members have no use for them here.
HIDDEN_TOP = {"calendar", "contacts", "tasks", "notes", "journal", "sync issues", "outbox",
              "conversation history", "rss feeds", "rss subscriptions", "suggested contacts",
              "yammer root", "files", "externalcontacts", "personmetadata", "social activity "
              "notifications", "conversation action settings", "quick step settings"}
SPECIAL_BY_FLAG = {"\\drafts": "drafts", "\\sent": "sent", "\\trash": "trash",
                   "\\junk": "junk", "\\archive": "archive"}
SPECIAL_BY_NAME = {"inbox": "inbox", "drafts": "drafts", "sent items": "sent",
                   "deleted items": "trash", "junk email": "junk", "archive": "archive"}
SPECIAL_ORDER = ["inbox", "drafts", "sent", "trash", "junk", "archive"]


@dataclass(frozen=True)
class Folder:
    name: str            # full Unicode path, e.g. "Committees/Planning"
    label: str           # last segment, for display
    depth: int
    special: str | None  # inbox | drafts | sent | trash | junk | archive
    total: int
    unseen: int
    selectable: bool


@dataclass(frozen=True)
class MessageSummary:
    uid: int
    subject: str
    sender: str
    sender_email: str
    date: datetime | None
    unread: bool
    flagged: bool
    answered: bool
    has_attachment: bool
    size: int
    preview: str = ""    # the first words of the text (gateway.mail.preview)
    # When it arrived (INTERNALDATE): the list's order, so its day headings go by this.
    received: datetime | None = None


@dataclass(frozen=True)
class Page:
    folder: str
    messages: list[MessageSummary]
    total: int
    page: int
    pages: int


def mailbox_arg(name: str) -> str:
    return quote_mailbox(name)


FOLDER_CACHE_SECONDS = 30.0


def _cached_folders(conn: ImapConn, counts: bool) -> list[Folder] | None:
    cached = conn.folder_cache     # (when, with counts, the folders)
    if cached and time.monotonic() - cached[0] < FOLDER_CACHE_SECONDS and (cached[1] or not counts):
        folders: list[Folder] = cached[2]
        return folders
    return None


async def list_folders(conn: ImapConn, counts: bool = True) -> list[Folder]:
    now = time.monotonic()
    if (folders := _cached_folders(conn, counts)) is None:
        folders = await _list_folders(conn, counts)
        conn.folder_cache = (now, counts, folders)
    return folders


async def _list_folders(conn: ImapConn, counts: bool) -> list[Folder]:
    # Straight to the protocol: aioimaplib's IMAP4.list only adds a wait_for (a task more,
    # which ``ok`` already bounds), and without it LIST is written in the same turn of the
    # loop as a SELECT started beside it (``folders_and_page``).
    resp = await conn.ok(conn.client.protocol.simple_command("LIST", '""', '"*"'),
                         "list your folders")
    try:
        infos = parse_list(resp.lines)
    except ImapParseError:
        raise MailError("The folder list from the mail server could not be read.") from None
    infos = [i for i in infos if i.name.split(i.delimiter or "/")[0].lower() not in HIDDEN_TOP]
    found = await conn.statuses([mailbox_arg(i.name) for i in infos if i.selectable]
                                if counts else [])
    folders: list[Folder] = []
    for info in infos:
        parts = info.name.split(info.delimiter or "/")
        special = SPECIAL_BY_NAME.get(info.name.lower()) if len(parts) == 1 else None
        special = next((v for k, v in SPECIAL_BY_FLAG.items() if k in info.flags), special)
        if info.name.upper() == "INBOX":
            special = "inbox"
        st = found.get("INBOX" if special == "inbox" else info.name) if info.selectable else None
        total, unseen = (st.messages or 0, st.unseen or 0) if st else (0, 0)
        folders.append(Folder(name="INBOX" if special == "inbox" else info.name,
                              label="Inbox" if special == "inbox" else parts[-1],
                              depth=len(parts) - 1, special=special, total=total,
                              unseen=unseen, selectable=info.selectable))

    def order(f: Folder) -> tuple[int, str]:
        rank = SPECIAL_ORDER.index(f.special) if f.special in SPECIAL_ORDER else len(SPECIAL_ORDER)
        return (rank if f.depth == 0 or f.special else len(SPECIAL_ORDER), f.name.lower())
    return sorted(folders, key=order)


def has_attachment(part: BodyPart | None) -> bool:
    if part is None:
        return False
    if part.children:
        return any(has_attachment(c) for c in part.children)
    if (part.disposition or "").lower() == "attachment":
        return True
    if part.filename and part.type not in ("text",):
        # Inline images referenced by cid: are not what members call attachments.
        return not (part.type == "image" and part.id)
    return part.type == "application" or (part.type, part.subtype) == ("message", "rfc822")


async def _previews(conn: ImapConn, items: list[FetchData]) -> dict[int, str]:
    """Preview lines of these messages (UID -> text), in the selected folder: from the part
    1 text that came with them (PAGE_ITEMS) where that is the part to preview, else a
    partial fetch of each one's text part (``BODY.PEEK[1.1]<0.512>``), never the whole
    message. One FETCH per distinct part and size (gateway.mail.preview.plan)."""
    out, fetches = preview_plan(items)
    for spec, wanted in fetches.items():
        parts = dict(wanted)
        prefix = spec.replace(".PEEK", "").split("<", 1)[0]
        for got in await _fetch(conn, ",".join(str(u) for u in parts), f"(UID {spec})",
                                by_uid=True):
            part = parts.get(got.uid or 0)
            if part is not None:
                out[got.uid or 0] = line_of(section([got], prefix), part)
    return out


def _summary(item: FetchData, preview: str = "") -> MessageSummary:
    if item.unreadable:
        return MessageSummary(
            uid=item.uid or 0, subject="(this message could not be read)",
            sender="(unknown sender)", sender_email="", date=None, unread=False,
            flagged=False, answered=False, has_attachment=False, size=0)
    env = item.envelope
    flags = {f.lower() for f in (item.flags or ())}
    sender = env.from_[0] if env and env.from_ else None
    return MessageSummary(
        uid=item.uid or 0,
        subject=clean_text(env.subject) if env and env.subject else "(no subject)",
        sender=(sender.name or sender.email) if sender else "(unknown sender)",
        sender_email=sender.email if sender else "",
        date=(env.date if env and env.date else item.internaldate),
        unread="\\seen" not in flags, flagged="\\flagged" in flags,
        answered="\\answered" in flags, has_attachment=has_attachment(item.bodystructure),
        size=item.size or 0, preview=preview, received=item.internaldate)


async def uid_fetch(conn: ImapConn, uid: int, items: str, what: str) -> list[FetchData]:
    """One UID FETCH, parsed; a reply we cannot read is a MailError naming ``what``."""
    resp = await conn.ok(conn.client.protocol.fetch(str(uid), items, by_uid=True,
                                                    timeout=conn.timeout), what)
    try:
        return parse_fetch(resp.lines)
    except ImapParseError:
        raise MailError("The mail server's answer could not be read.") from None


def section(items: list[FetchData], prefix: str) -> bytes | None:
    """The first returned body section whose name starts with ``prefix`` (e.g. BODY[2])."""
    for item in items:
        for key, value in item.sections.items():
            if key.startswith(prefix) and value is not None:
                return value
    return None


async def _fetch(conn: ImapConn, message_set: str, items: str, by_uid: bool
                 ) -> list[FetchData]:
    resp = await conn.ok(conn.client.protocol.fetch(message_set, items, by_uid=by_uid,
                                                    timeout=conn.timeout),
                         "list the messages")
    try:
        return parse_fetch_of(items, resp.lines)
    except ImapParseError:
        raise MailError("The message list from the mail server could not be read.") from None


async def fetch_page(conn: ImapConn, folder: str, page: int = 1,
                     per_page: int = PER_PAGE) -> Page:
    """Page ``page`` of a folder, newest first. Sequence numbers follow arrival order, so
    the newest are the highest: one FETCH of a fixed-size range, whatever the folder size."""
    await conn.select(mailbox_arg(folder), readonly=True)
    total = conn.exists
    pages = max(1, math.ceil(total / per_page))
    page = min(max(1, page), pages)
    hi = total - (page - 1) * per_page
    if hi < 1:
        return Page(folder, [], total, page, pages)
    lo = max(1, hi - per_page + 1)
    # Envelopes never change, flags do: ask for UID and FLAGS of the range, and fetch the
    # full summary only of messages this connection has not seen before.
    cache = conn.summaries
    key = (folder, conn.uidvalidity)
    if cache:
        light = await _fetch(conn, f"{lo}:{hi}", "(UID FLAGS)", by_uid=False)
        missing = [i.uid for i in light if i.uid and (key, i.uid) not in cache]
        items = (await _fetch(conn, ",".join(map(str, missing)), PAGE_ITEMS, by_uid=True)
                 if missing else [])
    else:
        # A new connection knows no message yet: the whole range in full at once, which
        # carries UID and FLAGS too, saves the cold page a round trip.
        light = items = await _fetch(conn, f"{lo}:{hi}", PAGE_ITEMS, by_uid=False)
    light.sort(key=lambda i: i.seq, reverse=True)
    if items:
        previews = await _previews(conn, items)
        for item in items:
            if item.uid:
                cache[(key, item.uid)] = _summary(item, previews.get(item.uid, ""))
    rows = []
    states: dict[tuple[str, ...] | None, tuple[bool, bool, bool]] = {}
    for item in light:
        known = cache.get((key, item.uid or 0))
        if known is None:
            continue  # expunged between the two FETCHes
        cache.move_to_end((key, known.uid))
        # A page holds a few distinct flag lists (parse_fetch_flags reads each once).
        now = states.get(item.flags)
        if now is None:
            flags = {f.lower() for f in (item.flags or ())}
            now = states[item.flags] = ("\\seen" not in flags, "\\flagged" in flags,
                                        "\\answered" in flags)
        if (known.unread, known.flagged, known.answered) != now:
            # Kept with the flags just read: the next page copies nothing if they stay.
            known = cache[(key, known.uid)] = replace(known, unread=now[0], flagged=now[1],
                                                      answered=now[2])
        rows.append(known)
    while len(cache) > SUMMARY_CACHE:
        cache.popitem(last=False)
    return Page(folder, rows, total, page, pages)


async def folders_and_page(conn: ImapConn, folder: str, page: int = 1
                           ) -> tuple[list[Folder], Page]:
    """The folder list with counts and a page of ``folder``: a folder page's IMAP work. When
    the list must be asked for (a new connection; every FOLDER_CACHE_SECONDS), it is asked
    beside the page: SELECT and LIST written together (``imap_protocol._Protocol.execute``),
    then the page's FETCH and the STATUS batch; two round trips where one after the other
    took four. Commands whose untagged answers differ (LIST, FETCH, STATUS) go without
    waiting for each other. The page's SELECT is written first, so that its answer comes
    first and its FETCH goes before the STATUS batch, whose answers the page waits for less."""
    if (known := _cached_folders(conn, True)) is not None:
        return known, await fetch_page(conn, folder, page)
    found, folders = await together(fetch_page(conn, folder, page), list_folders(conn))
    return folders, found


async def together(first: Coroutine[Any, Any, A], second: Coroutine[Any, Any, B]
                   ) -> tuple[A, B]:
    """Two steps of one page on its one connection at once, their commands written without
    waiting for each other's answers (only "async" ones: a SELECT waits for all). Both have
    ended when this returns, inside the page's one take; if one fails, the other is cancelled
    and the failure raised as itself (the pool retries an UpstreamUnavailable, not a group)."""
    try:
        async with asyncio.TaskGroup() as group:
            one, two = group.create_task(first), group.create_task(second)
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return one.result(), two.result()


async def page_of(conn: ImapConn, folder: str, uid: int, per_page: int = PER_PAGE) -> int:
    """The page of ``fetch_page`` that holds message ``uid`` (page 1 when it is gone)."""
    return (await page_and_flags(conn, folder, uid, per_page))[0]


async def page_and_flags(conn: ImapConn, folder: str, uid: int, per_page: int = PER_PAGE
                         ) -> tuple[int, set[str]]:
    """``page_of`` and the message's flags, lower-case (empty when it is gone), from the same
    one FETCH: the read page needs both even when it shows no list."""
    await conn.select(mailbox_arg(folder), readonly=True)
    found = await _fetch(conn, str(uid), "(UID FLAGS)", by_uid=True)
    item = next((i for i in found if i.uid == uid and i.seq), None)
    flags = {f.lower() for f in (item.flags or ())} if item is not None else set()
    if item is None or item.seq > conn.exists:
        return 1, flags
    return (conn.exists - item.seq) // per_page + 1, flags


async def fetch_uids(conn: ImapConn, folder: str, uids: Sequence[int],
                     previews: bool = True) -> list[MessageSummary]:
    """Summaries of these messages, in the order given, with preview lines if ``previews``."""
    if not uids:
        return []
    await conn.select(mailbox_arg(folder), readonly=True)
    items = await _fetch(conn, ",".join(str(u) for u in uids),
                         PAGE_ITEMS if previews else SUMMARY_ITEMS, by_uid=True)
    order = {u: i for i, u in enumerate(uids)}
    items.sort(key=lambda i: order.get(i.uid or 0, 0))
    lines = await _previews(conn, items) if previews else {}
    return [_summary(i, lines.get(i.uid or 0, "")) for i in items]


async def with_previews(conn: ImapConn, folder: str, summaries: Sequence[MessageSummary]
                        ) -> list[MessageSummary]:
    """The same summaries with their preview lines (one BODYSTRUCTURE fetch with the start
    of part 1, then the partial text fetches it did not cover)."""
    if not summaries:
        return []
    await conn.select(mailbox_arg(folder), readonly=True)
    items = await _fetch(conn, ",".join(str(s.uid) for s in summaries),
                         f"(UID BODYSTRUCTURE {ASKED_FIRST})", by_uid=True)
    lines = await _previews(conn, items)
    return [replace(s, preview=lines.get(s.uid, s.preview)) for s in summaries]


async def message_size(conn: ImapConn, folder: str, uid: int) -> int:
    """RFC822.SIZE of one message; NotFound when it is gone."""
    await conn.select(mailbox_arg(folder))
    sized = await uid_fetch(conn, uid, "(RFC822.SIZE)", "open the message")
    if not sized:
        raise NotFound("That message is no longer there. It may have been moved or deleted.")
    return sized[0].size or 0


async def fetch_raw(conn: ImapConn, folder: str, uid: int, max_bytes: int,
                    mark_read: bool = False, size: int | None = None) -> bytes:
    """The whole message, as bytes. BODY.PEEK leaves \\Seen alone; with ``mark_read`` the
    flag is set in the same round trip by fetching BODY[] instead. ``size``: its RFC822.SIZE
    when the caller has just asked for it (one round trip fewer)."""
    await conn.select(mailbox_arg(folder), readonly=not mark_read)
    if mark_read:
        conn.folder_cache = None
    if size is None:
        size = await message_size(conn, folder, uid)
    if size > max_bytes:
        raise PayloadTooLarge("This message is too large to open here.")
    spec = "BODY[]" if mark_read else "BODY.PEEK[]"
    body = section(await uid_fetch(conn, uid, f"({spec})", "open the message"), "BODY[]")
    if body is None:
        raise NotFound("That message is no longer there. It may have been moved or deleted.")
    return body


async def set_flags(conn: ImapConn, folder: str, uids: Sequence[int], flag: str,
                    on: bool) -> None:
    await conn.select(mailbox_arg(folder), readonly=False)
    conn.folder_cache = None
    op = "+FLAGS.SILENT" if on else "-FLAGS.SILENT"
    await conn.ok(conn.client.protocol.store(_uidset(uids), op, f"({flag})", by_uid=True),
                  "change the message")


async def move(conn: ImapConn, folder: str, uids: Sequence[int], target: str) -> list[int]:
    """Move messages; returns their UIDs in ``target`` when the server says (UIDPLUS
    COPYUID, RFC 4315), else an empty list."""
    await conn.select(mailbox_arg(folder), readonly=False)
    conn.folder_cache = None
    uidset, dest = _uidset(uids), mailbox_arg(target)
    if conn.has("MOVE"):
        resp = await conn.ok(conn.client.protocol.move(uidset, dest, by_uid=True),
                             "move the message")
        return copyuid(resp.lines)
    resp = await conn.ok(conn.client.protocol.copy(uidset, dest, by_uid=True),
                         "move the message")
    await conn.ok(conn.client.protocol.store(uidset, "+FLAGS.SILENT", "(\\Deleted)",
                                             by_uid=True), "move the message")
    await _expunge(conn, uidset)
    return copyuid(resp.lines)


async def remove_for_good(conn: ImapConn, folder: str, uids: Sequence[int]) -> None:
    """Delete permanently (from Deleted Items, or an old draft): \\Deleted, then expunge
    just those messages where UIDPLUS allows."""
    await set_flags(conn, folder, uids, "\\Deleted", True)
    await _expunge(conn, _uidset(uids))


async def _expunge(conn: ImapConn, uidset: str) -> None:
    if conn.has("UIDPLUS"):
        await conn.ok(conn.client.protocol.expunge(uidset, by_uid=True), "tidy the folder")
    else:
        await conn.ok(conn.client.protocol.expunge(), "tidy the folder")


async def delete_all(conn: ImapConn, folder: str) -> int:
    """Permanently remove every message in a folder (empty Junk or Deleted Items)."""
    await conn.select(mailbox_arg(folder), readonly=False)
    conn.folder_cache = None
    count = conn.exists
    if count:
        await conn.ok(conn.client.protocol.store("1:*", "+FLAGS.SILENT", "(\\Deleted)"),
                      "empty the folder")
        await conn.ok(conn.client.protocol.expunge(), "empty the folder")
        conn.exists = 0
    return count


async def append(conn: ImapConn, folder: str, message: bytes, flags: str = "",
                 date: datetime | None = None) -> int | None:
    """APPEND a message; returns its UID when the server says (UIDPLUS APPENDUID)."""
    resp = await conn.call(conn.client.append(message, mailbox_arg(folder), flags or None,
                                              date))
    if resp.result != "OK":
        raise MailError("The mail server would not save the message.")
    conn.selected = None  # APPEND may change counts; re-select before the next read
    conn.folder_cache = None
    for line in resp.lines:
        text = bytes(line) if isinstance(line, (bytes, bytearray)) else b""
        if b"APPENDUID" in text:
            try:
                return int(text.split(b"APPENDUID")[1].split()[1].rstrip(b"]"))
            except (IndexError, ValueError):
                return None
    return None


async def search_uids(conn: ImapConn, folder: str, criteria: Sequence[str]) -> list[int]:
    """UIDs matching ``criteria`` (already-built IMAP search keys, ASCII only: see
    ``gateway.mail.search``), newest first: by the messages' dates when the server offers
    SORT, else by arrival (UID), which is all Exchange Online offers. The search is sent with
    no CHARSET: Exchange refuses any other than US-ASCII (``NO [BADCHARSET (US-ASCII)]``,
    MailKit issues 16 and 808)."""
    if not all(c.isascii() for c in criteria):
        raise MailError("That search cannot be sent to the mail server.")
    await conn.select(mailbox_arg(folder), readonly=True)
    if conn.has("SORT"):
        sort = Command("SORT", conn.client.protocol.new_tag(), "(REVERSE DATE)", "US-ASCII",
                       *criteria, prefix="UID", loop=asyncio.get_running_loop())
        resp = await conn.call(conn.client.protocol.execute(sort))
        if resp.result == "OK":
            try:
                return parse_search(resp.lines)
            except ImapParseError:
                raise MailError("The search results could not be read.") from None
        # A server that advertises SORT but refuses it: plain SEARCH below.
    resp = await conn.call(conn.client.protocol.search(*criteria, charset=None, by_uid=True))
    if resp.result != "OK":
        raise MailError("The mail server could not run that search.")
    try:
        uids = parse_search(resp.lines)
    except ImapParseError:
        raise MailError("The search results could not be read.") from None
    return sorted(uids, reverse=True)


async def fetch_envelopes(conn: ImapConn, folder: str, uids: Sequence[int]
                          ) -> dict[int, Envelope]:
    """The envelopes (decoded From, To, Subject ...) of ``uids``, by UID; a message whose
    envelope cannot be read is left out."""
    if not uids:
        return {}
    await conn.select(mailbox_arg(folder), readonly=True)
    items = await _fetch(conn, ",".join(str(u) for u in uids), "(UID ENVELOPE)", by_uid=True)
    return {i.uid: i.envelope for i in items if i.uid and i.envelope is not None}


def _uidset(uids: Sequence[int]) -> str:
    if not uids or any(not isinstance(u, int) or u < 1 for u in uids):
        raise MailError("No message chosen.")
    return ",".join(str(u) for u in uids)
