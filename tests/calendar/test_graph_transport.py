"""The Graph client's own network layer (``gateway.graph.transport``) against a scripted HTTPS
server on loopback, on both event loops the gateway runs on: the stdlib's (the tests' and the
dev stack's) and uvloop (what ``gateway serve`` runs on). Each fault ends as the error the
member's page is built from, and the client stays usable after it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvloop

from gateway.config import load_settings
from gateway.errors import UpstreamUnavailable
from gateway.graph.client import GraphHttp, send, static_token
from gateway.graph.transport import HIGH_WATER, LoopStream
from gateway.server.certs import DevCerts, make_dev_certs

LOOPS = {"asyncio": asyncio.run, "uvloop": uvloop.run}

# What the scripted server does with one request: write this answer (or None to say
# nothing), then close the connection if asked.
Answer = Callable[[bytes], Awaitable[tuple[bytes | None, bool]]]


def ok(body: bytes, *headers: str) -> bytes:
    head = ["HTTP/1.1 200 OK", "Content-Type: application/json",
            f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class Scripted:
    """An HTTPS server whose answer to each request is ``answer(head)``."""

    certs: DevCerts
    answer: Answer
    heads: list[bytes] = field(default_factory=list)
    connections: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> str:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.certs.server_cert, self.certs.server_key)
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ctx)
        port = self.server.sockets[0].getsockname()[1]
        return f"https://127.0.0.1:{port}/v1.0"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                reply, close = await self.answer(head)
                if reply is not None:
                    writer.write(reply)
                    await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


def client(base_url: str, ca: Path, timeout: str = "2") -> GraphHttp:
    return GraphHttp.from_settings(load_settings(environ={
        "GATEWAY_GRAPH_BASE_URL": base_url, "GATEWAY_GRAPH_CA_FILE": str(ca),
        "GATEWAY_GRAPH_TIMEOUT_SECONDS": timeout}))


def scenario(loop: str, certs: DevCerts, answer: Answer,
             steps: Callable[[GraphHttp, Scripted], Coroutine[Any, Any, None]],
             timeout: str = "2") -> Scripted:
    """Run ``steps`` against a fresh scripted server and Graph client on ``loop``."""
    server = Scripted(certs, answer)

    async def main() -> None:
        url = await server.start()
        g = client(url, certs.ca_cert, timeout)
        try:
            await steps(g, server)
        finally:
            await g.aclose()
            await server.stop()
    LOOPS[loop](main())
    return server


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return make_dev_certs(tmp_path_factory.mktemp("transport-certs"))


TOKEN = static_token("not-a-real-token")


@pytest.mark.parametrize("loop", LOOPS)
def test_one_connection_carries_several_calls(loop: str, certs: DevCerts) -> None:
    answered: list[int] = []

    async def answer(head: bytes) -> tuple[bytes | None, bool]:
        answered.append(1)
        return ok(b'{"n": %d}' % len(answered)), False
    seen: list[Any] = []

    async def steps(g: GraphHttp, s: Scripted) -> None:
        for _ in range(3):
            seen.append((await send(g, TOKEN, "GET", "me/calendarView",
                                    params={"$top": "5"})).json())
    server = scenario(loop, certs, answer, steps)
    assert server.connections == 1
    assert seen == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert all(h.startswith(b"GET /v1.0/me/calendarView?%24top=5 HTTP/1.1")
               for h in server.heads)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_connection_the_server_closed_is_not_used_again(loop: str, certs: DevCerts) -> None:
    """Graph's front doors close idle keep-alive connections; the next call opens a new one
    instead of failing on the dead one."""
    async def answer(head: bytes) -> tuple[bytes | None, bool]:
        return ok(b"{}"), True      # answer, then close without saying so

    async def steps(g: GraphHttp, s: Scripted) -> None:
        for _ in range(2):
            assert (await send(g, TOKEN, "GET", "me")).json() == {}
            await asyncio.sleep(0.1)   # the close reaches the client
    server = scenario(loop, certs, answer, steps)
    assert server.connections == 2


@pytest.mark.parametrize("loop", LOOPS)
def test_a_large_answer_is_read_whole_and_held_back_while_unread(loop: str,
                                                                  certs: DevCerts) -> None:
    """Reading pauses while more than HIGH_WATER bytes wait unread, and the body arrives
    whole."""
    body = bytes(range(256)) * (4 * HIGH_WATER // 256)

    async def answer(head: bytes) -> tuple[bytes | None, bool]:
        return ok(body), False
    got: dict[str, Any] = {}

    async def steps(g: GraphHttp, s: Scripted) -> None:
        async with g.client.stream("GET", "me/large") as resp:
            await asyncio.sleep(0.3)        # the server writes on; nobody reads
            stream = resp.extensions["network_stream"]
            assert isinstance(stream, LoopStream)
            got["waiting"] = len(stream.wire.buffer)
            got["paused"] = stream.wire.reading_paused
            got["body"] = b"".join([c async for c in resp.aiter_raw()])
    scenario(loop, certs, answer, steps)
    assert got["paused"] is True
    assert HIGH_WATER < got["waiting"] < 2 * HIGH_WATER
    assert got["body"] == body


@pytest.mark.parametrize("loop", LOOPS)
def test_no_answer_is_a_timeout_not_a_hang(loop: str, certs: DevCerts) -> None:
    async def answer(head: bytes) -> tuple[bytes | None, bool]:
        await asyncio.sleep(5)
        return None, True

    async def steps(g: GraphHttp, s: Scripted) -> None:
        with pytest.raises(UpstreamUnavailable, match="in time"):
            await send(g, TOKEN, "GET", "me")
    scenario(loop, certs, answer, steps, timeout="0.3")


@pytest.mark.parametrize("loop", LOOPS)
def test_a_connection_dropped_mid_answer_is_unavailable(loop: str, certs: DevCerts) -> None:
    async def answer(head: bytes) -> tuple[bytes | None, bool]:
        return ok(b"x" * 1000)[:-900], True     # promises 1000 bytes, sends 100, closes

    async def steps(g: GraphHttp, s: Scripted) -> None:
        with pytest.raises(UpstreamUnavailable, match="cannot be reached"):
            await send(g, TOKEN, "GET", "me")
    scenario(loop, certs, answer, steps)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_certificate_from_another_ca_is_refused(loop: str, certs: DevCerts,
                                                  tmp_path: Path) -> None:
    other = make_dev_certs(tmp_path / "other")

    async def answer(head: bytes) -> tuple[bytes | None, bool]:
        return ok(b"{}"), False

    async def steps(g: GraphHttp, s: Scripted) -> None:
        wrong = client(str(g.client.base_url).rstrip("/"), other.ca_cert)
        try:
            with pytest.raises(UpstreamUnavailable, match="cannot be reached"):
                await send(wrong, TOKEN, "GET", "me")
        finally:
            await wrong.aclose()
    server = scenario(loop, certs, answer, steps)
    assert server.heads == []           # nothing was sent over the refused connection


@pytest.mark.parametrize("loop", LOOPS)
def test_a_cancelled_call_leaves_the_client_usable(loop: str, certs: DevCerts) -> None:
    """A member who leaves the page cancels its Graph call; the next member's call works."""
    async def answer(head: bytes) -> tuple[bytes | None, bool]:
        if b"/slow" in head:
            await asyncio.sleep(5)
            return None, True
        return ok(b'{"ok": true}'), False

    async def steps(g: GraphHttp, s: Scripted) -> None:
        call = asyncio.ensure_future(send(g, TOKEN, "GET", "me/slow"))
        await asyncio.sleep(0.2)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert (await send(g, TOKEN, "GET", "me/fast")).json() == {"ok": True}
    scenario(loop, certs, answer, steps)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_cookie_one_answer_sets_is_never_sent(loop: str, certs: DevCerts) -> None:
    """The client is shared by every member: a cookie from one member's answer must not ride
    on the next member's request."""
    async def answer(head: bytes) -> tuple[bytes | None, bool]:
        return ok(b"{}", "Set-Cookie: affinity=member-a; Path=/; Secure"), False

    async def steps(g: GraphHttp, s: Scripted) -> None:
        for _ in range(2):
            await send(g, TOKEN, "GET", "me")
    server = scenario(loop, certs, answer, steps)
    assert len(server.heads) == 2
    assert all(b"cookie:" not in h.lower() for h in server.heads)


@pytest.mark.parametrize(("path", "params"), [
    ("me/calendarView", {"startDateTime": "2026-10-25T00:00:00.0000000Z",
                         "$select": "subject,start", "$top": "100"}),
    ("me/events", {"$filter": "iCalUId eq 'a b&c=d/\u00e9''x'"}),
    ("me/events/AAMkAD%2Fx%3D%3D/accept", None),
    ("https://graph.microsoft.com/v1.0/me/calendarView?startDateTime=x&%24skip=100", None),
])
def test_the_url_memo_builds_what_httpx_builds(path: str, params: dict[str, str] | None
                                               ) -> None:
    g = GraphHttp.from_settings(load_settings(environ={}))
    made = g.url(path, params)
    assert made == g.client.build_request("GET", path, params=params).url
    assert g.url(path, dict(params) if params else None) is made    # kept, not rebuilt
