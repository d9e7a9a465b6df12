"""A logged-in IMAP connection kept across health rounds (the IMAP probe's, the canary's).

Exchange Online answers a burst of logins for one mailbox with ``BAD User is authenticated
but not connected`` and BYE (imapsync issue 411, node-imap issue 523), and every login is a
token check and a mailbox open on its side: a probe that logged in every 10 seconds would
trip the rule it is meant to watch. So each round checks the kept connection with NOOP and
logs in again only when that fails: the connection was dropped, the server restarted, or the
token it logged in with expired (Exchange then ends the session with ``* BYE Session
invalidated - AccessTokenExpired``). A round that fails for any other reason closes the
connection, so the next starts clean.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from gateway.errors import GatewayError
from gateway.mail.imap import ImapConn
from gateway.mail.imap_login import ImapTarget, open_connection


class KeptLogin:
    """One mailbox's connection for rounds that run one at a time (each probe is)."""

    def __init__(self, target: ImapTarget, mailbox: str, token: Callable[[], Awaitable[str]],
                 on_login: Callable[[], None] = lambda: None) -> None:
        self.target, self.mailbox, self.token = target, mailbox, token
        self.on_login = on_login
        self.conn: ImapConn | None = None
        self.logins = 0

    async def _checked(self) -> ImapConn | None:
        conn = self.conn
        if conn is None:
            return None
        if conn.alive:
            try:
                await conn.call(conn.client.noop())
                if conn.alive:
                    return conn
            except GatewayError:
                pass
        self.conn = None
        await conn.close()
        return None

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[ImapConn]:
        """The kept connection (NOOP-checked), or a new login; closed if the round fails."""
        conn = await self._checked()
        if conn is None:
            token = await self.token()
            self.on_login()
            conn = await open_connection(self.target, self.mailbox, token)
            self.logins += 1
            self.conn = conn
        try:
            yield conn
        except BaseException:
            if self.conn is conn:
                self.conn = None
            await conn.close()
            raise

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            await conn.close()
