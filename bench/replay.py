"""A page's IMAP conversation, recorded from the real client and replayed by one that parses
nothing: the time Dovecot and the connection alone set under that page (issue 16).

    with recording() as talks:
        ... one gateway cold page, or one bare_cold ...
    conversation = Conversation.of(talks)        # the talk that logged in and fetched
    seconds = await conversation.replay(host, port, ssl_context, email, token)

``recording`` notes, for each IMAP connection made while it is open, every write the client
makes and every chunk it receives (aioimaplib's protocol and the gateway's ``_Protocol``,
patched for the duration only; the gateway's code is not changed). ``Conversation.of`` turns
that into turns: the commands written together, and the commands whose tagged completion
the client had read before it wrote them. ``replay`` opens a new TLS connection and plays
the turns, each written as soon as the completions it waited for have come, reading the
answers line by line (literals by their size) and looking at nothing but the tags. Beyond
the TLS handshake and the reading every client does, it does nothing (``inbox_latency.py``
prints its CPU a replay beside the bare script's), so what it times is the server's work,
the connection and the round trips the conversation needs: a floor under any client that
holds that conversation, however fast its parse and render.

The login is replayed with a fresh token (``AUTHENTICATE XOAUTH2`` with its initial
response, as both clients send it); what was recorded, the token included, stays in memory
and is never printed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aioimaplib.aioimaplib import IMAP4ClientProtocol

from gateway.mail.imap_protocol import _Protocol

_TAG = re.compile(rb"([A-Za-z0-9]+) ")
_LITERAL = re.compile(rb"~?\{(\d+)\+?\}\r\n\Z")
_DONE = re.compile(rb"([A-Za-z0-9]+) (OK|NO|BAD)[ \r]")


@dataclass
class Talk:
    """One connection's traffic as the client saw it: ("w", bytes) or ("r", bytes)."""
    events: list[tuple[str, bytes]]


@contextlib.contextmanager
def recording() -> Iterator[list[Talk]]:
    """Record the IMAP traffic of every connection whose first chunk arrives inside."""
    talks: list[Talk] = []
    transports: list[Any] = []   # whose write is wrapped, until the recording ends
    classes = [c for c in (IMAP4ClientProtocol, _Protocol) if "data_received" in c.__dict__]
    originals = {c: c.__dict__["data_received"] for c in classes}

    def patched(cls: type) -> Any:
        original = originals[cls]

        def data_received(self: Any, data: bytes) -> None:
            talk = self.__dict__.get("_bench_talk")
            if talk is None:
                # The greeting is the first chunk, before the client writes anything.
                talk = self._bench_talk = Talk([])
                talks.append(talk)
                write = self.transport.write

                def recorded_write(out: bytes) -> None:
                    talk.events.append(("w", bytes(out)))
                    write(out)

                self.transport.write = recorded_write
                transports.append(self.transport)
            talk.events.append(("r", bytes(data)))
            original(self, data)
        return data_received

    for cls in classes:
        setattr(cls, "data_received", patched(cls))  # noqa: B010
    try:
        yield talks
    finally:
        for cls, original in originals.items():
            setattr(cls, "data_received", original)  # noqa: B010
        for transport in transports:   # a pooled connection lives on, unrecorded
            transport.__dict__.pop("write", None)


@dataclass(frozen=True)
class Turn:
    data: bytes                 # the commands written together
    after: frozenset[bytes]     # tags whose completion the client had read before writing


@dataclass(frozen=True)
class Conversation:
    login_tag: bytes
    turns: tuple[Turn, ...]     # after the login
    tags: frozenset[bytes]      # every command's, the login's included
    commands: tuple[str, ...]   # the commands' names and counts, for the printout

    @classmethod
    def of(cls, talks: list[Talk]) -> Conversation:
        """The recorded talk that logged in with XOAUTH2 and fetched."""
        for talk in talks:
            writes = b"".join(d for kind, d in talk.events if kind == "w")
            if b" AUTHENTICATE XOAUTH2 " in writes and b" FETCH " in writes:
                return cls._from(talk)
        raise RuntimeError("no recorded IMAP connection logged in and fetched")

    @classmethod
    def _from(cls, talk: Talk) -> Conversation:
        done: set[bytes] = set()
        replayed: set[bytes] = set()   # tags of the commands the replay sends
        received = b""
        turns: list[Turn] = []
        login_tag = b""
        for kind, data in talk.events:
            if kind == "r":
                received += data
                *lines, received = received.split(b"\r\n")
                for line in lines:
                    m = _DONE.match(line + b"\r")
                    if m is not None and m.group(1) in replayed:
                        done.add(m.group(1))
                continue
            if b" AUTHENTICATE XOAUTH2 " in data:
                login_tag = data.split(b" ", 1)[0]   # replayed with a fresh token
                replayed.add(login_tag)
                continue
            # Before login (aioimaplib's CAPABILITY) the replay sends nothing, and LOGOUT,
            # which the bare script does not time, it sends after its clock stops.
            if not login_tag or b" LOGOUT\r\n" in data:
                continue
            replayed.update(t.group(1) for line in data.split(b"\r\n")[:-1]
                            if (t := _TAG.match(line)) is not None)
            after = frozenset(done)
            if turns and turns[-1].after == after:
                turns[-1] = Turn(turns[-1].data + data, after)
            else:
                turns.append(Turn(data, after))
        names = [" ".join(words[1:3] if words[1] == "UID" else words[1:2])   # "UID FETCH"
                 for turn in turns for line in turn.data.split(b"\r\n")[:-1]
                 if len(words := line.decode("ascii", "replace").split(" ")) > 1]
        commands = tuple(f"{name} x{names.count(name)}" if names.count(name) > 1 else name
                         for name in dict.fromkeys(names))
        return cls(login_tag, tuple(turns), frozenset(replayed), commands)

    async def replay(self, host: str, port: int, context: ssl.SSLContext, email: str,
                     token: str) -> float:
        """Seconds from connect to the last command's completion. LOGOUT is not timed."""
        login = (self.login_tag + b" AUTHENTICATE XOAUTH2 "
                 + base64.b64encode(f"user={email}\x01auth=Bearer {token}\x01\x01".encode())
                 + b"\r\n")
        t = time.perf_counter()
        reader, writer = await asyncio.open_connection(host, port, ssl=context)
        try:
            done: set[bytes] = set()
            await reader.readuntil(b"\r\n")   # the greeting
            writer.write(login)
            for turn in self.turns:
                while not turn.after <= done:
                    await _read_response(reader, done)
                writer.write(turn.data)
            while not self.tags <= done:
                await _read_response(reader, done)
            seconds = time.perf_counter() - t
            writer.write(b"Z LOGOUT\r\n")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.read(), 5)
            return seconds
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader, done: set[bytes]) -> None:
    """One response, literals read by their size; a completion's tag goes into ``done``."""
    line = await reader.readuntil(b"\r\n")
    while (literal := _LITERAL.search(line)) is not None:
        await reader.readexactly(int(literal.group(1)))
        line = await reader.readuntil(b"\r\n")
    m = _DONE.match(line)
    if m is None:
        return
    if m.group(2) != b"OK":
        raise RuntimeError(f"the replayed command {m.group(1)!r} was refused")
    done.add(m.group(1))
