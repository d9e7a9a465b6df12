"""One IMAP connection per member, shared by their sessions, their pages and their
new-mail streams (Exchange allows few connections per mailbox and dislikes logins).

``ImapPool`` keeps each member's connection (keyed by account) in a slot, reuses it across
requests, reconnects once when it was dropped (also how an expired token is replaced,
keeping the message summaries parsed so far: ``_Slot.summaries``), stays
silent for a timeout after the server froze, and closes connections left idle. A request
holds the slot's lock once for the whole page (``hold``, through
``gateway.mail.session.MailSession``; ``run`` is one call under it); a new-mail stream IDLEs
on the same connection between pages (``watch``). Who gets the lock next is
``gateway.mail.imap_turns``; the connection is ``gateway.mail.imap``, the login
``gateway.mail.imap_login``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from gateway.errors import UpstreamUnavailable
from gateway.mail.imap import ImapConn, TimedOut
from gateway.mail.imap_login import ImapTarget, open_connection
from gateway.mail.imap_turns import Turns

log = logging.getLogger(__name__)
T = TypeVar("T")


class Runner(Protocol):
    """Runs ``fn`` on a held connection (``ImapPool.hold``)."""

    def __call__(self, fn: Callable[[ImapConn], Awaitable[T]],
                 retry: bool = True) -> Awaitable[T]: ...


@dataclass
class _Slot:
    turns: Turns = field(default_factory=Turns)
    conn: ImapConn | None = None
    last_used: float = 0.0
    # After a timeout, calls fail at once until then: a page that asks twice, or a retry,
    # must not wait a second full timeout on a frozen server.
    silent_until: float = 0.0
    # The member's parsed message summaries (``ImapConn.summaries``), kept here so that they
    # outlive a connection the server ended: UIDs, envelopes and structures do not change
    # within a UIDVALIDITY (RFC 3501 2.3.1.1), which is part of the key. Exchange ends a
    # connection when its token expires and cuts IDLE after 30 minutes; the page after that
    # then asks for UID and FLAGS only, as a steady one does, not 50 envelopes and
    # structures again. They go with the slot (sign-out, idle reaping).
    summaries: OrderedDict[tuple[tuple[str, int], int], Any] = field(
        default_factory=OrderedDict)


@dataclass(frozen=True)
class Watched:
    """A folder as one IDLE round left it (``ImapPool.watch``)."""

    uidvalidity: int
    exists: int
    flags_changed: bool = False


def _new_take(slot: _Slot) -> None:
    """A page or a stream has taken the connection: its first look at the selected folder
    asks the server for news (``ImapConn.fresh``)."""
    if slot.conn is not None:
        slot.conn.fresh = False


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
        # Takes begun at sign-in (``warm``), still running; ``close_all`` cancels them.
        self._warming: set[asyncio.Task[None]] = set()

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
        async with slot.turns.page():
            self.lock_acquisitions += 1
            _new_take(slot)

            async def runner(fn: Callable[[ImapConn], Awaitable[T]], retry: bool = True) -> T:
                # Rule: a member waits at most one timeout for a frozen server, not two.
                if self.clock() < slot.silent_until:
                    raise UpstreamUnavailable("The mail server is not answering just now. "
                                              "Please try again shortly.")
                try:
                    return await self._run_locked(slot, user, account_id, fn, retry)
                except TimedOut:
                    slot.silent_until = self.clock() + self.target.timeout
                    raise
            yield runner

    async def watch(self, key: str, user: str, account_id: str, folder: str,
                    seconds: float, since: Watched | None = None) -> Watched | None:
        """One round of the new-mail stream on the member's own pooled connection (Exchange
        allows few connections and dislikes logins): SELECT ``folder`` (a NOOP when it is
        selected already), then IDLE for at most ``seconds``, ended early with DONE when a
        page wants the connection. None when the server has no IDLE. A connection the server
        ended (IDLE cut after 30 minutes, ``AccessTokenExpired``) is replaced with a fresh
        token, as for a page. Not counted in ``lock_acquisitions`` (pages are). Two streams of
        one member (two tabs) take turns: while one waits, the other's IDLE ends after
        STREAM_TURN seconds. ``since`` is the folder as the stream last saw it: a round whose
        SELECT already shows it changed (mail that came while a cut connection was replaced)
        returns at once rather than IDLE past it."""
        slot = self._slots.setdefault(key, _Slot())

        async def one_round(conn: ImapConn) -> Watched | None:
            await conn.select(folder)
            if not conn.has("IDLE"):
                return None
            if since is not None and (since.uidvalidity, since.exists) != (conn.uidvalidity,
                                                                           conn.exists):
                return Watched(conn.uidvalidity, conn.exists)
            changed = False
            if not slot.turns.pages.event.is_set():
                end = asyncio.Event()
                guard = asyncio.ensure_future(slot.turns.end_idle_for(end))
                try:
                    changed = await conn.idle(seconds, end)
                finally:
                    guard.cancel()
            return Watched(conn.uidvalidity, conn.exists, changed)

        # The first round of a stream (``seconds`` 0: no IDLE, only the folder's state) is
        # asked for like a page, so that it does not wait behind another stream's IDLE.
        turn = slot.turns.page() if seconds <= 0 else slot.turns.stream()
        async with turn:
            _new_take(slot)
            if self.clock() < slot.silent_until:
                raise UpstreamUnavailable("The mail server is not answering just now.")
            try:
                return await self._run_locked(slot, user, account_id, one_round, True)
            except TimedOut:
                slot.silent_until = self.clock() + self.target.timeout
                raise

    async def run(self, key: str, user: str, account_id: str,
                  fn: Callable[[ImapConn], Awaitable[T]], *, retry: bool = True) -> T:
        """Run ``fn`` on this session's connection. If the connection turns out to have been
        dropped (server restart, idle cut), reconnect and run ``fn`` once more."""
        async with self.hold(key, user, account_id) as runner:
            result: T = await runner(fn, retry)
            return result

    def warm(self, key: str, user: str, account_id: str,
             fn: Callable[[ImapConn], Awaitable[object]]) -> None:
        """Begin ``fn`` on this member's connection in the background and return at once. At
        sign-in the first page's IMAP work (connect, login, folders, the page) is done while
        the browser follows the redirect; that page then waits for the slot's lock, as any
        take does, and finds the connection open and the page built (gateway.mail.warmed
        hands it over while it is fresh). A failure is left to that page, which meets it
        itself and tells the member: only its kind is logged."""
        async def take() -> None:
            try:
                await self.run(key, user, account_id, fn)
            except Exception as exc:  # noqa: BLE001  (the page that follows reports it)
                log.info("mail connection not warmed at sign-in: %s", type(exc).__name__)
        task = asyncio.get_running_loop().create_task(take())
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def _run_locked(self, slot: _Slot, user: str, account_id: str,
                          fn: Callable[[ImapConn], Awaitable[T]], retry: bool) -> T:
        for attempt in (1, 2):
            if slot.conn is None or not slot.conn.alive:
                if slot.conn is not None:
                    await slot.conn.close()
                    slot.conn = None
                token = await self.token_for(account_id)
                slot.conn = await open_connection(self.target, user, token)
                slot.conn.summaries = slot.summaries
                self.on_open()
            conn = slot.conn
            slot.last_used = self.clock()
            try:
                return await fn(conn)
            except TimedOut:
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
            if slot.turns.lock.locked() or now - slot.last_used < self.idle_seconds:
                continue
            self._slots.pop(key, None)
            if slot.conn is not None:
                await slot.conn.close()
                closed += 1
        return closed

    async def close_all(self) -> None:
        for task in list(self._warming):
            task.cancel()
        await asyncio.gather(*self._warming, return_exceptions=True)
        for key in list(self._slots):
            await self.drop(key)
