"""Run an ASGI app under uvicorn on loopback, over TLS, inside the caller's event loop.

Used by the dev stack for the Entra and Graph stand-ins, and by the tests and the demo for the
gateway itself. Binding our own socket lets callers ask for port 0 and learn the real port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import Any

import uvicorn

from gateway.server.certs import DevCerts


class _QuietServer(uvicorn.Server):
    """uvicorn would take over SIGINT/SIGTERM; here the owner of the event loop handles
    them, and several servers share one loop."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.sockets_at_shutdown: list[asyncio.Transport] = []

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Noted before uvicorn closes anything (no connection is accepted in between):
        # see TLSServer.stop.
        self.sockets_at_shutdown = _socket_transports(self)
        await super().shutdown(sockets)


def _socket_transports(server: uvicorn.Server) -> list[asyncio.Transport]:
    """The socket transports under the server's open connections: for a TLS connection,
    the one under asyncio's TLS layer (a private attribute of asyncio.sslproto, which
    offers no public way to reach it)."""
    found = []
    for connection in server.server_state.connections:
        transport = getattr(connection, "transport", None)
        ssl_protocol = getattr(transport, "_ssl_protocol", None)
        raw = getattr(ssl_protocol, "_transport", None) if ssl_protocol is not None \
            else transport
        if isinstance(raw, asyncio.Transport):
            found.append(raw)
    return found


class TLSServer:
    def __init__(self, app: Any, certs: DevCerts | None, host: str = "127.0.0.1",
                 port: int = 0, log_level: str = "warning", **config: Any) -> None:
        self.app = app
        self.certs = certs
        self.host = host
        self.requested_port = port
        self.port = 0
        self._log_level = log_level
        self._extra = config
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.certs else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def start(self) -> None:
        # IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted connections when the
        # listening socket names its protocol, and without it every response stalls ~40 ms.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.requested_port))
        self.port = sock.getsockname()[1]
        self._sock = sock
        tls: dict[str, Any] = {}
        if self.certs:
            tls = {"ssl_certfile": str(self.certs.server_cert),
                   "ssl_keyfile": str(self.certs.server_key)}
        # proxy_headers off: uvicorn would otherwise believe X-Forwarded-For from loopback;
        # the gateway applies server.trusted_proxies itself (gateway.logging).
        options: dict[str, Any] = {"proxy_headers": False, **tls, **self._extra}
        config = uvicorn.Config(self.app, log_level=self._log_level, access_log=False,
                                lifespan="auto", timeout_graceful_shutdown=3, **options)
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the start-up error
                raise RuntimeError("server stopped during start-up")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        # uvicorn asks each open connection to close and waits timeout_graceful_shutdown for
        # them. A TLS connection whose client keeps it idle in a pool never answers the
        # close_notify, so asyncio's TLS layer waits for it (ssl_shutdown_timeout, 30 s) with
        # the socket open; uvicorn gives up first, and the socket was left to the garbage
        # collector once the loop stopped (a ResourceWarning each, an error in the tests).
        # The sockets are noted as the shutdown begins (_QuietServer.shutdown), because
        # closing the TLS transport a second time detaches it from them, and whatever is
        # still open afterwards is dropped at once: the server is going away.
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, timeout=10)
        except TimeoutError:
            self._server.force_exit = True
            self._task.cancel()
        left = [t for t in self._server.sockets_at_shutdown if not t.is_closing()]
        for transport in left:
            transport.abort()
        if left:
            await asyncio.sleep(0)     # the aborted transports close their sockets
        if self._sock is not None:
            self._sock.close()
        self._server = None
        self._task = None
