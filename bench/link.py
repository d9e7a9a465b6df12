"""A network link between a client and a server on loopback, for benchmarks: a TCP relay
that holds every byte for half a round trip each way and lets it through no faster than a
given rate, so an answer of 40 KB arrives over milliseconds, in segments, as it does from a
server across the internet, rather than in one piece as it does on loopback.

    with LinkProcess("127.0.0.1", imap_port, rtt_ms=10, mbit=100) as link:
        ... connect to 127.0.0.1:link.port ...

The relay runs in a process of its own (``python bench/link.py HOST PORT RTT_MS MBIT``
prints the port it listens on), so that the client's own work, which is what a benchmark
measures, cannot hold up the link's timing: in the client's event loop, a parse would delay
the very bytes it is waiting for.

It models delay and a fixed rate only, in 1,448-byte segments (an Ethernet MSS with TCP
timestamps). It does not model loss, jitter or TCP's slow start, which on a fresh connection
spreads a large answer out further still: what it shows is a lower bound of what a real
link does. TLS passes through it untouched; both ends see each other's certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path
from types import TracebackType

SEGMENT = 1448


class Link:
    """The relay, in the running event loop: each connection accepted is relayed to
    ``host:port``, both ways."""

    def __init__(self, host: str, port: int, rtt_ms: float, mbit: float) -> None:
        self.host, self.target_port = host, port
        self.delay = rtt_ms / 2000          # seconds, each way
        self.per_byte = 8 / (mbit * 1e6)    # seconds on the wire per byte
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(cls, host: str, port: int, rtt_ms: float, mbit: float) -> Link:
        link = cls(host, port, rtt_ms, mbit)
        link._server = await asyncio.start_server(link._accept, "127.0.0.1", 0)
        link.port = link._server.sockets[0].getsockname()[1]
        return link

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pumps):
            task.cancel()
        for task in list(self._pumps):
            with contextlib.suppress(BaseException):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pump(src, dst))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Bytes from ``src`` to ``dst``: each segment leaves when the one before it has been
        sent at the link's rate and arrives ``delay`` later, in order."""
        loop = asyncio.get_running_loop()
        free_at = 0.0      # when the link has finished sending what it was given before
        try:
            while data := await src.read(65536):
                for at in range(0, len(data), SEGMENT):
                    segment = data[at:at + SEGMENT]
                    free_at = max(loop.time(), free_at) + len(segment) * self.per_byte
                    loop.call_at(free_at + self.delay, _send, dst, segment)
            # The peer closed its side: close ours once what is on the link has arrived.
            loop.call_at(max(loop.time(), free_at) + self.delay, _close, dst)
        except (ConnectionError, OSError):
            _close(dst)


def _send(writer: asyncio.StreamWriter, segment: bytes) -> None:
    if not writer.is_closing():
        writer.write(segment)


def _close(writer: asyncio.StreamWriter) -> None:
    if not writer.is_closing():
        writer.close()


class LinkProcess:
    """A Link in a child process, for the length of a ``with`` block."""

    def __init__(self, host: str, port: int, rtt_ms: float, mbit: float) -> None:
        self._args = [sys.executable, str(Path(__file__).resolve()), host, str(port),
                      str(rtt_ms), str(mbit)]
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> LinkProcess:
        self._proc = subprocess.Popen(self._args, stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                                      text=True)
        assert self._proc.stdout is not None
        first = self._proc.stdout.readline().split()
        if first[:1] != ["port"]:
            self._proc.kill()
            raise RuntimeError("the link did not start")
        self.port = int(first[1])
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()       # the child ends when its stdin does
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()


async def _serve(host: str, port: int, rtt_ms: float, mbit: float) -> None:
    link = await Link.start(host, port, rtt_ms, mbit)
    print("port", link.port, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)   # until the parent closes it
    await link.stop()


if __name__ == "__main__":
    host, port, rtt, mbit = sys.argv[1:5]
    asyncio.run(_serve(host, int(port), float(rtt), float(mbit)))
