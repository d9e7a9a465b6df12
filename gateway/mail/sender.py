"""Sending and saving a member's message, exactly once.

Owns the send rule: a message is claimed in the outbox (one sender across instances), marked
"sending" before it goes, checked against Sent Items on any try after the first (an earlier
try may have reached the server before its instance died), held when that cannot be known,
and marked sent afterwards; then the original is marked ``\\Answered`` and the Drafts copy
removed. Also saving to Drafts. The web views parse forms and render; they call this.

All mailbox work runs on the request's ``MailSession``; all outbox work on the request's one
``Outbox`` (which remembers what it read, so a reply reads the record once).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.errors import Conflict, GatewayError, PartlyRefused
from gateway.mail import mailbox
from gateway.mail.imap import ImapConn
from gateway.mail.outbox import Draft, Outbox
from gateway.mail.reader import special
from gateway.mail.search import find_message_id
from gateway.mail.session import MailSession

log = logging.getLogger(__name__)


async def drafts_folder(conn: ImapConn) -> str:
    drafts = special(await mailbox.list_folders(conn, counts=False), "drafts")
    return drafts.name if drafts else "Drafts"


async def remove_quietly(conn: ImapConn, folder: str, uid: int) -> None:
    try:
        await mailbox.remove_for_good(conn, folder, [uid])
    except GatewayError:
        log.info("old draft could not be removed")


@dataclass
class Sent:
    """How a send ended: ``held`` when it was not sent because an earlier try may have gone
    and Sent Items could not be checked; ``refused`` the recipients the server refused
    (the others have it)."""

    held: bool = False
    refused: list[tuple[str, str]] = field(default_factory=list)


class Sender:
    """One member's sends and saves within one request."""

    def __init__(self, ms: MailSession, outbox: Outbox, user_oid: str,
                 clock: Callable[[], float]) -> None:
        self.ms, self.outbox, self.user_oid, self.clock = ms, outbox, user_oid, clock

    async def save_to_drafts(self, data: bytes, old_uid: int) -> int:
        """Put the message in Drafts, replacing the copy saved before (``old_uid``)."""
        async def work(conn: ImapConn) -> int:
            drafts = await drafts_folder(conn)
            uid = await mailbox.append(conn, drafts, data, "\\Draft \\Seen")
            if old_uid:
                await remove_quietly(conn, drafts, old_uid)
            return uid or 0
        return await self.ms.run(work)

    async def drafts_name(self) -> str:
        return await self.ms.run(drafts_folder)

    async def send(self, outbox_id: str, draft: Draft, message_id: str, check_sent: bool,
                   transmit: Callable[[], Awaitable[None]]) -> Sent:
        """Send the message the outbox holds as ``outbox_id`` once: ``transmit`` hands it to
        the server. ``check_sent`` False is the member's own "Send anyway". Raises Conflict
        when another window or instance is sending it now; a GatewayError from the mailbox
        or the server leaves the claim released and the state for the caller to record."""
        if not await self.outbox.claim(outbox_id, self.user_oid, self.clock()):
            raise Conflict("This message is being sent already (from another window or a "
                           "second tap), or a send of it was cut off moments ago. It is kept "
                           "in your Outbox; look in Sent Items before sending it again.")
        draft.attempts += 1
        # "sending" until the answer is recorded: if this instance dies now, the Outbox
        # lists the message as perhaps sent (rule: a message is never lost).
        await self.outbox.save(outbox_id, self.user_oid, draft, "sending", self.clock())
        try:
            # An earlier try (perhaps on an instance that died before it could record the
            # send) may have reached the server.
            found = (await self.already_sent(message_id)
                     if draft.attempts > 1 and check_sent else False)
            if found is None:
                # Rule: a message is never sent twice. Unknown is not "not sent": hold it.
                await self.outbox.save(outbox_id, self.user_oid, draft, "held", self.clock())
                await self.outbox.release(outbox_id, self.user_oid)
                return Sent(held=True)
            if found:
                log.info("message found in Sent Items; not sent again")
                return Sent()
            try:
                await transmit()
            except PartlyRefused as partly:
                # Sent to the others: recorded as sent, never offered again to everyone.
                return Sent(refused=partly.refused)
            return Sent()
        except GatewayError:
            await self.outbox.release(outbox_id, self.user_oid)
            raise

    async def already_sent(self, message_id: str) -> bool | None:
        """Whether a copy with this Message-ID is in Sent Items; None when that cannot be
        known (the mailbox is out of reach, or it has no Sent Items folder)."""
        async def work(conn: ImapConn) -> bool | None:
            sent = special(await mailbox.list_folders(conn, counts=False), "sent")
            if sent is None:
                return None
            # Plain US-ASCII, no CHARSET: Exchange refuses CHARSET UTF-8 with BADCHARSET,
            # which once read as "not there" and could send a retry twice.
            return await find_message_id(conn, sent.name, message_id)
        try:
            return await self.ms.run(work)
        except GatewayError:
            return None

    async def after_send(self, draft: Draft, sent_copy: bytes | None = None) -> None:
        """Mark the original answered and remove the draft copy; neither may fail the send.
        With ``sent_copy`` (``mail.sent_copy = "gateway"``), also save the message in Sent
        Items, read: Exchange saves its own copy of an SMTP AUTH submission, so against
        Exchange this stays None (two copies otherwise)."""
        async def work(conn: ImapConn) -> None:
            if sent_copy is not None:
                sent = special(await mailbox.list_folders(conn, counts=False), "sent")
                try:
                    await mailbox.append(conn, sent.name if sent else "Sent Items", sent_copy,
                                         "\\Seen")
                except GatewayError:
                    log.info("copy for Sent Items could not be saved")
            if draft.mode in ("reply", "replyall") and draft.orig_uid:
                await mailbox.set_flags(conn, draft.orig_folder, [draft.orig_uid],
                                        "\\Answered", True)
            if draft.draft_uid:
                await remove_quietly(conn, await drafts_folder(conn), draft.draft_uid)
        try:
            await self.ms.run(work)
        except GatewayError:
            log.info("after-send tidy-up did not complete")
