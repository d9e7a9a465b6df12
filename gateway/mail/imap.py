"""IMAP to Exchange Online (or the dev stack's Dovecot) with the member's own XOAUTH2 token.

Owns the connection: implicit TLS, XOAUTH2 login (answering the challenge aioimaplib
leaves unanswered), capabilities (asked again after login, as aioimaplib does not), the
selected folder and its count, and turning protocol failures into the error tree: a
refused token is ``ReauthRequired``, or ``ImapDisabled`` when it is still inside its
lifetime; a server that is down, slow, throttling or drops the connection is
``UpstreamUnavailable``; a NO/BAD is ``MailError``.

``ImapPool`` keeps one connection per member (keyed by account, shared by their sessions)
behind a lock, reuses it across requests, reconnects once when it was dropped, stays
silent for a timeout after the server froze, and closes connections left idle. Views never
see a connection: they call the small functions in ``gateway.mail.mailbox`` through the
request's ``gateway.mail.session.MailSession``, which holds the lock (``pool.hold``) once
for a whole page; ``pool.run`` is one call under the lock.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aioimaplib

from gateway.errors import (
    ImapDisabled,
    MailError,
    NotFound,
    ReauthRequired,
    UpstreamUnavailable,
)
from gateway.mail.imap_parse import parse_select

log = logging.getLogger(__name__)
T = TypeVar("T")
# The errors that mean "the connection is gone or useless", as opposed to a NO from the server.
DROPPED = (OSError, TimeoutError, asyncio.TimeoutError, aioimaplib.AioImapException,
           asyncio.IncompleteReadError, ConnectionError)


class _TimedOut(UpstreamUnavailable):
    """The server did not answer within the timeout (frozen, not gone): not worth a retry."""


# Response codes (RFC 5530) that mean "not now", as opposed to "not this token".
BUSY_CODES = (b"[LIMIT]", b"[UNAVAILABLE]", b"[INUSE]", b"[SERVERBUG]", b"[OVERQUOTA]")


# Exchange's answer to a mailbox that has logged in too often in a short time: the login
# succeeds, every command then gets this BAD, and the second is followed by BYE
# (MailKit#1496, node-imap#523, imapsync#411, Webklex/php-imap#464).
THROTTLED = b"User is authenticated but not connected"
# A token that Exchange refuses this long before its expiry is not refused for its age.
TOKEN_SLACK_SECONDS = 60.0
THROTTLED_RETRY_SECONDS = 60
# How long one new-mail stream's IDLE may keep the connection while another stream of the same
# member waits (two tabs on two folders: one connection IDLEs on one folder at a time). News
# in the waiting tab's folder is then at most about this late, not a whole IDLE round.
STREAM_TURN = 10.0


def token_expiry(token: str) -> float | None:
    """The ``exp`` of a JWT access token, read without checking it (the server checks it;
    this only tells "expired" apart from "refused for another reason"). None if unreadable."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError, binascii.Error):
        return None


def _throttled() -> UpstreamUnavailable:
    return UpstreamUnavailable("Exchange is refusing new connections for your mailbox just "
                               "now (too many sign-ins in a short time). Please try again in "
                               "a minute.", retry_after=THROTTLED_RETRY_SECONDS)


@dataclass(frozen=True)
class ImapTarget:
    host: str
    port: int
    ssl_context: ssl.SSLContext
    timeout: float


def ssl_context(ca_file: str = "") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _answer_auth_challenge(client: aioimaplib.IMAP4_SSL) -> None:
    """A refused XOAUTH2 gets a ``+`` challenge carrying a JSON error, which the client must
    answer with an empty line before the server sends NO. aioimaplib 2.0 never answers, so a
    bad token would hang until the timeout; answer it here."""
    protocol = client.protocol
    original = protocol._continuation

    def continuation(line: bytes) -> None:
        cmd = protocol.pending_sync_command
        if cmd is not None and cmd.name == "AUTHENTICATE" and protocol.transport is not None:
            protocol.transport.write(b"\r\n")
            return
        original(line)

    protocol._continuation = continuation


