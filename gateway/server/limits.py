"""What one HTTP connection may cost the gateway: the limits on uvicorn's httptools protocol.

uvicorn (0.55) bounds only the idle time between requests on a kept-alive connection. Left
alone, a client may send headers or a body one byte at a time for ever, hold a request header
of any size (httptools has no limit), and reuse one connection without end. Rule: anonymous
clients cannot make the gateway do unbounded work or hold unbounded state, so every
connection gets, from the settings table (``server.*``, documented in
``docs/configuration.md``):

- ``header_timeout_seconds``: the request line and headers must arrive within this time of
  the connection opening, or of the first byte of the next request; else 408 and close.
- ``body_timeout_seconds``: the longest pause while a request body arrives (a pause of ours,
  when the app has not read yet, does not count); else the connection is closed.
- ``max_header_bytes``: the request line and headers; larger gets 400 and close. Counted as
  the parser hands them over, and, so that nothing larger is ever held, as bytes arrive
  while a request's headers are still incomplete.
- ``max_requests_per_connection``: after this many, the response says ``Connection: close``.
- ``keepalive_seconds``: uvicorn's idle limit between requests.

Why httptools (llhttp, in C) and not h11: h11 parses in Python, and it was a fifth of the
gateway's CPU on a steady inbox page (``bench/cpu_per_page.py``, 2026-12-03: 4.13 ms of CPU
per page with h11, 3.20 ms with httptools). The in-process servers of the tests and the dev
stack already ran on httptools (uvicorn's default when it is installed).

``uvicorn_options(settings)`` gives the uvicorn keyword arguments; the protocol class reads
its limits from class attributes that ``configure(settings)`` sets, so that each worker
process (which builds its app through ``gateway.app.from_environment``) applies them too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.config import Settings

log = logging.getLogger(__name__)
REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\n"
                   b"content-length: 28\r\nconnection: close\r\n\r\nThe request came too slowly.")
HEADERS_TOO_LARGE = "Invalid HTTP request received."   # uvicorn's words for a bad request


class _HeadersTooLarge(Exception):
    """Raised inside a parser callback: httptools turns it into an HttpParserError, which
    uvicorn answers with 400 and a close."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 30.0
    max_requests = 1000
    max_header_bytes = 16_384

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._served = 0
        self._seen: object = None
        self._timer: asyncio.TimerHandle | None = None
        self._in_head = True          # a request's line and headers are still to come
        self._head_bytes = 0          # bytes received since they began
        self._head_parsed = 0         # of which the parser has handed over (URL, headers)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _waiting_for_request(self) -> bool:
        return self.cycle is None or (self.cycle is self._seen and self.cycle.response_complete)

    def data_received(self, data: bytes) -> None:
        if self._timer is None and self._waiting_for_request():
            self._arm(self.header_timeout)      # the next request's headers are due now
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._in_head and self._head_bytes > self.max_header_bytes:
            # Headers still incomplete and already too large: never buffer more of them.
            self._refuse_headers()
            return
        cycle = self.cycle
        if cycle is None:
            return
        if cycle is not self._seen:              # a new request's headers are complete
            self._seen = cycle
            self._served += 1
            self._disarm()
            if self._served >= self.max_requests:
                cycle.keep_alive = False
                cycle.default_headers = [*cycle.default_headers, (b"connection", b"close")]
        if not cycle.response_complete and cycle.more_body:
            self._arm(self.body_timeout)         # re-armed by every piece of the body
        elif cycle is self._seen and not cycle.more_body and not self._waiting_for_request():
            self._disarm()

    # Parser callbacks: the request line and headers counted as the parser hands them over.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_parsed = True, 0

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # Whatever comes next is the next request's line and headers: counted as it arrives.
        self._in_head, self._head_bytes = True, 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)     # "name: value\r\n"
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        super().on_headers_complete()

    def _count(self, n: int) -> None:
        self._head_parsed += n
        if self._head_parsed > self.max_header_bytes:
            raise _HeadersTooLarge

    def _refuse_headers(self) -> None:
        log.info("request headers too large; connection closed")
        self.send_400_response(HEADERS_TOO_LARGE)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._waiting_for_request():
            log.info("request headers did not arrive in time; connection closed")
            self.transport.write(REQUEST_TIMEOUT)
            self.transport.close()
        elif self.cycle is not None and self.cycle.more_body:
            if self.flow.read_paused:
                self._arm(self.body_timeout)     # we are not reading: not their delay
                return
            log.info("request body stalled; connection closed")
            self.transport.close()


def configure(settings: Settings) -> None:
    LimitedHttpToolsProtocol.header_timeout = settings.server.header_timeout_seconds
    LimitedHttpToolsProtocol.body_timeout = settings.server.body_timeout_seconds
    LimitedHttpToolsProtocol.max_requests = settings.server.max_requests_per_connection
    LimitedHttpToolsProtocol.max_header_bytes = settings.server.max_header_bytes


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    configure(settings)
    return {"http": LimitedHttpToolsProtocol,
            "timeout_keep_alive": settings.server.keepalive_seconds}
