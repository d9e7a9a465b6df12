"""Who gets a member's one IMAP connection next: pages before new-mail streams, and the
streams of one member (two tabs on two folders) taking turns.

One connection IDLEs on one folder at a time, behind one lock (``Turns.lock``). A page
waiting for it sets ``wanted``, which ends the IDLE holding it at once; a stream waiting sets
``turn_wanted``, which ends that IDLE STREAM_TURN seconds after it began (``end_idle_for``).
The pool (``gateway.mail.imap_pool``) takes ``page()`` for a request and ``stream()`` for an
IDLE round; the connection itself is ``gateway.mail.imap``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

# How long one new-mail stream's IDLE may keep the connection while another stream of the same
# member waits (two tabs on two folders: one connection IDLEs on one folder at a time). News
# in the waiting tab's folder is then at most about this late, not a whole IDLE round.
STREAM_TURN = 10.0


@dataclass
class Turns:
    """The lock of one member's connection and who is waiting for it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Pages waiting for the lock; ``wanted`` is set while there are any, which ends the
    # new-mail stream's IDLE on this connection (``end_idle_for``) so that they get it.
    waiting: int = 0
    wanted: asyncio.Event = field(default_factory=asyncio.Event)
    # Streams waiting for the lock; ``turn_wanted`` is set while there are any, which ends
    # the IDLE holding it after STREAM_TURN seconds (``end_idle_for``).
    streams_waiting: int = 0
    turn_wanted: asyncio.Event = field(default_factory=asyncio.Event)

    @contextlib.asynccontextmanager
    async def page(self) -> AsyncIterator[None]:
        """The lock for a page: while it waits, ``wanted`` ends an IDLE holding it."""
        self.waiting += 1
        self.wanted.set()
        counted = True
        try:
            async with self.lock:
                self.waiting -= 1
                counted = False
                if self.waiting == 0:
                    self.wanted.clear()
                yield
        finally:
            if counted:
                self.waiting -= 1
                if self.waiting == 0:
                    self.wanted.clear()

    @contextlib.asynccontextmanager
    async def stream(self) -> AsyncIterator[None]:
        """The lock for a stream's IDLE round: while it waits, ``turn_wanted`` cuts the IDLE
        holding it to STREAM_TURN seconds."""
        self.streams_waiting += 1
        self.turn_wanted.set()
        counted = True
        try:
            async with self.lock:
                self.streams_waiting -= 1
                counted = False
                if self.streams_waiting == 0:
                    self.turn_wanted.clear()
                yield
        finally:
            if counted:
                self.streams_waiting -= 1
                if self.streams_waiting == 0:
                    self.turn_wanted.clear()

    async def end_idle_for(self, end: asyncio.Event) -> None:
        """Set ``end`` (which ends a stream's IDLE) as soon as a page wants the connection, or
        STREAM_TURN seconds after the IDLE began if another stream waits for it by then, or
        as soon as one starts waiting after that."""
        started = asyncio.get_running_loop().time()
        page = asyncio.ensure_future(self.wanted.wait())
        try:
            while not page.done():
                stream = asyncio.ensure_future(self.turn_wanted.wait())
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
                if self.turn_wanted.is_set():
                    break
            end.set()
        finally:
            page.cancel()