class ImapConn:
    """One authenticated connection and what we know about its state."""

    def __init__(self, client: aioimaplib.IMAP4_SSL, timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        self.caps: frozenset[str] = frozenset()
        self.selected: str | None = None
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
        # Parsed message summaries by ((folder, UIDVALIDITY), UID), oldest first.
        self.summaries: OrderedDict[tuple[tuple[str, int], int], Any] = OrderedDict()

        # An IDLE being ended (DONE sent, its OK not yet read) when its stream was closed;
        # the next call waits for that OK first.
        self._idle_cmd: asyncio.Future[Any] | None = None
        self._done_sent = False
        self._idle_end: asyncio.Future[Any] | None = None

        # aioimaplib leaves a command waiting until its timeout when the server goes away;
        # hear about the lost connection and fail the command at once instead.
        self.lost = asyncio.Event()

        def on_lost(exc: Exception | None) -> None:
            self.broken = True
            self.lost.set()
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
        lost = asyncio.ensure_future(self.lost.wait())
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
                raise _TimedOut("The mail server is not answering just now. Please try again "
                                "shortly.")
            raise ConnectionError
        except DROPPED:
            self.broken = True
            raise UpstreamUnavailable("The connection to the mail server was lost. "
                                      "Please try again.") from None
        finally:
            lost.cancel()
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
            # cost of a new SELECT, which grows with the folder on some servers.
            await self.refresh()
            return
        # Deselected while the SELECT runs (RFC 3501 6.3.1): its EXISTS is the new folder's.
        self.selected = None
        resp = await self.call(self.client.select(raw_name))
        if resp.result != "OK":
            self.selected = None
            raise NotFound("That folder could not be opened. It may have been moved or "
                           "deleted.")
        self.selected = raw_name
        info = parse_select([bytes(line).strip() for line in resp.lines
                             if isinstance(line, (bytes, bytearray))])
        self.exists, self.uidvalidity = info.exists or 0, info.uidvalidity or 0

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
        idle_cmd = await self.call(self.client.idle_start(timeout=seconds + 60))
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
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.logout(), 2)


async def open_connection(target: ImapTarget, user: str, token: str) -> ImapConn:
    client = aioimaplib.IMAP4_SSL(host=target.host, port=target.port,
                                  ssl_context=target.ssl_context, timeout=target.timeout)
    try:
        await asyncio.wait_for(client.wait_hello_from_server(), target.timeout)
    except DROPPED as exc:
        with contextlib.suppress(Exception):
            client.protocol.transport.close()
        if isinstance(exc, TimeoutError):
            raise _TimedOut("The mail server is not answering just now. Please try again "
                            "shortly.") from None
        raise UpstreamUnavailable("The mail server cannot be reached just now. "
                                  "Please try again shortly.") from None
    _answer_auth_challenge(client)
    conn = ImapConn(client, target.timeout)
    try:
        resp = await asyncio.wait_for(client.xoauth2(user, token), target.timeout)
    except DROPPED as exc:
        await conn.close()
        if isinstance(exc, TimeoutError):
            raise _TimedOut("The mail server did not answer the sign-in.") from None
        raise UpstreamUnavailable("The mail server did not answer the sign-in.") from None
    if resp.result != "OK":
        await conn.close()
        said = b" ".join(bytes(x) for x in resp.lines if isinstance(x, (bytes, bytearray)))
        if any(code in said.upper() for code in BUSY_CODES):
            # Not the token: the server refuses more connections or is unwell (Exchange
            # allows about 20 per mailbox).
            raise UpstreamUnavailable("The mail server is refusing new connections for your "
                                      "mailbox just now. Close other mail apps or windows and "
                                      "try again shortly.")
        expiry = token_expiry(token)
        if expiry is not None and expiry > time.time() + TOKEN_SLACK_SECONDS:
            # Exchange says only "AUTHENTICATE failed." whatever the cause; a token still
            # inside its lifetime points at the mailbox (IMAP turned off, no consent).
            raise ImapDisabled()
        raise ReauthRequired()
    # aioimaplib keeps the pre-login capabilities; ask again (MOVE, UIDPLUS, IDLE ...).
    try:
        await conn.call(client.protocol.capability())
    except UpstreamUnavailable:
        await conn.close()
        raise
    conn.caps = frozenset(c.upper() for c in client.protocol.capabilities)
    return conn


@contextlib.asynccontextmanager
async def connect(target: ImapTarget, user: str, token: str) -> AsyncIterator[ImapConn]:
    """A one-off authenticated connection, logged out on exit (probes, tools)."""
    conn = await open_connection(target, user, token)
    try:
        yield conn
    finally:
        await conn.close()


