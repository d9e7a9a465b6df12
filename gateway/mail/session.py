"""A member's mail session for one request: their pooled IMAP connection, held once.

A page that does several things on the mailbox (open a message, check its part numbers,
list the folders) holds the connection lock for all of them (``async with session:``), as
alps' ``DoMail`` does, instead of queueing behind the member's other requests between each
step. Outside a ``with`` block each ``run`` takes the lock for that call only, so code that
runs later (an attachment streamed after the view returned) still works. Entering the block
again while it is held is harmless (the lock is not taken twice).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

from gateway.mail.imap import ImapConn
from gateway.mail.imap_pool import ImapPool, Runner, Watched

T = TypeVar("T")


class MailSession:
    """One member's connection for the length of a request (see the module docstring)."""

    def __init__(self, pool: ImapPool, key: str, user: str, account_id: str,
                 measure: Callable[[], contextlib.AbstractContextManager[Any]]
                 = contextlib.nullcontext) -> None:
        self.pool, self.key, self.user, self.account_id = pool, key, user, account_id
        # Wraps each call (the gateway's metrics time IMAP calls one by one).
        self.measure = measure
        self._depth = 0
        self._held: contextlib.AbstractAsyncContextManager[Runner] | None = None
        self._runner: Runner | None = None

    async def __aenter__(self) -> MailSession:
        self._depth += 1
        if self._depth == 1:
            self._held = self.pool.hold(self.key, self.user, self.account_id)
            try:
                self._runner = await self._held.__aenter__()
            except BaseException:
                self._depth, self._held = 0, None
                raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._depth -= 1
        if self._depth == 0 and self._held is not None:
            held, self._held, self._runner = self._held, None, None
            await held.__aexit__(kind, exc, tb)

    async def run(self, fn: Callable[[ImapConn], Awaitable[T]]) -> T:
        """Run ``fn`` on the member's connection (reconnecting once if it was dropped)."""
        with self.measure():
            if self._runner is not None:
                return await self._runner(fn)
            return await self.pool.run(self.key, self.user, self.account_id, fn)

    async def watch(self, folder: str, seconds: float,
                    since: Watched | None = None) -> Watched | None:
        """One IDLE round on the member's connection for the new-mail stream (it yields the
        connection to any page that asks; see ``ImapPool.watch``)."""
        return await self.pool.watch(self.key, self.user, self.account_id, folder, seconds,
                                     since)
