"""Who gets a member's one IMAP connection next: pages before new-mail streams, and the
streams of one member (two tabs on two folders) taking turns.

One connection IDLEs on one folder at a time, behind one lock (``Turns.lock``). A page
waiting for it sets ``pages.event``, which ends the IDLE holding it at once; a stream waiting
sets ``streams.event``, which ends that IDLE STREAM_TURN seconds after it began
(``end_idle_for``).
The pool (``gateway.mail.imap_pool``) takes ``page()`` for a request and ``stream()`` for an
IDLE round; the connection itself is ``gateway.mail.imap``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

# How long one new-mail stream's IDLE may keep the connection while another stream of the same
# member waits (two tabs on two folders: one connection IDLEs on one folder at a time). News
# in the waiting tab's folder is then at most about this late, not a whole IDLE round.
STREAM_TURN = 10.0


@dataclass
class Waiters:
    """How many wait for the lock, and an event that is set while any do."""

    count: int = 0
    event: asyncio.Event = field(default_factory=asyncio.Event)

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        self.count += 1
        self.event.set()
        try:
            yield
        finally:
            self.count -= 1
            if self.count == 0:
                self.event.clear()


@dataclass
class Turns:
    """The lock of one member's connection and who is waiting for it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Pages waiting for the lock: while there are any, ``pages.event`` ends the new-mail
    # stream's IDLE on this connection (``end_idle_for``) so that they get it.
    pages: Waiters = field(default_factory=Waiters)
    # Streams waiting for the lock: while there are any, ``streams.event`` ends the IDLE
    # holding it after STREAM_TURN seconds (``end_idle_for``).
    streams: Waiters = field(default_factory=Waiters)

    @contextlib.asynccontextmanager
    async def _take(self, who: Waiters) -> AsyncIterator[None]:
        with who.waiting():      # counted until the lock is ours, or the wait is cancelled
            await self.lock.acquire()
        try:
            yield
        finally:
            self.lock.release()

    def page(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The lock for a page: while it waits, ``pages.event`` ends an IDLE holding it."""
        return self._take(self.pages)

    def stream(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The lock for a stream's IDLE round: while it waits, ``streams.event`` cuts the
        IDLE holding it to STREAM_TURN seconds."""
        return self._take(self.streams)

    async def end_idle_for(self, end: asyncio.Event) -> None:
        """Set ``end`` (which ends a stream's IDLE) as soon as a page wants the connection, or
        STREAM_TURN seconds after the IDLE began if another stream waits for it by then, or
        as soon as one starts waiting after that."""
        started = asyncio.get_running_loop().time()
        page = asyncio.ensure_future(self.pages.event.wait())
        try:
            while not page.done():
                stream = asyncio.ensure_future(self.streams.event.wait())
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
                if self.streams.event.is_set():
                    break
            end.set()
        finally:
            page.cancel()