class Runner(Protocol):
    """Runs ``fn`` on a held connection (``ImapPool.hold``)."""

    def __call__(self, fn: Callable[[ImapConn], Awaitable[T]],
                 retry: bool = True) -> Awaitable[T]: ...


@dataclass
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conn: ImapConn | None = None
    last_used: float = 0.0
    # After a timeout, calls fail at once until then: a page that asks twice, or a retry,
    # must not wait a second full timeout on a frozen server.
    silent_until: float = 0.0
    # Pages waiting for the lock; ``wanted`` is set while there are any, which ends the
    # new-mail stream's IDLE on this connection (``ImapPool.watch``) so that they get it.
    waiting: int = 0
    wanted: asyncio.Event = field(default_factory=asyncio.Event)
    # Streams waiting for the lock; ``turn_wanted`` is set while there are any, which ends
    # the IDLE holding it after STREAM_TURN seconds (``ImapPool.watch``).
    streams_waiting: int = 0
    turn_wanted: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class Watched:
    """A folder as one IDLE round left it (``ImapPool.watch``)."""

    uidvalidity: int
    exists: int
    flags_changed: bool = False


async def _end_idle_for(slot: _Slot, end: asyncio.Event) -> None:
    """Set ``end`` (which ends a stream's IDLE) as soon as a page wants the connection, or
    STREAM_TURN seconds after the IDLE began if another stream waits for it by then, or as
    soon as one starts waiting after that."""
    started = asyncio.get_running_loop().time()
    page = asyncio.ensure_future(slot.wanted.wait())
    try:
        while not page.done():
            stream = asyncio.ensure_future(slot.turn_wanted.wait())
            try:
                await asyncio.wait([page, stream], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stream.cancel()
            if page.done():
                break
            left = started + STREAM_TURN - asyncio.get_running_loop().time()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(page), left)
            if slot.turn_wanted.is_set():
                break
        end.set()
    finally:
        page.cancel()


