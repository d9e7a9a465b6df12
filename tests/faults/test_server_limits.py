"""Connection limits of the gateway as it runs (``gateway serve``, a real process): slow
headers and slow bodies are cut off, an oversized header is refused, one connection serves a
bounded number of requests (issue 14, case 7; gateway.server.limits)."""

from __future__ import annotations

import re
import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from tests.conftest import ca_context
from tests.faults.conftest import ProcGateway, Rig


@pytest.fixture
def limited(rig: Rig) -> Iterator[ProcGateway]:
    gw = ProcGateway.prepare(rig, GATEWAY_SERVER_HEADER_TIMEOUT_SECONDS="1",
                             GATEWAY_SERVER_BODY_TIMEOUT_SECONDS="1",
                             GATEWAY_SERVER_MAX_REQUESTS_PER_CONNECTION="3",
                             GATEWAY_SERVER_MAX_HEADER_BYTES="16384")
    gw.start()
    yield gw
    gw.close()


def _connect(gw: ProcGateway) -> ssl.SSLSocket:
    port = int(gw.url.rsplit(":", 1)[1])
    raw = socket.create_connection(("127.0.0.1", port), timeout=8)
    return ca_context(gw.stack).wrap_socket(raw, server_hostname="127.0.0.1")


def _read_until_closed(sock: ssl.SSLSocket, limit: float = 8.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started, data = time.monotonic(), b""
    sock.settimeout(limit)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ssl.SSLError, OSError):
        return data + b"<still open>", time.monotonic() - started
    return data, time.monotonic() - started


def test_slow_headers_get_408_and_close(limited: ProcGateway) -> None:
    """Headers sent halfway and then held: the server answers 408 and closes within the
    header timeout (it held such connections open indefinitely)."""
    with _connect(limited) as s:
        s.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        data, _ = _read_until_closed(s)
    assert data.startswith(b"HTTP/1.1 408")


def test_a_silent_connection_is_closed(limited: ProcGateway) -> None:
    """A connection that sends nothing at all is closed too."""
    with _connect(limited) as s:
        data, _ = _read_until_closed(s)
    assert b"<still open>" not in data


def test_stalled_body_is_cut_off(limited: ProcGateway) -> None:
    """A body that stops arriving is cut off after the body timeout."""
    with _connect(limited) as s:
        s.sendall(b"POST /auth/callback HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n"
                  b"Content-Length: 1000\r\n\r\nstate=abc")
        data, _ = _read_until_closed(s)
    assert b"<still open>" not in data


def test_two_megabyte_header_is_refused(limited: ProcGateway) -> None:
    """A 2 MB request header was accepted; now 400 and close."""
    with _connect(limited) as s:
        s.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Junk: " + b"a" * 2_000_000
                  + b"\r\n\r\n")
        data, _ = _read_until_closed(s)
    assert data.startswith(b"HTTP/1.1 400")


def test_one_connection_serves_a_bounded_number_of_requests(limited: ProcGateway) -> None:
    """With max_requests_per_connection = 3, the third response says Connection: close and
    the connection ends; each of the three was answered."""
    with _connect(limited) as s:
        answers, buffered = [], b""
        for _ in range(3):
            s.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            while b"\r\n\r\n" not in buffered:
                buffered += s.recv(4096)
            head, _, buffered = buffered.partition(b"\r\n\r\n")
            found = re.search(rb"(?i)content-length: *(\d+)", head)
            assert found, head
            length = int(found.group(1))
            while len(buffered) < length:
                buffered += s.recv(4096)
            buffered = buffered[length:]
            answers.append(head)
        rest, _ = _read_until_closed(s)
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers)
    assert b"connection: close" in answers[2].lower()
    assert b"connection: close" not in answers[0].lower()
    assert b"<still open>" not in rest


def _answer(sock: ssl.SSLSocket, request: bytes) -> bytes:
    """The status line and headers of the answer to one request."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.partition(b"\r\n\r\n")[0]


def test_the_header_limit_is_the_setting(limited: ProcGateway) -> None:
    """Headers within server.max_header_bytes are served; 20 KB of them in one piece, and
    the same sent in small pieces (held, never buffered beyond the limit), get 400."""
    head = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    with _connect(limited) as s:
        assert _answer(s, head + b"X-Pad: " + b"a" * 12_000 + b"\r\n\r\n").startswith(
            b"HTTP/1.1 200")
    with _connect(limited) as s:
        s.sendall(head + b"X-Pad: " + b"a" * 20_000 + b"\r\n\r\n")
        data, _ = _read_until_closed(s)
    assert data.startswith(b"HTTP/1.1 400") and b"<still open>" not in data
    with _connect(limited) as s:
        s.sendall(head + b"X-Pad: ")
        refused = b""
        try:
            for _ in range(40):       # 40 KB, 1 KB at a time, without ever ending the line
                s.sendall(b"a" * 1024)
                time.sleep(0.005)
        except OSError:
            refused = b"<closed while sending>"
        data, _ = _read_until_closed(s)
    assert (refused + data).startswith((b"HTTP/1.1 400", b"<closed while sending>"))
    assert b"<still open>" not in data


def test_ambiguous_framing_is_refused(limited: ProcGateway) -> None:
    """A request with both Content-Length and Transfer-Encoding, the request-smuggling
    shape (RFC 9112 6.1), or with two differing Content-Lengths, gets 400 and a close."""
    for framing in (b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                    b"Content-Length: 4\r\nContent-Length: 5\r\n"):
        with _connect(limited) as s:
            s.sendall(b"POST /auth/callback HTTP/1.1\r\nHost: 127.0.0.1\r\n" + framing
                      + b"\r\n0\r\n\r\n")
            data, _ = _read_until_closed(s)
        assert data.startswith(b"HTTP/1.1 400"), data[:40]
        assert b"<still open>" not in data


def test_pipelined_requests_are_answered_in_order(limited: ProcGateway) -> None:
    """Two requests sent at once are both answered, in order, on the same connection."""
    with _connect(limited) as s:
        s.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                  b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data, _ = _read_until_closed(s, limit=3)
    statuses = re.findall(rb"HTTP/1.1 (\d{3})", data)
    # /livez is open to all; any other page sends a visitor who is not signed in away.
    assert statuses[:2] == [b"200", b"303"], data[:200]
