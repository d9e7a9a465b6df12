"""What one HTTP connection may cost the gateway: the limits on uvicorn's h11 protocol.

uvicorn (0.54) bounds only the idle time between requests on a kept-alive connection. Left
alone, a client may send headers or a body one byte at a time for ever, hold a request header
of any size (httptools has no limit), and reuse one connection without end. Rule: anonymous
clients cannot make the gateway do unbounded work or hold unbounded state, so every
connection gets, from the settings table (``server.*``, documented in
``docs/configuration.md``):

- ``header_timeout_seconds``: the request line and headers must arrive within this time of
  the connection opening, or of the first byte of the next request; else 408 and close.
- ``body_timeout_seconds``: the longest pause while a request body arrives (a pause of ours,
  when the app has not read yet, does not count); else the connection is closed.
- ``max_header_bytes``: h11's limit on the request line and headers; larger gets 400.
- ``max_requests_per_connection``: after this many, the response says ``Connection: close``.
- ``keepalive_seconds``: uvicorn's idle limit between requests.

``uvicorn_options(settings)`` gives the uvicorn keyword arguments; the protocol class reads
its limits from class attributes that ``configure(settings)`` sets, so that each worker
process (which builds its app through ``gateway.app.from_environment``) applies them too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.config import Settings

log = logging.getLogger(__name__)
REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\n"
                   b"content-length: 28\r\nconnection: close\r\n\r\nThe request came too slowly.")


class LimitedH11Protocol(H11Protocol):
    header_timeout = 10.0
    body_timeout = 30.0
    max_requests = 1000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._served = 0
        self._seen: object = None
        self._timer: asyncio.TimerHandle | None = None
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _waiting_for_request(self) -> bool:
        return self.cycle is None or (self.cycle is self._seen and self.cycle.response_complete)

    def data_received(self, data: bytes) -> None:
        if self._timer is None and self._waiting_for_request():
            self._arm(self.header_timeout)      # the next request's headers are due now
        super().data_received(data)
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
    LimitedH11Protocol.header_timeout = settings.server.header_timeout_seconds
    LimitedH11Protocol.body_timeout = settings.server.body_timeout_seconds
    LimitedH11Protocol.max_requests = settings.server.max_requests_per_connection


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    configure(settings)
    return {"http": LimitedH11Protocol,
            "h11_max_incomplete_event_size": settings.server.max_header_bytes,
            "timeout_keep_alive": settings.server.keepalive_seconds}