class ImapPool:
    """One IMAP connection per session, behind a lock, reused and reconnected."""

    def __init__(self, target: ImapTarget, token_for: Callable[[str], Awaitable[str]],
                 idle_seconds: float = 600.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.target = target
        self.token_for = token_for
        self.idle_seconds = idle_seconds
        self.clock = clock
        self._slots: dict[str, _Slot] = {}
        # Called for every new connection (metrics count them).
        self.on_open: Callable[[], None] = lambda: None
        # How many times a connection lock was taken (a request should take it once).
        self.lock_acquisitions = 0

    @property
    def open_connections(self) -> int:
        return sum(1 for s in self._slots.values() if s.conn is not None)

    @contextlib.asynccontextmanager
    async def hold(self, key: str, user: str, account_id: str
                   ) -> AsyncIterator[Runner]:
        """Take this session's connection lock once and keep it for a whole request
        (``gateway.mail.session``); yields a runner for as many ``fn`` as the request needs.
        Every lock taken is counted in ``lock_acquisitions``."""
        slot = self._slots.setdefault(key, _Slot())
        async with self._page_turn(slot):
            self.lock_acquisitions += 1

            async def runner(fn: Callable[[ImapConn], Awaitable[T]], retry: bool = True) -> T:
                # Rule: a member waits at most one timeout for a frozen server, not two.
                if self.clock() < slot.silent_until:
                    raise UpstreamUnavailable("The mail server is not answering just now. "
                                              "Please try again shortly.")
                try:
                    return await self._run_locked(slot, user, account_id, fn, retry)
                except _TimedOut:
                    slot.silent_until = self.clock() + self.target.timeout
                    raise
            yield runner

    @contextlib.asynccontextmanager
    async def _page_turn(self, slot: _Slot) -> AsyncIterator[None]:
        """The slot's lock for a page: while it waits, ``wanted`` ends an IDLE holding it."""
        slot.waiting += 1
        slot.wanted.set()
        counted = True
        try:
            async with slot.lock:
                slot.waiting -= 1
                counted = False
                if slot.waiting == 0:
                    slot.wanted.clear()
                yield
        finally:
            if counted:
                slot.waiting -= 1
                if slot.waiting == 0:
                    slot.wanted.clear()

    @contextlib.asynccontextmanager
    async def _stream_turn(self, slot: _Slot) -> AsyncIterator[None]:
        """The slot's lock for a stream's IDLE round: while it waits, ``turn_wanted`` cuts the
        IDLE holding it to STREAM_TURN seconds."""
        slot.streams_waiting += 1
        slot.turn_wanted.set()
        counted = True
        try:
            async with slot.lock:
                slot.streams_waiting -= 1
                counted = False
                if slot.streams_waiting == 0:
                    slot.turn_wanted.clear()
                yield
        finally:
            if counted:
                slot.streams_waiting -= 1
                if slot.streams_waiting == 0:
                    slot.turn_wanted.clear()

    async def watch(self, key: str, user: str, account_id: str, folder: str,
                    seconds: float) -> Watched | None:
        """One round of the new-mail stream on the member's own pooled connection (Exchange
        allows few connections and dislikes logins): SELECT ``folder`` (a NOOP when it is
        selected already), then IDLE for at most ``seconds``, ended early with DONE when a
        page wants the connection. None when the server has no IDLE. A connection the server
        ended (IDLE cut after 30 minutes, ``AccessTokenExpired``) is replaced with a fresh
        token, as for a page. Not counted in ``lock_acquisitions`` (pages are). Two streams of
        one member (two tabs) take turns: while one waits, the other's IDLE ends after
        STREAM_TURN seconds."""
        slot = self._slots.setdefault(key, _Slot())

        async def one_round(conn: ImapConn) -> Watched | None:
            await conn.select(folder)
            if not conn.has("IDLE"):
                return None
            changed = False
            if not slot.wanted.is_set():
                end = asyncio.Event()
                guard = asyncio.ensure_future(_end_idle_for(slot, end))
                try:
                    changed = await conn.idle(seconds, end)
                finally:
                    guard.cancel()
            return Watched(conn.uidvalidity, conn.exists, changed)

        # The first round of a stream (``seconds`` 0: no IDLE, only the folder's state) is
        # asked for like a page, so that it does not wait behind another stream's IDLE.
        turn = self._page_turn(slot) if seconds <= 0 else self._stream_turn(slot)
        async with turn:
            if self.clock() < slot.silent_until:
                raise UpstreamUnavailable("The mail server is not answering just now.")
            try:
                return await self._run_locked(slot, user, account_id, one_round, True)
            except _TimedOut:
                slot.silent_until = self.clock() + self.target.timeout
                raise

    async def run(self, key: str, user: str, account_id: str,
                  fn: Callable[[ImapConn], Awaitable[T]], *, retry: bool = True) -> T:
        """Run ``fn`` on this session's connection. If the connection turns out to have been
        dropped (server restart, idle cut), reconnect and run ``fn`` once more."""
        async with self.hold(key, user, account_id) as runner:
            result: T = await runner(fn, retry)
            return result

    async def _run_locked(self, slot: _Slot, user: str, account_id: str,
                          fn: Callable[[ImapConn], Awaitable[T]], retry: bool) -> T:
        for attempt in (1, 2):
            if slot.conn is None or not slot.conn.alive:
                if slot.conn is not None:
                    await slot.conn.close()
                    slot.conn = None
                token = await self.token_for(account_id)
                slot.conn = await open_connection(self.target, user, token)
                self.on_open()
            conn = slot.conn
            slot.last_used = self.clock()
            try:
                return await fn(conn)
            except _TimedOut:
                raise      # frozen, not dropped: a reconnect would wait a second timeout
            except UpstreamUnavailable:
                if not conn.broken or conn.throttled or not retry or attempt == 2:
                    raise
                # Also how an expired token ends a session on Exchange ("* BYE Session
                # invalidated - AccessTokenExpired"): token_for gives a fresh one.
                log.info("imap connection dropped; reconnecting")
        raise AssertionError("unreachable")

    async def drop(self, key: str) -> None:
        slot = self._slots.pop(key, None)
        if slot is not None and slot.conn is not None:
            await slot.conn.close()

    async def reap(self) -> int:
        """Close connections idle longer than idle_seconds; returns how many."""
        now = self.clock()
        closed = 0
        for key, slot in list(self._slots.items()):
            if slot.lock.locked() or now - slot.last_used < self.idle_seconds:
                continue
            self._slots.pop(key, None)
            if slot.conn is not None:
                await slot.conn.close()
                closed += 1
        return closed

    async def close_all(self) -> None:
        for key in list(self._slots):
            await self.drop(key)
