"""One attachment, streamed: its BODYSTRUCTURE entry, then its encoded bytes in chunks with
IMAP partial fetches (``BODY.PEEK[2]<offset.length>``), decoded as they arrive. A 30 MB
attachment therefore never sits whole in the gateway's memory, and other requests of the
same member can use the connection between chunks.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from gateway.errors import NotFound
from gateway.mail.imap import ImapConn
from gateway.mail.imap_fetch import BodyPart
from gateway.mail.mailbox import mailbox_arg, section, uid_fetch

CHUNK = 512 * 1024
T = TypeVar("T")
Runner = Callable[[Callable[[ImapConn], Awaitable[T]]], Awaitable[T]]
_WS = re.compile(rb"\s+")


async def part_info(conn: ImapConn, folder: str, uid: int, part_id: str) -> BodyPart:
    await conn.select(mailbox_arg(folder))
    items = await uid_fetch(conn, uid, "(BODYSTRUCTURE)", "open the message")
    if not items or items[0].bodystructure is None:
        raise NotFound("That message is no longer there. It may have been moved or deleted.")
    part = items[0].bodystructure.find(part_id)
    if part is None or part.type == "multipart":
        raise NotFound("That attachment is not in this message.")
    return part


async def _chunk(conn: ImapConn, folder: str, uid: int, part_id: str, offset: int) -> bytes:
    await conn.select(mailbox_arg(folder))
    items = await uid_fetch(conn, uid, f"(BODY.PEEK[{part_id}]<{offset}.{CHUNK}>)",
                            "read the attachment")
    return section(items, f"BODY[{part_id}]") or b""


class _Decoder:
    """Content-Transfer-Encoding decoding that accepts input in arbitrary pieces."""

    def __init__(self, encoding: str) -> None:
        self.encoding = (encoding or "7bit").lower()
        self.pending = b""

    def feed(self, data: bytes) -> bytes:
        if self.encoding == "base64":
            data = self.pending + _WS.sub(b"", data)
            cut = len(data) - len(data) % 4
            self.pending = data[cut:]
            try:
                return base64.b64decode(data[:cut])
            except binascii.Error:
                return base64.b64decode(data[:cut] + b"==", validate=False)
        if self.encoding == "quoted-printable":
            data = self.pending + data
            cut = data.rfind(b"\n") + 1
            self.pending = data[cut:]
            return quopri.decodestring(data[:cut])
        return data

    def finish(self) -> bytes:
        rest, self.pending = self.pending, b""
        if not rest:
            return b""
        if self.encoding == "base64":
            rest += b"=" * (-len(rest) % 4)
            try:
                return base64.b64decode(rest)
            except binascii.Error:
                return b""
        if self.encoding == "quoted-printable":
            return quopri.decodestring(rest)
        return rest


async def stream_part(run: Runner[bytes], folder: str, uid: int, part: BodyPart
                      ) -> AsyncIterator[bytes]:
    """The decoded bytes of one part, chunk by chunk. ``run`` runs a function on the
    member's pooled connection (one lock hold per chunk)."""
    decoder = _Decoder(part.encoding or "7bit")
    offset = 0
    while True:
        async def fetch(conn: ImapConn, at: int = offset) -> bytes:
            return await _chunk(conn, folder, uid, part.part_id, at)
        data = await run(fetch)
        offset += len(data)
        out = decoder.feed(data)
        if out:
            yield out
        if len(data) < CHUNK:
            break
    tail = decoder.finish()
    if tail:
        yield tail
