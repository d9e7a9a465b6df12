"""Fixtures for the failover switch, audit trail and notifications: a manual clock, a store
that can be made to fail, and real receivers on loopback (an HTTP webhook receiver on a
plain asyncio server, an aiosmtpd SMTP server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from gateway.devstack.procs import free_port
from gateway.errors import StoreUnavailable
from gateway.store.sqlite import SqliteStore


class ManualClock:
    """Time that moves only when the test says so."""

    def __init__(self, start: float = 1_780_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def store(tmp_path: Any) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "failover.db")
    await s.open()
    yield s
    await s.close()


class FlakyStore:
    """Wraps a real store; while ``down`` every call raises StoreUnavailable."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        async def call(*args: Any, **kw: Any) -> Any:
            if self.down:
                raise StoreUnavailable()
            return await target(*args, **kw)
        return call


@pytest.fixture
def flaky(store: SqliteStore) -> FlakyStore:
    return FlakyStore(store)


@dataclass
class WebhookReceiver:
    """A loopback HTTP server that answers with the next status in ``statuses`` (then 200)
    and keeps every JSON body it was sent."""

    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    bodies: list[Any] = field(default_factory=list)
    url: str = ""
    server: asyncio.base_events.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode("latin-1").split("\r\n"):
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await reader.readexactly(length)
            self.bodies.append(json.loads(body))
            if self.delay:
                await asyncio.sleep(self.delay)
            status = self.statuses.pop(0) if self.statuses else 200
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n".encode())
            await writer.drain()
        finally:
            writer.close()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook/secret-token"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    r = WebhookReceiver()
    await r.start()
    yield r
    await r.stop()


class _Collect:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@dataclass
class SmtpReceiver:
    host: str
    port: int
    handler: _Collect


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    handler = _Collect()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpReceiver("127.0.0.1", port, handler)
    finally:
        controller.stop()
