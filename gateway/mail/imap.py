"""One authenticated IMAP connection to Exchange Online (or the dev stack's Dovecot) and what
is known about its state.

Owns ``ImapConn``: every aioimaplib call goes through ``ImapConn.call``, which turns
protocol failures into the error tree (a server that is down, slow, throttling or drops
the connection is ``UpstreamUnavailable``, marking the connection broken; a NO/BAD is
``MailError``); the selected folder and its count, kept from the untagged EXISTS / EXPUNGE of
every answer; IDLE on the selected folder, and ending an IDLE cleanly when its stream is
closed. Logging in is ``gateway.mail.imap_login``; sharing one connection per member between
pages and new-mail streams is ``gateway.mail.imap_pool`` (with ``gateway.mail.imap_turns``).
Views never see a connection: they call the small functions in ``gateway.mail.mailbox``
through the request's ``gateway.mail.session.MailSession``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from typing import Any

import aioimaplib

from gateway.errors import MailError, NotFound, UpstreamUnavailable
from gateway.mail.imap_mailboxes import MailboxStatus, parse_select, parse_status
from gateway.mail.imap_tokens import ImapParseError

# The errors that mean "the connection is gone or useless", as opposed to a NO from the server.
DROPPED = (OSError, TimeoutError, asyncio.TimeoutError, aioimaplib.AioImapException,
           asyncio.IncompleteReadError, ConnectionError)


class TimedOut(UpstreamUnavailable):
    """The server did not answer within the timeout (frozen, not gone): not worth a retry."""


# Exchange's answer to a mailbox that has logged in too often in a short time: the login
# succeeds, every command then gets this BAD, and the second is followed by BYE
# (MailKit#1496, node-imap#523, imapsync#411, Webklex/php-imap#464).
THROTTLED = b"User is authenticated but not connected"
THROTTLED_RETRY_SECONDS = 60
# STATUS commands written at once (``ImapConn.statuses``): a folder list's worth in one go for
# most mailboxes, while a mailbox of hundreds of folders does not put them all on the wire
# at once (Exchange 2010 was slow to answer a STATUS of each of 250 folders: KB 2699023).
STATUS_BATCH = 25


def _throttled() -> UpstreamUnavailable:
    return UpstreamUnavailable("Exchange is refusing new connections for your mailbox just "
                               "now (too many sign-ins in a short time). Please try again in "
                               "a minute.", retry_after=THROTTLED_RETRY_SECONDS)


class ImapConn:
    """One authenticated connection and what we know about its state."""

    def __init__(self, client: aioimaplib.IMAP4_SSL, timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        self.caps: frozenset[str] = frozenset()
        self.selected: str | None = None
        # The selected folder's state was brought up to date (SELECT or NOOP) during the
        # current take of the connection: a page asks the server for news once, not before
        # each of its steps. The pool clears it whenever a page or a stream takes the
        # connection (gateway.mail.imap_pool).
        self.fresh = False
        self.exists = 0
        self.uidvalidity = 0
        self.broken = False
        # Exchange said "authenticated but not connected": reconnecting at once only makes
        # the burst of logins longer, so the pool does not retry this one.
        self.throttled = False
        # The folder list with counts, briefly: every page shows it, and on Exchange it is
        # one LIST plus a STATUS per folder. Any change made through this connection, or
        # news from the server, clears it (gateway.mail.mailbox).
        self.folder_cache: tuple[float, bool, Any] | None = None
        # Parsed message summaries by ((folder, UIDVALIDITY), UID), oldest first. A pooled
        # connection shares its slot's, which outlive it (gateway.mail.imap_pool._Slot).
        self.summaries: OrderedDict[tuple[tuple[str, int], int], Any] = OrderedDict()
        # The inbox page built at sign-in, for the page that follows (gateway.mail.warmed):
        # (when, the folder list it saw, the folders and the page).
        self.warmed: tuple[float, Any, Any] | None = None

        # An IDLE being ended (DONE sent, its OK not yet read) when its stream was closed;
        # the next call waits for that OK first.
        self._idle_cmd: asyncio.Future[Any] | None = None
        self._done_sent = False
        self._idle_end: asyncio.Future[Any] | None = None

        # aioimaplib leaves a command waiting until its timeout when the server goes away;
        # hear about the lost connection and fail the command at once instead.
        self.lost = asyncio.Event()
        # The same news as a future every call can wait on: made once, not a new task per
        # command (asyncio.wait only adds and removes a callback on it).
        self._lost_future: asyncio.Future[None] | None = None

        def on_lost(exc: Exception | None) -> None:
            self.broken = True
            self.lost.set()
            if self._lost_future is not None and not self._lost_future.done():
                self._lost_future.set_result(None)
        client.protocol.conn_lost_cb = on_lost

    def has(self, capability: str) -> bool:
        return capability.upper() in self.caps

    @property
    def alive(self) -> bool:
        transport = self.client.protocol.transport
        return not self.broken and transport is not None and not transport.is_closing()

    async def call(self, coro: Awaitable[Any]) -> Any:
        """Run one aioimaplib call; a dropped or stuck connection becomes UpstreamUnavailable
        and marks this connection broken so the pool replaces it."""
        if self._idle_end is not None:
            ending, self._idle_end = self._idle_end, None
            await asyncio.wait({ending}, timeout=self.timeout)
            if not ending.done() or ending.cancelled() or ending.exception() is not None:
                self.broken = True
            if self.broken:
                if asyncio.iscoroutine(coro):
                    coro.close()
                raise UpstreamUnavailable("The connection to the mail server was lost. "
                                          "Please try again.")
        task = asyncio.ensure_future(coro)
        lost = self._lost_future
        if lost is None:
            lost = self._lost_future = asyncio.get_running_loop().create_future()
            if self.lost.is_set():
                lost.set_result(None)
        try:
            done, _ = await asyncio.wait({task, lost}, timeout=self.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                resp = task.result()
                if getattr(resp, "result", "") == "BAD" and any(
                        isinstance(x, (bytes, bytearray)) and THROTTLED in x
                        for x in getattr(resp, "lines", ())):
                    self.broken = self.throttled = True
                    raise _throttled()
                if self.selected is not None:
                    self.note_untagged(getattr(resp, "lines", ()))
                return resp
            if lost not in done:
                self.broken = True
                raise TimedOut("The mail server is not answering just now. Please try again "
                                "shortly.")
            raise ConnectionError
        except DROPPED:
            self.broken = True
            raise UpstreamUnavailable("The connection to the mail server was lost. "
                                      "Please try again.") from None
        finally:
            if not task.done():
                task.cancel()

    async def ok(self, coro: Awaitable[Any], what: str) -> Any:
        resp = await self.call(coro)
        if resp.result != "OK":
            # Whatever we believed about the selected folder may be why it refused (a count
            # gone stale): SELECT afresh next time rather than fail the same way again.
            self.selected = None
            raise MailError(f"The mail server refused to {what}.")
        return resp

    async def select(self, raw_name: str, readonly: bool = False) -> None:
        """SELECT a folder unless it is already selected. Always SELECT, never EXAMINE:
        aioimaplib only enters its SELECTED state (and allows FETCH) after SELECT; reads use
        BODY.PEEK so that selecting read-write changes nothing by itself."""
        if self.selected == raw_name:
            # Already selected: a NOOP brings the news (new mail, expunges) without the
            # cost of a new SELECT, which grows with the folder on some servers. Once per
            # take: what this page's own commands change comes back in their answers
            # (``note_untagged``), and the news of a few milliseconds ago is the news.
            if not self.fresh:
                await self.refresh()
                self.fresh = True
            return
        # Deselected while the SELECT runs (RFC 3501 6.3.1): its EXISTS is the new folder's.
        self.selected = None
        # Straight to the protocol, as LIST is (``mailbox._list_folders``): aioimaplib's
        # IMAP4.select only adds a wait_for, which ``call`` already bounds, and the task it
        # makes costs a turn of the loop, in which the STATUS batch beside a cold page was
        # written before the page's FETCH (``mailbox.folders_and_page``).
        resp = await self.call(self.client.protocol.select(raw_name))
        if resp.result != "OK":
            self.selected = None
            raise NotFound("That folder could not be opened. It may have been moved or "
                           "deleted.")
        self.selected, self.fresh = raw_name, True
        info = parse_select([bytes(line).strip() for line in resp.lines
                             if isinstance(line, (bytes, bytearray))])
        self.exists, self.uidvalidity = info.exists or 0, info.uidvalidity or 0

    async def statuses(self, raw_names: Sequence[str], items: str = "(MESSAGES UNSEEN)"
                       ) -> dict[str, MailboxStatus]:
        """STATUS of these folders (quoted arguments) by decoded name, written
        ``STATUS_BATCH`` at a time without waiting for each answer
        (``gateway.mail.imap_protocol``): a round trip per batch, not per folder. INBOX is
        "INBOX" whatever case the server gave it (RFC 3501 5.1). A folder
        the server refused (deleted since LIST) is missing; so is a batch it answered in a
        form that cannot be read, whose folders then show no counts rather than no list."""
        found: dict[str, MailboxStatus] = {}
        for at in range(0, len(raw_names), STATUS_BATCH):
            resp = await self.call(self.client.protocol.status_many(
                raw_names[at:at + STATUS_BATCH], items, timeout=self.timeout))
            with contextlib.suppress(ImapParseError):
                found.update(("INBOX" if s.name.upper() == "INBOX" else s.name, s)
                             for s in parse_status(resp.lines))
        return found

    async def refresh(self) -> None:
        """NOOP: its untagged EXISTS / EXPUNGE bring the count up to date (``call``); a
        FETCH in its answer is a flag changed elsewhere, so the folder counts are stale."""
        resp = await self.call(self.client.noop())
        if any(isinstance(line, bytes) and b" FETCH " in line for line in resp.lines):
            self.folder_cache = None

    def note_untagged(self, lines: Any) -> None:
        """Apply the untagged EXISTS / EXPUNGE of any response to the selected folder's count.
        The server sends them with whatever command it likes (MOVE and EXPUNGE carry the
        EXPUNGEs of the messages they remove, RFC 6851 / 3501 7.4.1) and never again, so a
        count that misses them asks for messages past the end. Literals (message text, which
        aioimaplib hands over as bytearray) are data, not responses, and are skipped."""
        for line in lines or ():
            if not isinstance(line, bytes):
                continue
            parts = line.strip().split(None, 2)
            # (A FETCH here is usually the answer asked for, not news: see ``refresh``.)
            if len(parts) < 2 or not parts[0].isdigit():
                continue
            verb, number = parts[1].upper(), int(parts[0])
            if verb == b"EXISTS" and number != self.exists:
                self.exists = number
                self.folder_cache = None  # the counts shown beside folders changed
            elif verb == b"EXPUNGE":
                self.exists = max(0, self.exists - 1)
                self.folder_cache = None

    async def idle(self, seconds: float, interrupt: asyncio.Event) -> bool:
        """IDLE on the selected folder until the server sends news, ``seconds`` pass, or
        ``interrupt`` is set (a page wants this connection), then DONE. The news is applied
        to the count as any untagged answer is (``note_untagged``): the server sends it once.
        True when a FETCH came (a flag changed elsewhere). A connection the server ends
        while idling (Exchange after 30 minutes, or an expired token) is marked broken."""
        try:
            return await self._idle(seconds, interrupt)
        except asyncio.CancelledError:
            # The stream was closed (the member left the page) mid-IDLE: end the IDLE now
            # and let the next caller wait for its OK (``call``) rather than log in again.
            if self._idle_cmd is not None and not self._idle_cmd.done():
                if not self._done_sent:
                    self.client.idle_done()
                self._idle_end = self._idle_cmd
            elif self.client.has_pending_idle():
                self.broken = True
            raise
        finally:
            self._idle_cmd, self._done_sent = None, False

    async def _idle(self, seconds: float, interrupt: asyncio.Event) -> bool:
        queue = self.client.protocol.idle_queue
        while not queue.empty():
            queue.get_nowait()
        # Shielded: a stream closed while the server is being asked to IDLE (IDLE sent, its
        # "+ idling" not yet back) would leave an IDLE pending that nobody ends, and the
        # connection had to be dropped (a new login for the member's next page). Instead the
        # start is let finish, briefly, and the IDLE is then ended like any other (``idle``).
        start = asyncio.ensure_future(self.call(self.client.idle_start(timeout=seconds + 60)))
        try:
            idle_cmd = await asyncio.shield(start)
        except asyncio.CancelledError:
            # Starlette's task group cancels the stream again and again until it ends, so
            # each wait is shielded; the start takes one round trip, bounded by the timeout.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.timeout
            while not start.done() and loop.time() < deadline:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({start}, timeout=deadline - loop.time())
            if start.done() and not start.cancelled() and start.exception() is None:
                self._idle_cmd = start.result()
            raise
        self._idle_cmd = idle_cmd
        pushed: list[Any] = []
        waits = [asyncio.ensure_future(queue.get()), asyncio.ensure_future(interrupt.wait()),
                 asyncio.ensure_future(self.lost.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if waits[0].done() and not waits[0].cancelled():
            pushed.extend(waits[0].result())
        if self.broken:
            idle_cmd.cancel()
            raise UpstreamUnavailable("The connection to the mail server was lost.")
        self.client.idle_done()
        self._done_sent = True
        try:
            await self.call(asyncio.shield(idle_cmd))
        finally:
            while not queue.empty():
                pushed.extend(queue.get_nowait())
            news = [bytes(x) for x in pushed if isinstance(x, (bytes, bytearray))
                    and bytes(x) != b"stop_wait_server_push"]
            self.note_untagged(news)
        if any(b" FETCH " in line or line.endswith(b" FETCH") for line in news):
            self.folder_cache = None
            return True
        return False

    async def close(self) -> None:
        """LOGOUT while the connection works, then close it. One the server ended (IDLE cut,
        expired token) or that is broken is only closed: a LOGOUT there waits out its 2 s for
        an answer that cannot come, and the member's page or stream waits behind it for the
        new login (test_idle_ended_by_the_server_is_resumed saw the new login 3.5 s late)."""
        if self.alive:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.logout(), 2)
        transport = self.client.protocol.transport
        if transport is not None and not transport.is_closing():
            transport.close()

