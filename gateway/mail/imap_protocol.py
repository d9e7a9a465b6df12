"""aioimaplib's client with the per-line costs of its response reader taken out.

aioimaplib 2.0 does, for every line of a FETCH response, work that grows with the response
(``bench/cpu_per_page.py --profile``, 2026-12-03: 8.5 % of a steady inbox page's CPU was
``FetchCommand.wait_data``):

- ``FetchCommand.wait_data`` scans every line received so far for the last ``n FETCH (``
  line, then joins and counts the parentheses of all lines since: a 50-message FETCH does
  about 1,300 regex matches and joins. ``_FetchCommand`` keeps the count as lines arrive
  and gives the same answer from it.
- every line re-arms the command's timeout (a cancelled timer and a new one on the loop's
  heap). ``_FetchCommand`` notes the time of the last line instead and has its one timer
  look at it when it fires, so the timeout still means "this long with nothing from the
  server".
- ``data_received`` formats the whole chunk for a debug message whether or not anything
  logs it. The gateway never logs aioimaplib at debug (the data is mail and tokens:
  ``gateway.logging`` holds its logger at WARNING), so ``_Protocol`` skips that.

It also saves the round trips of asking for capabilities before login, and of asking for any
the server has just sent. aioimaplib asks after every greeting; the gateway reads them from a
greeting that carries them (RFC 3501 7.1: Dovecot's), and otherwise does not ask, because
nothing before login needs them (XOAUTH2 is sent with its initial response, RFC 4959, and the
health probe checks that the server offers it, or logs in with it) and those that count are
the ones after login (RFC 3501 6.2.2), which ``gateway.mail.imap_login`` asks for when the
login's answer had none. Against Exchange, whose greeting and login answer carry none, a new
connection makes two round trips after the greeting where aioimaplib made three.

And it can write several STATUS commands at once (``_Protocol.status_many``): aioimaplib sends
a command only when the one before it with the same untagged answer is done, so the folder
list's counts cost a round trip per folder; pipelined they cost about one.

And it writes a SELECT and a LIST together (``_Protocol.execute``): aioimaplib writes a
SELECT only when every other command is done, and any command only when a SELECT is, so a
cold folder page, which needs the folder's size and the folder list, took a round trip for
each. A LIST's answers are ``* LIST`` lines, which a SELECT never sends, and are routed to it
whatever order the server answers in.

And it cuts what is received into lines, literals and responses in a loop
(``_Protocol._handle_responses``): aioimaplib's own calls itself once per line with a copy of
the rest of the chunk, which costs time that grows with the square of the chunk and, from
about 990 lines in one chunk (a large mailbox's folder list read at once, as happens when
the loop was busy while it arrived), raises RecursionError inside the connection's reader,
which ends the connection. The loop takes the same steps in the same order.

Everything else (the commands, their states, the untagged answers) is aioimaplib's own code,
unchanged: only these methods differ. ``tests/mail/test_imap_protocol.py`` checks the answers
against aioimaplib's on the same lines, and the reader against aioimaplib's on the same bytes
in any chunks; ``bench/imap_reader.py`` times the reader.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable, Sequence
from typing import Any

import aioimaplib
from aioimaplib.aioimaplib import (
    AUTH,
    CONTROL_CHARS,
    CRLF,
    NONAUTH,
    SELECTED,
    Abort,
    Command,
    CommandTimeout,
    Error,
    FetchCommand,
    IMAP4ClientProtocol,
    IncompleteRead,
    Response,
    literal_data_re,
)

# A CAPABILITY response code (RFC 3501 7.1: "[CAPABILITY ...]", in a greeting or a tagged OK)
# and an untagged CAPABILITY response as aioimaplib hands it over (its "* " dropped).
_CAPABILITY_CODE = re.compile(rb"\[CAPABILITY ([\x21-\x5c\x5e-\x7e ]+)\]", re.IGNORECASE)
_UNTAGGED_CAPABILITY = re.compile(rb"CAPABILITY ([\x21-\x7e ]+)\Z", re.IGNORECASE)
# A folder list's line (``_Protocol.execute``), and the commands a LIST may go beside.
_LIST_LINE = re.compile(rb"\* LIST ", re.IGNORECASE)
_SELECTS = ("SELECT", "EXAMINE")


def _names(found: re.Match[bytes] | None) -> set[str] | None:
    names = set(found.group(1).decode("ascii").split()) if found is not None else set()
    return names if any(n.upper() == "IMAP4REV1" for n in names) else None


def login_capabilities(lines: Sequence[bytes | bytearray]) -> set[str] | None:
    """The capabilities a server sent with its answer to AUTHENTICATE (the response's lines,
    the tagged text last), or None if it sent none and they must be asked for."""
    for i, line in enumerate(lines):
        if isinstance(line, bytes | bytearray):
            found = _names(_CAPABILITY_CODE.match(line) if i == len(lines) - 1
                           else _UNTAGGED_CAPABILITY.match(line))
            if found is not None:
                return found
    return None


class _FetchCommand(FetchCommand):  # type: ignore[misc]  # aioimaplib is untyped
    """FETCH with its parenthesis count kept as lines arrive (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._depth = 0                  # '(' minus ')' since the last "n FETCH (" line
        super().__init__(*args, **kwargs)
        self._active = self._loop.time()

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        super().append_to_resp(line, result)
        # As the original: only ``bytes`` lines count (literals arrive as bytearray), and a
        # line opening a message's data starts the count again.
        if type(line) is bytes:
            depth = line.count(b"(") - line.count(b")")
            self._depth = depth if self.FETCH_MESSAGE_DATA_RE.match(line) else self._depth + depth

    def wait_data(self) -> bool:
        return self._depth != 0

    def _reset_timer(self) -> None:
        self._active = self._loop.time()

    def _timeout_callback(self) -> None:
        if self._timeout is not None:
            left = self._active + self._timeout - self._loop.time()
            if left > 0:                 # heard from the server since the timer was set
                self._timer = self._loop.call_later(left, self._timeout_callback)
                return
        super()._timeout_callback()


class _StatusBatch(Command):  # type: ignore[misc]
    """STATUS commands written together, waited on as one (``_Protocol.status_many``).

    RFC 3501 5.5 lets a client send a command without waiting for the one before, and asks
    only that commands whose answers could be confused are not sent so; each untagged STATUS
    names its mailbox, so several are never confused. To aioimaplib this is the one pending
    command whose untagged answers are STATUS: every ``* STATUS`` line gathers here. Its tag
    is the one still awaited, so aioimaplib completes it, as any command, with the last
    tagged answer; the others are taken first (``take``), in whatever order they come."""

    tag: str                         # aioimaplib's, declared for mypy

    def __init__(self, tags: Sequence[str], loop: asyncio.AbstractEventLoop,
                 timeout: float | None) -> None:
        super().__init__("STATUS", tags[-1], loop=loop, timeout=timeout)
        self.waiting = set(tags)
        self.refused = 0                 # tagged answers other than OK (a folder gone, ...)

    def take(self, tag: str, result: bytes) -> bool:
        """Note one of this batch's tagged answers but the last; False for any other line."""
        if tag not in self.waiting or len(self.waiting) == 1:
            return False
        self.waiting.discard(tag)
        if result != b"OK":
            self.refused += 1
        if len(self.waiting) == 1:
            self.tag = next(iter(self.waiting))
        self._reset_timer()
        return True


class _Protocol(IMAP4ClientProtocol):  # type: ignore[misc]
    incomplete_line: bytes           # aioimaplib's, declared for mypy
    current_command: Any

    def data_received(self, d: bytes) -> None:
        # aioimaplib's own, without its eager 'Received : %s' % d (see the module docstring).
        try:
            self._handle_responses(self.incomplete_line + d, self._handle_line,
                                   self.current_command)
            self.incomplete_line = b""
            self.current_command = None
        except IncompleteRead as incomplete_read:
            self.current_command = incomplete_read.cmd
            self.incomplete_line = incomplete_read.data

    def _handle_responses(self, data: bytes, line_handler: Callable[[bytes, Any], Any],
                          current_cmd: Any = None) -> None:
        """aioimaplib's own, step for step, as a loop (see the module docstring): the lines
        are read where they lie in the chunk, and a literal's bytes are handed over as a
        view, so nothing after them is copied. A LIST of 900 lines in one chunk took 3.1 to
        11 ms through aioimaplib's, 1.3 ms through this (``bench/imap_reader.py``,
        2026-12-07)."""
        pos, end = 0, len(data)
        view = memoryview(data)
        while True:
            if pos == end:
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                if current_cmd is not None and current_cmd.wait_data():
                    raise IncompleteRead(current_cmd)
                return
            if current_cmd is not None and current_cmd.wait_literal_data():
                rest = current_cmd.append_literal_data(view[pos:])
                pos = end - len(rest)
                if current_cmd.wait_literal_data():
                    raise IncompleteRead(current_cmd)
            crlf = data.find(CRLF, pos)
            if crlf < 0:
                raise IncompleteRead(current_cmd, data[pos:])
            line = data[pos:crlf]
            pos = crlf + 2
            cmd = line_handler(line, current_cmd)
            begin_literal = literal_data_re.match(line)
            if begin_literal:
                if cmd is None:
                    cmd = Command("NIL", "unused")
                cmd.begin_literal_data(int(begin_literal.group("size")))
                current_cmd = cmd
            elif cmd is not None and cmd.wait_data():
                current_cmd = cmd
            else:
                current_cmd = None

    async def welcome(self, command: bytes) -> None:
        # aioimaplib's own (state from the greeting, then CAPABILITY), without the CAPABILITY:
        # the greeting's are kept when it carried them (Dovecot's does; Exchange's does not),
        # and none are asked for before login (see the module docstring).
        names = _names(_CAPABILITY_CODE.search(command))
        async with self.state_condition:
            if b"PREAUTH" in command:
                self.state = AUTH
            elif b"OK" in command:
                self.state = NONAUTH
            else:
                raise Error(command.decode())
            if names is not None:
                self.capabilities = names
                self.imap_version = "IMAP4REV1"
            self.state_condition.notify_all()

    async def execute(self, command: Command, scrub: str | None = None) -> Response:
        """aioimaplib's own, except that a SELECT (or EXAMINE) and a LIST go together: one is
        written while the other is pending, where aioimaplib would wait for it. RFC 3501 5.5
        lets a client pipeline commands whose answers cannot be confused; a LIST's are
        ``* LIST`` lines, which SELECT never sends, and they are routed to the LIST
        (``_untagged_response``), so a folder page that needs both asks in one round trip."""
        if not self._beside(command):
            response: Response = await super().execute(command, scrub)
            return response
        if self.state not in (AUTH, SELECTED):
            raise Abort(f"command {command.name} illegal in state {self.state}")
        sync = command.name != "LIST"
        if sync:
            self.pending_sync_command = command
        else:
            self.pending_async_commands["LIST"] = command
        self.send(str(command), scrub=scrub)
        try:
            await command.wait()
        except CommandTimeout:
            if sync:
                self.pending_sync_command = None
            else:
                self.pending_async_commands.pop("LIST", None)
            raise
        response = command.response
        return response

    def _beside(self, command: Command) -> bool:
        """Whether ``command`` may be written now beside a pending SELECT or LIST (``execute``):
        a SELECT while nothing but a LIST is pending, or a LIST while nothing but a SELECT is."""
        pending = self.pending_async_commands
        if command.name in _SELECTS:
            return self.pending_sync_command is None and pending.keys() == {"LIST"}
        sync = self.pending_sync_command
        return (command.name == "LIST" and sync is not None and sync.name in _SELECTS
                and not pending)

    def _untagged_response(self, line: bytes) -> Any:
        # A LIST beside a SELECT (``execute``): its lines are its own, not the SELECT's, which
        # aioimaplib would give every untagged line while a SELECT is pending.
        sync = self.pending_sync_command
        if (sync is not None and sync.name in _SELECTS and "LIST" in self.pending_async_commands
                and _LIST_LINE.match(line)):
            self.pending_sync_command = None
            try:
                return super()._untagged_response(line)
            finally:
                self.pending_sync_command = sync
        return super()._untagged_response(line)

    def _response_done(self, line: bytes) -> None:
        sync = self.pending_sync_command
        listing = self.pending_async_commands.get("LIST")
        if sync is not None and listing is not None and line.partition(b" ")[0] == \
                listing.tag.encode("ascii"):
            # The LIST beside a SELECT ended first (a server may run them at once, RFC 3501 5.5).
            self.pending_sync_command = None
            try:
                super()._response_done(line)
            finally:
                self.pending_sync_command = sync
            return
        batch = self.pending_async_commands.get("STATUS")
        if isinstance(batch, _StatusBatch) and self.pending_sync_command is None:
            tag, _, response = line.partition(b" ")
            if batch.take(tag.decode("ascii", "replace"), response.partition(b" ")[0]):
                return
        super()._response_done(line)

    async def status_many(self, mailboxes: Sequence[str], items: str,
                          timeout: float | None = None) -> Response:
        """STATUS of each mailbox (quoted arguments), all written in one go, answered as one
        response: every untagged STATUS line, then the last tagged answer's text. Its result
        is OK only if every command's was; a mailbox refused (deleted since LIST) has no line.
        Waits as aioimaplib's ``execute`` waits for commands before it."""
        if self.state not in (AUTH, SELECTED):
            raise Abort(f"command STATUS illegal in state {self.state}")
        if not mailboxes:
            return Response("OK", [])
        if any(CONTROL_CHARS.search(arg) for arg in (*mailboxes, items)):
            raise ValueError("NUL, CR and LF are not allowed in STATUS command arguments")
        if self.pending_sync_command is not None:
            await self.pending_sync_command.wait()
        if self.pending_async_commands.get("STATUS") is not None:
            await self.pending_async_commands["STATUS"].wait()
        tags = [self.new_tag() for _ in mailboxes]
        batch = _StatusBatch(tags, self.loop, timeout)
        self.pending_async_commands["STATUS"] = batch
        self.transport.write(b"".join(f"{tag} STATUS {name} {items}\r\n".encode("ascii")
                                      for tag, name in zip(tags, mailboxes, strict=True)))
        try:
            await batch.wait()
        except CommandTimeout:
            self.pending_async_commands.pop("STATUS", None)
            raise
        result, lines = batch.response
        return Response("NO" if result == "OK" and batch.refused else result, lines)

    async def fetch(self, message_set: str, message_parts: str, by_uid: bool = False,
                    timeout: float | None = None) -> Response:
        response: Response = await self.execute(
            _FetchCommand(self.new_tag(), message_set, message_parts,
                          prefix="UID" if by_uid else "", loop=self.loop, timeout=timeout))
        return response


class Client(aioimaplib.IMAP4_SSL):  # type: ignore[misc]
    """``aioimaplib.IMAP4_SSL`` speaking through ``_Protocol``."""

    def create_client(self, host: str, port: int, loop: asyncio.AbstractEventLoop | None,
                      conn_lost_cb: Callable[[Exception | None], None] | None = None,
                      ssl_context: ssl.SSLContext | None = None) -> None:
        if ssl_context is None:
            ssl_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = _Protocol(local_loop, conn_lost_cb)
        self._client_task = local_loop.create_task(local_loop.create_connection(
            lambda: self.protocol, host, port, ssl=ssl_context))
