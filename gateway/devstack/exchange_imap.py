"""Exchange Online's IMAP personality for the dev stack: a small asyncio proxy in front of the
private Dovecot that refuses what Exchange refuses and ends sessions as Exchange ends them.

Dovecot (with ``imap_capability`` set to Exchange's list, see ``mailserver``) keeps the mail;
this proxy owns the behaviours Dovecot settings cannot give. Each one names its source:

* Commands outside Exchange's capability list are refused even when a client sends them:
  SORT, THREAD, ESEARCH (``SEARCH RETURN``), CONDSTORE (``CHANGEDSINCE``, ``MODSEQ``,
  ``UNCHANGEDSINCE``, ``SELECT ... (CONDSTORE)``), with Exchange's
  ``BAD Command Argument Error. 11`` (DirectoryTree/ImapEngine issue 109, MailKit issue 1139).
  ``ENABLE`` enables nothing (``* ENABLED`` with no names, RFC 5161 section 3): Exchange's
  list has no UTF8=ACCEPT, CONDSTORE or QRESYNC (MailKit issue 2016's protocol log).
* ``SEARCH CHARSET`` other than US-ASCII: ``NO [BADCHARSET (US-ASCII)] The specified charset
  is not supported.`` (MailKit issues 16 and 808, angus-mail 145, go-imap 48, php-imap 184,
  node-imap 802).
* When the token a connection logged in with expires, Exchange ends the session with
  ``* BYE Session invalidated - AccessTokenExpired`` (aioimaplib issue 83).
* Exchange's greeting carries no capabilities and neither does its answer to AUTHENTICATE
  (``* OK The Microsoft Exchange IMAP4 service is ready. [<base64 server name>]`` and
  ``OK AUTHENTICATE completed.``, after which clients ask CAPABILITY: the protocol logs in
  MailKit issues 460 and 1496 and email-oauth2-proxy issue 68). Dovecot sends both (a
  ``[CAPABILITY ...]`` code in its greeting, an untagged CAPABILITY with its OK), so the
  proxy rewrites the greeting and the login's answer to Exchange's.
* IDLE is ended by the server after 30 minutes (``idle_timeout``, short in tests) with
  ``* BYE Connection closed. 14``, the words Exchange closes with (imapsync issue 5); the
  30 minutes are RFC 2177's "at least every 29 minutes" and practitioners' reports.
* A burst of logins for one mailbox (``login_burst``: so many within so many seconds) is
  answered ``BAD User is authenticated but not connected.`` and BYE (imapsync issue 411,
  node-imap issue 523). Off unless set: Microsoft publishes no figure.
* At most 20 connections per mailbox (``max_connections``): "Maximum concurrent IMAP
  connections: 20" in Microsoft's Exchange Online throttling and limits FAQ (Exchange Dev
  blog, 2011-06-23; the field notes' "about 20"). A login beyond it is refused with
  ``NO [LIMIT]`` (RFC 5530's code; Microsoft publishes no wording). Dovecot's
  ``mail_max_userip_connections = 20`` stays behind it as a second net.

Logins that Dovecot accepted are counted per mailbox (``logins``), and the open logged-in
sessions too (``connected``), so that tests can hold the gateway to "one connection per
member" and "probes do not log in every round".

The proxy reads both directions as IMAP lines with their literals (``{n}``/``{n+}``), so an
answer it writes never lands inside one of Dovecot's responses. It logs no mail or tokens.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import logging
import re
import ssl
import time
from dataclasses import dataclass, field

import jwt

log = logging.getLogger(__name__)

ARGUMENT_ERROR = b"BAD Command Argument Error. 11"
BADCHARSET = b"NO [BADCHARSET (US-ASCII)] The specified charset is not supported."
TOKEN_EXPIRED = b"* BYE Session invalidated - AccessTokenExpired"
NOT_CONNECTED = b"BAD User is authenticated but not connected."
CLOSED = b"* BYE Connection closed. 14"
# The bracket names the server, in base64 of UTF-16LE, as Exchange's does (an invented name).
GREETING = (b"* OK The Microsoft Exchange IMAP4 service is ready. ["
            + base64.b64encode("LO2P265CA0001.GBRP265.PROD.OUTLOOK.COM".encode("utf-16-le"))
            + b"]\r\n")
AUTHENTICATED = b"OK AUTHENTICATE completed."
TOO_MANY = b"NO [LIMIT] Too many simultaneous connections for this mailbox."
MAX_CONNECTIONS = 20
IDLE_TIMEOUT = 30 * 60.0

_REFUSED_COMMANDS = {b"SORT", b"THREAD"}
_CONDSTORE_WORDS = (b"CHANGEDSINCE", b"UNCHANGEDSINCE", b"MODSEQ", b"CONDSTORE")
_LITERAL = re.compile(rb"\{(\d+)(\+?)\}\r?\n\Z")
_QUOTED = re.compile(rb'"(?:[^"\\]|\\.)*"')
_MAX_LINE = 1 << 20
# Dovecot's answers: a BODYSTRUCTURE of ten thousand parts is one line of several MB, which
# asyncio's default 64 KiB limit would turn into a dropped connection Exchange never gives.
_MAX_UPSTREAM_LINE = 64 << 20


@dataclass
class _LoginLog:
    """Recent logins per mailbox, for the burst rule."""
    times: dict[str, collections.deque[float]] = field(default_factory=dict)

    def burst(self, user: str, limit: tuple[int, float] | None) -> bool:
        if limit is None:
            return False
        count, window = limit
        now = time.monotonic()
        q = self.times.setdefault(user, collections.deque())
        while q and now - q[0] > window:
            q.popleft()
        q.append(now)
        return len(q) > count


def _xoauth2_claims(blob_b64: bytes) -> tuple[str, float] | None:
    """(user, exp) from an XOAUTH2 initial response, or None when it cannot be read. The
    token's signature is Dovecot's to check; the proxy only needs to know when it ends."""
    try:
        blob = base64.b64decode(blob_b64, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None
    user, token = "", ""
    for part in blob.split("\x01"):
        if part.startswith("user="):
            user = part[5:].lower()
        elif part.lower().startswith("auth=bearer "):
            token = part[12:].strip()
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    return (user, float(exp)) if user and isinstance(exp, int | float) else None


def _words(line: bytes) -> list[bytes]:
    return _QUOTED.sub(b'""', line).upper().split()


class _Session:
    def __init__(self, proxy: ExchangeImapProxy, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.reader, self.writer = reader, writer
        self.up_reader: asyncio.StreamReader | None = None
        self.up_writer: asyncio.StreamWriter | None = None
        self.lock = asyncio.Lock()
        self.auth_tag: bytes | None = None
        self.auth_claims: tuple[str, float] | None = None
        self.awaiting_auth_blob = False
        self.timers: list[asyncio.Task[None]] = []
        self.idle_timer: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        # The mailbox this session logged in to (counted in proxy.connected while open).
        self.user: str | None = None
        self.greeted = False

    async def run(self) -> None:
        try:
            self.up_reader, self.up_writer = await asyncio.open_connection(
                self.proxy.upstream_host, self.proxy.upstream_port,
                ssl=self.proxy.upstream_ssl, limit=_MAX_UPSTREAM_LINE)
        except OSError:
            await self._close()
            return
        tasks = [asyncio.create_task(self._client_to_server()),
                 asyncio.create_task(self._server_to_client())]
        try:
            await self.closed.wait()
        finally:
            for t in [*tasks, *self.timers]:
                t.cancel()
            if self.idle_timer:
                self.idle_timer.cancel()
            if self.user is not None:
                self.proxy.connected[self.user] -= 1
                self.user = None
            await self._close()

    async def _close(self) -> None:
        for w in (self.writer, self.up_writer):
            if w is None:
                continue
            w.close()
            with contextlib.suppress(OSError, ssl.SSLError, ConnectionError):
                await asyncio.wait_for(w.wait_closed(), 1)

    async def _send(self, *lines: bytes, then_close: bool = False) -> None:
        async with self.lock:
            with contextlib.suppress(OSError, ConnectionError):
                self.writer.write(b"".join(x + b"\r\n" for x in lines))
                await self.writer.drain()
        if then_close:
            self.closed.set()

    async def _client_to_server(self) -> None:
        assert self.up_writer is not None
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    break
                forward = await self._inspect(line)
                if forward:
                    self.up_writer.write(line)
                await self._pass_literals(line, self.reader, self.up_writer, forward)
                await self.up_writer.drain()
        except (OSError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        self.closed.set()

    async def _pass_literals(self, line: bytes, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter | None, forward: bool) -> None:
        """Copy (or, for a refused command, drop) the literals that follow ``line``."""
        while (m := _LITERAL.search(line)) is not None:
            if not forward and not m.group(2):
                return  # a refused synchronising literal: the client sends no data
            data = await reader.readexactly(int(m.group(1)))
            line = await reader.readline()
            if forward and writer is not None:
                writer.write(data + line)

    async def _inspect(self, line: bytes) -> bool:
        """Whether to pass a client line to Dovecot; answers it here when Exchange would."""
        if self.awaiting_auth_blob:
            self.awaiting_auth_blob = False
            self.auth_claims = _xoauth2_claims(line.strip())
            return True
        words = _words(line)
        if len(words) < 2:
            return True
        tag, cmd, args = line.split(b" ", 1)[0], words[1], words[2:]
        if cmd == b"UID" and args:
            cmd, args = args[0], args[1:]
        if cmd in _REFUSED_COMMANDS or (cmd == b"SEARCH" and args[:1] == [b"RETURN"]) or \
                (cmd in (b"SELECT", b"EXAMINE", b"FETCH", b"STORE", b"SEARCH")
                 and any(w.strip(b"()") in _CONDSTORE_WORDS for w in args)):
            await self._send(tag + b" " + ARGUMENT_ERROR)
            return False
        if cmd == b"SEARCH" and args[:1] == [b"CHARSET"] and \
                (len(args) < 2 or args[1].strip(b'"') != b"US-ASCII"):
            await self._send(tag + b" " + BADCHARSET)
            return False
        if cmd == b"ENABLE":
            await self._send(b"* ENABLED", tag + b" OK ENABLE completed.")
            return False
        if cmd == b"AUTHENTICATE" and args[:1] == [b"XOAUTH2"]:
            self.auth_tag = tag
            raw = line.split()
            if len(raw) >= 4:
                self.auth_claims = _xoauth2_claims(raw[3])
            else:
                self.awaiting_auth_blob = True
        elif cmd == b"IDLE":
            self._arm_idle()
        return True

    def _arm_idle(self) -> None:
        async def end_idle() -> None:
            await asyncio.sleep(self.proxy.idle_timeout)
            await self._send(CLOSED, then_close=True)
        if self.idle_timer:
            self.idle_timer.cancel()
        self.idle_timer = asyncio.create_task(end_idle())

    async def _server_to_client(self) -> None:
        assert self.up_reader is not None
        try:
            while True:
                line = await self.up_reader.readline()
                if not line:
                    break
                pieces = [line]
                while (m := _LITERAL.search(line)) is not None:
                    pieces.append(await self.up_reader.readexactly(int(m.group(1))))
                    line = await self.up_reader.readline()
                    pieces.append(line)
                first = pieces[0]
                if not self.greeted:
                    self.greeted = True
                    if first.upper().startswith(b"* OK"):
                        pieces = [GREETING]          # not Dovecot's, with its capabilities
                elif self.auth_tag and first.upper().startswith(b"* CAPABILITY"):
                    continue                         # Exchange sends none with its login OK
                if self.idle_timer and not first.startswith((b"* ", b"+ ", b"+\r")):
                    self.idle_timer.cancel()          # IDLE (or whatever ran) has ended
                    self.idle_timer = None
                if self.auth_tag and first.startswith(self.auth_tag + b" "):
                    tag, self.auth_tag = self.auth_tag, None
                    ok = first[len(tag) + 1:].upper().startswith(b"OK")
                    if ok and await self._logged_in(tag):
                        return
                    if ok:
                        pieces = [tag + b" " + AUTHENTICATED + b"\r\n"]
                async with self.lock:
                    self.writer.write(b"".join(pieces))
                    await self.writer.drain()
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        self.closed.set()

    async def _logged_in(self, tag: bytes) -> bool:
        """After Dovecot accepted a login: the connection limit, the burst rule, then the
        expiry timer. True when the session was ended here."""
        claims, self.auth_claims = self.auth_claims, None
        if claims is None:
            return False
        user, exp = claims
        self.proxy.logins[user] += 1
        if self.proxy.connected[user] >= self.proxy.max_connections:
            await self._send(tag + b" " + TOO_MANY, then_close=True)
            return True
        self.user = user
        self.proxy.connected[user] += 1
        if self.proxy.login_log.burst(user, self.proxy.login_burst):
            await self._send(b"* " + NOT_CONNECTED, CLOSED, then_close=True)
            return True

        async def expire() -> None:
            await asyncio.sleep(max(0.0, exp - time.time()))
            await self._send(TOKEN_EXPIRED, then_close=True)
        self.timers.append(asyncio.create_task(expire()))
        return False


class ExchangeImapProxy:
    """Listens on ``host:port`` (implicit TLS) and relays to Dovecot on ``upstream_port``."""

    def __init__(self, host: str, port: int, upstream_port: int, *,
                 server_ssl: ssl.SSLContext, upstream_ssl: ssl.SSLContext,
                 idle_timeout: float = IDLE_TIMEOUT,
                 login_burst: tuple[int, float] | None = None,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.host, self.port = host, port
        self.upstream_host, self.upstream_port = host, upstream_port
        self.server_ssl, self.upstream_ssl = server_ssl, upstream_ssl
        self.idle_timeout = idle_timeout
        self.login_burst = login_burst
        self.max_connections = max_connections
        self.login_log = _LoginLog()
        # Accepted logins per mailbox (ever) and logged-in sessions open now.
        self.logins: collections.Counter[str] = collections.Counter()
        self.connected: collections.Counter[str] = collections.Counter()
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, ssl=self.server_ssl, limit=_MAX_LINE,
            reuse_address=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await _Session(self, reader, writer).run()
        finally:
            self._sessions.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._sessions):
                t.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
