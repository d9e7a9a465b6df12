"""The Graph client's network layer: an httpcore network backend on the running event loop's
own transports (``LoopBackend``), and the httpx transport that uses it (``GraphTransport``).

httpx on asyncio reaches the network through anyio by default: every read and write enters a
cancel scope, and TLS is anyio's pure-Python ``TLSStream`` over the socket stream. For a
calendar page, two Graph calls, that stack was 45-50 % of the gateway's CPU
(``bench/cpu_per_page.py --profile``, 2026-12-07). The loop's own transport does the same work
in fewer layers, and under uvloop (what ``gateway serve`` runs on) its TLS and socket I/O are
compiled. httpcore still does all of HTTP/1.1 (framing, keep-alive, the pool); this module only
moves bytes, and maps every fault to the httpcore exception the anyio backend raises, so
``gateway.graph.client`` sees the same errors and timeouts as before.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any, cast

import httpcore
import httpx

# Stop reading from the socket when this much is waiting to be read by httpcore, and start
# again below the low mark: a large answer never sits whole in memory twice.
HIGH_WATER = 1 << 20
LOW_WATER = 1 << 18


def _readable(sock: socket.socket | None) -> bool:
    """Whether the kernel holds something to read (a close, most often) on ``sock``."""
    if sock is None or sock.fileno() < 0:
        return True
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    return bool(poll.poll(0))


class _Wire(asyncio.Protocol):
    """The protocol under one connection: what arrived, and who waits for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.lost: Exception | None = None
        self.closed = False
        self.reading_paused = False
        self.writing_paused = False
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport: httpcore never half-closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = self.closed = True
        self.lost = exc
        self._wake()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait(self, timeout: float | None, timed_out: type[Exception]) -> None:
        """Until the next event on this connection, or ``timed_out`` after ``timeout``. One
        waiter at a time: HTTP/1.1 in httpcore never reads and writes a connection at once."""
        waiter = self.waiter = self.loop.create_future()

        def expire() -> None:
            if not waiter.done():
                waiter.set_exception(timed_out("timed out"))
        timer = self.loop.call_later(timeout, expire) if timeout is not None else None
        try:
            await waiter
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()


class LoopStream(httpcore.AsyncNetworkStream):
    """One connection (plain or TLS) as httpcore reads and writes it."""

    def __init__(self, transport: asyncio.Transport, wire: _Wire) -> None:
        self.transport = transport
        self.wire = wire

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        w = self.wire
        while not w.buffer:
            if w.eof:
                if w.lost is not None:
                    raise httpcore.ReadError(type(w.lost).__name__)
                return b""
            await w.wait(timeout, httpcore.ReadTimeout)
        if len(w.buffer) <= max_bytes:
            data = bytes(w.buffer)
            w.buffer.clear()
        else:
            data = bytes(w.buffer[:max_bytes])
            del w.buffer[:max_bytes]
        if w.reading_paused and len(w.buffer) < LOW_WATER and not w.closed:
            w.reading_paused = False
            self.transport.resume_reading()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        w = self.wire
        if not buffer:
            return
        if w.closed or self.transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self.transport.write(buffer)
        while w.writing_paused and not w.closed:
            await w.wait(timeout, httpcore.WriteTimeout)
        if w.closed and w.lost is not None:
            raise httpcore.WriteError(type(w.lost).__name__)

    async def aclose(self) -> None:
        self.transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        loop = self.wire.loop
        try:
            async with asyncio.timeout(timeout):
                tls = await loop.start_tls(self.transport, self.wire, ssl_context,
                                           server_hostname=server_hostname)
        except TimeoutError:
            self.transport.abort()
            raise httpcore.ConnectTimeout("TLS handshake timed out") from None
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            self.transport.abort()
            raise httpcore.ConnectError(type(exc).__name__) from exc
        if tls is None:  # the connection closed during the handshake
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        self.wire.transport = tls
        return LoopStream(tls, self.wire)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self.transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self.transport.get_extra_info("sockname")
        if info == "server_addr":
            return self.transport.get_extra_info("peername")
        if info == "socket":
            return self.transport.get_extra_info("socket")
        if info == "is_readable":
            # httpcore asks this of an idle keep-alive connection: anything to read (the
            # server's close, most often) means it must not be used again.
            w = self.wire
            sock = self.transport.get_extra_info("socket")
            return bool(w.buffer) or w.eof or (sock is not None and _readable(sock))
        return None


class LoopBackend(httpcore.AsyncNetworkBackend):
    """httpcore's connections made by the running loop (``loop.create_connection``)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, wire = await loop.create_connection(
                    lambda: _Wire(loop), host, port,
                    local_addr=(local_address, 0) if local_address else None)
        except TimeoutError:
            raise httpcore.ConnectTimeout("connect timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(type(exc).__name__) from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return LoopStream(transport, wire)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the Graph client does not use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class GraphTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, with its connection pool on ``LoopBackend``."""

    def __init__(self, verify: ssl.SSLContext | bool) -> None:
        super().__init__(verify=verify, trust_env=False)
        # httpx builds the pool itself and offers no way to name its backend, so build the
        # same pool again with one, with httpx's default limits (100 connections, 20 kept
        # alive for 5 s).
        context = httpx.create_ssl_context(verify=verify, trust_env=False)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=LoopBackend())
