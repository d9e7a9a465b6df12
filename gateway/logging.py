"""Structured logs: one JSON object per line, each with the id of the request it belongs to,
and a filter that refuses to print tokens, cookies or secrets.

- ``RequestIdMiddleware`` (outermost) gives every request an id, keeps it in a context
  variable for every log line written while the request runs (worker threads included:
  ``asyncio.to_thread`` copies the context), returns it as ``X-Request-ID``, and logs one
  access line per request with the client's address. An incoming ``X-Request-ID`` is kept
  only when the TCP peer is one of ``server.trusted_proxies`` (nginx sends its own
  ``$request_id``) and the value is a plain token (8-64 of ``A-Za-z0-9._-``); otherwise the
  gateway makes a new one, so a client cannot write what it likes into the logs or make two
  requests look like one. The middleware also applies those proxies' ``X-Forwarded-For``/
  ``-Proto`` (uvicorn's ProxyHeadersMiddleware, inside it): it sees the real peer first, and
  the access line carries the real client behind a trusted proxy.
- ``RedactingFilter`` rewrites each record's message before any handler prints it: JWTs,
  ``Bearer`` values, XOAUTH2 blobs, cookie headers, ``name=value`` secrets and any long opaque
  token-like string. Message content is kept out by the rule that no module logs it.
- ``setup_logging`` installs both on the root logger (``gateway serve`` and ``gateway demo``).
"""

from __future__ import annotations

import contextvars
import ipaddress
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import IO, Any, cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
access_log = logging.getLogger("gateway.access")

_INCOMING_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    (re.compile(r"dXNlcj0[A-Za-z0-9+/=]{8,}"), "[redacted-sasl]"),
    (re.compile(r"(?i)\b((?:set-)?cookie)(\s*[:=]\s*)[^\n]+"), r"\1\2[redacted]"),
    (re.compile(r"(?i)\b(access_token|refresh_token|id_token|client_secret|client_assertion|"
                r"password|passwd|secret|code|code_verifier|csrf_token|session|sid|token|"
                r"__Host-[A-Za-z0-9_-]+)(\"?'?\s*[:=]\s*\"?'?)[^\s\"'&,;}]+"),
     r"\1\2[redacted]"),
    (re.compile(r"[A-Za-z0-9_-]{40,}"), "[redacted]"),
)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", None) or request_id.get(),
            "message": redact(record.getMessage()),
        }
        http = getattr(record, "http", None)
        if isinstance(http, dict):
            out["http"] = {k: redact(v) if isinstance(v, str) else v for k, v in http.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["error"] = redact(record.exc_text)
        return json.dumps(out, ensure_ascii=False)


def make_handler(stream: IO[str] | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    return handler


def setup_logging(level: str = "info", stream: IO[str] | None = None) -> logging.Handler:
    """Replace the root logger's handlers with one JSON handler that redacts."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = make_handler(stream)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries that log request lines or payloads at debug stay at warning; httpx logs
    # every request URL at info (each probe, every Graph call with its query).
    for name in ("urllib3", "httpcore", "httpx", "hpack", "msal", "mail.log", "aioimaplib"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    return handler


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[str] = ()) -> None:
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies]
        # uvicorn is started without proxy headers: they are applied here, after the peer
        # has been looked at, and only for the configured proxies.
        self.app: ASGIApp = app
        if trusted_proxies:
            # uvicorn types its middleware with its own (stricter) ASGI types.
            self.app = cast(ASGIApp, ProxyHeadersMiddleware(
                cast(Any, app), trusted_hosts=list(trusted_proxies)))

    def _from_trusted_proxy(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client or not self.trusted:
            return False
        try:
            addr = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(addr in net for net in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        if self._from_trusted_proxy(scope):
            for k, v in scope.get("headers", []):
                if k == b"x-request-id":
                    incoming = v.decode("latin-1")
        rid = incoming if _INCOMING_ID.match(incoming) else secrets.token_hex(8)
        token = request_id.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # The path only: a query string may carry an authorization code. The client is
            # the forwarded one when the peer is a trusted proxy (set in scope just above).
            client = (scope.get("client") or ("-", 0))[0]
            access_log.info("%s %s %s %s", client, scope["method"], scope["path"], status,
                            extra={"http": {
                                "client": client, "method": scope["method"],
                                "path": scope["path"], "status": status,
                                "ms": round((time.perf_counter() - started) * 1000, 1)}})
            request_id.reset(token)
