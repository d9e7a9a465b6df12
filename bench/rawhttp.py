"""A lean HTTP/1.1 client for the throughput benchmark's closed loop (issue 16).

httpx spent about 3 ms of CPU per page view in the benchmark's own process (its models, h11,
anyio's TLS stream, gzip decoding), a third of all the CPU used on this 2-core machine: the
load generator, not the gateway, set the ceiling. This client does what the measurement needs
and nothing more: one kept-alive TLS connection per member (the member's own cookies from an
httpx sign-in), ``GET`` with ``Accept-Encoding: gzip`` as Safari sends, the status line, the
headers and the whole body read (``Content-Length`` or chunked). The body is not decompressed
except when ``check`` asks (the first page of each member is checked to be the inbox).
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from urllib.parse import urlsplit

import httpx


class RawClient:
    """One member's kept-alive connection to the gateway."""

    def __init__(self, base_url: str, ctx: ssl.SSLContext, cookies: httpx.Cookies) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 443
        self.ctx = ctx
        jar = "; ".join(f"{c.name}={c.value}" for c in cookies.jar)
        self._head = (f"Host: {parts.netloc}\r\nCookie: {jar}\r\nAccept: text/html\r\n"
                      "Accept-Encoding: gzip\r\nUser-Agent: gateway-bench\r\n\r\n").encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, check: bytes | None = None) -> int:
        """GET ``path``; the status. With ``check``, the decoded body must contain it."""
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ctx, server_hostname=self.host)
        assert self._reader is not None
        self._writer.write(f"GET {path} HTTP/1.1\r\n".encode() + self._head)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = bytearray()
            while True:
                size = int((await self._reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                if size == 0:
                    await self._reader.readuntil(b"\r\n")     # the end of no trailers
                    break
                body += await self._reader.readexactly(size)
                await self._reader.readexactly(2)
        else:
            body = bytearray(await self._reader.readexactly(int(fields.get(b"content-length",
                                                                            b"0"))))
        if fields.get(b"connection", b"").lower() == b"close":
            await self.close()
        if check is not None:
            data = bytes(body)
            if fields.get(b"content-encoding") == b"gzip":
                data = zlib.decompress(data, 16 + zlib.MAX_WBITS)
            if check not in data:
                raise RuntimeError("the page was not the one asked for")
        return status

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass
            self._writer = self._reader = None
