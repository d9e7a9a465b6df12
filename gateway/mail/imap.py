"""IMAP to Exchange Online (or the dev stack's Dovecot) with the member's own XOAUTH2 token.

Owns connecting over implicit TLS, XOAUTH2 login, and turning protocol failures into the
error tree: a refused token is ``ReauthRequired``; a server that is down or slow is
``UpstreamUnavailable``; a NO/BAD is ``MailError``. Views never see a connection: they call
small functions that take one (see STYLE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aioimaplib

from gateway.errors import MailError, ReauthRequired, UpstreamUnavailable

log = logging.getLogger(__name__)


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


@contextlib.asynccontextmanager
async def connect(target: ImapTarget, user: str, token: str) -> AsyncIterator[aioimaplib.IMAP4_SSL]:
    """An authenticated connection, logged out (best effort) on exit."""
    client = aioimaplib.IMAP4_SSL(host=target.host, port=target.port,
                                  ssl_context=target.ssl_context, timeout=target.timeout)
    try:
        try:
            await asyncio.wait_for(client.wait_hello_from_server(), target.timeout)
        except (OSError, TimeoutError, aioimaplib.AioImapException):
            raise UpstreamUnavailable("The mail server cannot be reached just now. "
                                      "Please try again shortly.") from None
        _answer_auth_challenge(client)
        try:
            resp = await asyncio.wait_for(client.xoauth2(user, token), target.timeout)
        except (TimeoutError, aioimaplib.AioImapException, OSError):
            # A refused XOAUTH2 leaves the server waiting on its challenge; treat as refused.
            raise ReauthRequired() from None
        if resp.result != "OK":
            raise ReauthRequired()
        yield client
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.logout(), 2)


_EXISTS = re.compile(rb"^(\d+) EXISTS$")


async def select_count(client: aioimaplib.IMAP4_SSL, folder: str = "INBOX") -> int:
    """SELECT (read-only) a folder and return its message count."""
    try:
        resp = await client.examine(folder)
    except (TimeoutError, aioimaplib.AioImapException, OSError):
        raise UpstreamUnavailable() from None
    if resp.result != "OK":
        raise MailError(f"The folder {folder!r} could not be opened.")
    for line in resp.lines:
        if isinstance(line, (bytes, bytearray)):
            m = _EXISTS.match(bytes(line).strip())
            if m:
                return int(m.group(1))
    raise MailError("The mail server did not say how many messages there are.")
