"""Opening an IMAP connection: where to (``ImapTarget``, implicit TLS with at least TLS 1.2),
the XOAUTH2 login with the member's own token (answering the challenge aioimaplib leaves
unanswered), and the capabilities after login: from the login's answer when the server
sends them there, else asked again, as aioimaplib does neither.

A refused login is sorted here: a busy server (RFC 5530 codes) is ``UpstreamUnavailable``;
a refused token is ``ReauthRequired``, or ``ImapDisabled`` when it is still inside its
lifetime (IMAP turned off for the mailbox); no answer is ``UpstreamUnavailable`` (its
``TimedOut`` kind when the server is there but silent). ``connect`` is a one-off
connection for probes and tools; pages and streams share the pooled one
(``gateway.mail.imap_pool``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aioimaplib

from gateway.errors import ImapDisabled, ReauthRequired, UpstreamUnavailable
from gateway.mail.imap import DROPPED, ImapConn, TimedOut
from gateway.mail.imap_protocol import Client, login_capabilities

# Response codes (RFC 5530) that mean "not now", as opposed to "not this token".
BUSY_CODES = (b"[LIMIT]", b"[UNAVAILABLE]", b"[INUSE]", b"[SERVERBUG]", b"[OVERQUOTA]")
# A token that Exchange refuses this long before its expiry is not refused for its age.
TOKEN_SLACK_SECONDS = 60.0


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


def token_expiry(token: str) -> float | None:
    """The ``exp`` of a JWT access token, read without checking it (the server checks it;
    this only tells "expired" apart from "refused for another reason"). None if unreadable."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError, binascii.Error):
        return None


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


async def open_connection(target: ImapTarget, user: str, token: str) -> ImapConn:
    client = Client(host=target.host, port=target.port, ssl_context=target.ssl_context,
                    timeout=target.timeout)
    try:
        await asyncio.wait_for(client.wait_hello_from_server(), target.timeout)
    except DROPPED as exc:
        with contextlib.suppress(Exception):
            client.protocol.transport.close()
        if isinstance(exc, TimeoutError):
            raise TimedOut("The mail server is not answering just now. Please try again "
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
            raise TimedOut("The mail server did not answer the sign-in.") from None
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
    # aioimaplib keeps the pre-login capabilities (MOVE, UIDPLUS, IDLE ... may differ after
    # login). A server may send them with its answer to AUTHENTICATE, and a client that reads
    # them there need not ask (RFC 3501 6.2.2 and 7.2.1; Dovecot sends them): ask only if not.
    sent = login_capabilities(resp.lines)
    if sent is not None:
        client.protocol.capabilities = sent
    else:
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
