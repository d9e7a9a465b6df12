"""Reading a message: open it (small messages fetched and parsed whole, large ones from
their structure), check that our part numbers are the server's, sanitise its HTML body with
its inline images, and keep the sanitised body briefly for the frame that shows it.

Everything here runs on a ``MailSession``: a view that holds it (``async with``) opens a
message with one take of the member's connection lock.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError
from gateway.mail import mailbox, sanitize, structure
from gateway.mail.imap import ImapConn
from gateway.mail.imap_fetch import BodyPart
from gateway.mail.mime import MessageView, attachment_bytes, parse_message, safe_filename
from gateway.mail.session import MailSession

MAX_MESSAGE_BYTES = 50 * 1024 * 1024
# Messages up to this size are fetched whole; larger ones open from their structure.
WHOLE_MESSAGE_BYTES = 2 * 1024 * 1024
MAX_INLINE_IMAGES = 8 * 1024 * 1024
SAFE_IMAGE = {"image/png", "image/jpeg", "image/gif", "image/webp"}


@dataclass
class Opened:
    """A message ready to show, and how to get the decoded bytes of one of its parts."""

    view: MessageView
    # part(part_id, limit): the decoded bytes, or None when missing or over the limit.
    part: Callable[[str, int], Awaitable[bytes | None]]


async def open_message(ms: MailSession, folder: str, uid: int, mark_read: bool) -> Opened:
    """Small messages are fetched and parsed whole; large ones are opened from their
    structure, fetching only what is shown (gateway.mail.structure)."""
    async def work(conn: ImapConn) -> tuple[bytes | None, Any]:
        size = await mailbox.message_size(conn, folder, uid)
        if size <= WHOLE_MESSAGE_BYTES:
            return await mailbox.fetch_raw(conn, folder, uid, MAX_MESSAGE_BYTES,
                                           mark_read=mark_read, size=size), None
        return None, await structure.view_from_structure(conn, folder, uid, mark_read)
    raw, structured = await ms.run(work)
    parsed = await asyncio.to_thread(parse_message, raw) if raw is not None else None
    if parsed is not None and not await _numbering_agrees(ms, folder, uid, parsed):
        # Rule: part numbers are the server's. Our parser and the server split this message
        # differently (a boundary reused in nested parts, say): open it from the server's
        # BODYSTRUCTURE, so every attachment link names a part the server has.
        async def from_structure(conn: ImapConn) -> Any:
            return await structure.view_from_structure(conn, folder, uid, False)
        raw, structured = None, await ms.run(from_structure)
    if raw is not None and parsed is not None:
        whole, view = raw, parsed

        async def from_raw(part_id: str, limit: int) -> bytes | None:
            try:
                data = (await asyncio.to_thread(attachment_bytes, whole, part_id))[1]
            except (GatewayError, KeyError, ValueError):
                return None
            return data if len(data) <= limit else None
        return Opened(view, from_raw)
    view, leaves = structured

    async def from_server(part_id: str, limit: int) -> bytes | None:
        part = leaves.get(part_id)
        if part is None or structure.decoded_size(part) > limit:
            return None

        async def fetch(conn: ImapConn) -> bytes:
            return await structure.part_bytes(conn, folder, uid, part)
        return await ms.run(fetch)
    return Opened(view, from_server)


async def _numbering_agrees(ms: MailSession, folder: str, uid: int,
                            view: MessageView) -> bool:
    """Whether each attachment our parser finds is the same part (type and name) under the
    same number in the server's BODYSTRUCTURE. Messages without attachments: yes."""
    if not view.attachments:
        return True

    async def work(conn: ImapConn) -> Any:
        await conn.select(mailbox.mailbox_arg(folder))
        return await mailbox.uid_fetch(conn, uid, "(BODYSTRUCTURE)", "open the message")
    items = await ms.run(work)
    root = items[0].bodystructure if items else None
    if root is None:
        return True            # nothing better to go by
    # One walk, not one per attachment: a message of ten thousand parts is hostile input.
    by_number: dict[str, BodyPart] = {}
    for part in root.walk():
        by_number.setdefault(part.part_id, part)     # the first, as BodyPart.find has it
    for att in view.attachments:
        leaf = by_number.get(att.part_id)
        if leaf is None or leaf.type == "multipart" or leaf.content_type != att.content_type:
            return False
        name = leaf.filename or leaf.params.get("name")
        if name and safe_filename(name) != att.filename:
            return False
    return True


async def sanitized(opened: Opened, allow_remote: bool) -> sanitize.SanitizedHtml:
    """The HTML body sanitised off the event loop, its safe inline images as data URLs (an
    opaque-origin frame sends no cookies, so ``cid:`` cannot be a link back to us)."""
    view = opened.view
    inline: dict[str, str] = {}
    budget = MAX_INLINE_IMAGES
    for att in view.attachments:
        if att.content_id and att.content_type in SAFE_IMAGE and att.size <= budget:
            data = await opened.part(att.part_id, budget)
            if data is None:
                continue
            budget -= len(data)
            inline[att.content_id] = (f"data:{att.content_type};base64,"
                                      + base64.b64encode(data).decode())

    def cid_url(cid: str) -> str | None:
        return inline.get(cid.strip("<>"))

    html = view.html or ""
    return await asyncio.to_thread(sanitize.sanitize_html, html,
                                   allow_remote_images=allow_remote, cid_url=cid_url)


class FrameCache:
    """Sanitised message bodies, briefly: the read page sanitises the body (to say whether
    pictures were blocked) and the frame asks for the same body a moment later. Keyed by
    member, folder, message and the pictures choice; bounded in bytes; a few minutes old
    at most. Only sanitised HTML is kept, in memory, never on disk."""

    def __init__(self, max_bytes: int = 16 * 1024 * 1024, ttl: float = 300.0) -> None:
        self.max_bytes, self.ttl = max_bytes, ttl
        self._items: OrderedDict[tuple[str, str, int, bool], tuple[float, str]] = OrderedDict()
        self._size = 0

    def get(self, key: tuple[str, str, int, bool]) -> str | None:
        hit = self._items.get(key)
        if hit is None or time.monotonic() - hit[0] > self.ttl:
            return None
        return hit[1]

    def put(self, key: tuple[str, str, int, bool], html: str) -> None:
        if len(html) > self.max_bytes // 4:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._size -= len(old[1])
        self._items[key] = (time.monotonic(), html)
        self._size += len(html)
        while self._size > self.max_bytes and self._items:
            _, (_, dropped) = self._items.popitem(last=False)
            self._size -= len(dropped)


FRAMES = FrameCache()


def named(folders: list[mailbox.Folder], name: str) -> mailbox.Folder | None:
    """The folder of this name, if the mailbox has it."""
    return next((f for f in folders if f.name == name), None)


def special(folders: list[mailbox.Folder], kind: str) -> mailbox.Folder | None:
    """The mailbox's folder for ``kind`` (drafts, sent, trash, junk, archive), if any."""
    return next((f for f in folders if f.special == kind), None)
