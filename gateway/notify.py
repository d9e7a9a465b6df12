"""Telling people the switch changed: webhooks and an email to the ICT list.

``Notifier`` is a ``SwitchListener``: ``switched`` returns at once and the deliveries run as
background tasks, so a slow or failing receiver never blocks or undoes the switch. Each
delivery is retried with exponential backoff (``notify.attempts``,
``notify.backoff_seconds``) and its outcome logged and kept in ``recent`` for the admin page.

The webhook body is JSON that Slack incoming webhooks accept (``text``) and that is also a
Teams connector MessageCard (``@type``, ``summary``, ``title``, ``themeColor``,
``sections[].facts``). Webhook URLs carry their own secret, so logs name only their host.

The email goes through its own SMTP settings (``notify.smtp_*``), not the members' Exchange
submission route: it must work when the member-facing side is the thing that is broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import aiosmtplib
import httpx

from gateway.audit import iso
from gateway.config import Settings
from gateway.failover import Mode, SwitchState, duration_text

log = logging.getLogger(__name__)

COLOURS = {Mode.STANDBY: "2E7D32", Mode.ACTIVE: "C62828", Mode.DRILL: "F9A825"}


@dataclass(frozen=True)
class NotifyConfig:
    webhooks: tuple[str, ...] = ()
    email_to: tuple[str, ...] = ()
    email_from: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_starttls: bool = True
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_ca_file: str = ""
    attempts: int = 5
    backoff_seconds: float = 2.0
    timeout_seconds: float = 10.0
    public_url: str = ""

    @classmethod
    def from_settings(cls, s: Settings) -> NotifyConfig:
        return cls(webhooks=tuple(s.get("notify.webhooks")),
                   email_to=tuple(s.get("notify.email_to")),
                   email_from=s.get("notify.email_from"), smtp_host=s.get("notify.smtp_host"),
                   smtp_port=s.get("notify.smtp_port"),
                   smtp_starttls=s.get("notify.smtp_starttls"),
                   smtp_username=s.get("notify.smtp_username"),
                   smtp_password=s.get("notify.smtp_password"),
                   smtp_ca_file=s.get("notify.smtp_ca_file"),
                   attempts=s.get("notify.attempts"),
                   backoff_seconds=s.get("notify.backoff_seconds"),
                   timeout_seconds=s.get("notify.timeout_seconds"), public_url=s.public_url)


@dataclass(frozen=True)
class Delivery:
    target: str      # "webhook <host>" or "email"
    ok: bool
    attempts: int
    detail: str
    at: float


def headline(new: SwitchState) -> str:
    return f"Mail gateway switched to {str(new.mode).upper()}"


def summary_lines(old: SwitchState, new: SwitchState) -> list[tuple[str, str]]:
    facts = [("Mode", f"{old.mode} -> {new.mode}"), ("By", new.by), ("Reason", new.reason),
             ("Since", iso(new.since))]
    if new.until is not None:
        facts.append(("Until", f"{iso(new.until)} (in {duration_text(new.until - new.since)})"))
    if new.group:
        facts.append(("Drill group", new.group))
    if new.message:
        facts.append(("Message to members", new.message))
    return facts


def webhook_payload(old: SwitchState, new: SwitchState, public_url: str = "") -> dict[str, Any]:
    facts = summary_lines(old, new)
    text = headline(new) + " by " + new.by + ": " + new.reason
    if new.until is not None:
        text += f" (until {iso(new.until)})"
    payload: dict[str, Any] = {
        "text": text,
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": headline(new),
        "title": headline(new),
        "themeColor": COLOURS[new.mode],
        "sections": [{"facts": [{"name": k, "value": v} for k, v in facts]}],
    }
    if public_url:
        payload["potentialAction"] = [{"@type": "OpenUri", "name": "Open the admin page",
                                       "targets": [{"os": "default",
                                                    "uri": public_url + "/admin"}]}]
    return payload


def _host(url: str) -> str:
    return urlsplit(url).netloc or "?"


class Notifier:
    def __init__(self, config: NotifyConfig, clock: Callable[[], float], *,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self.recent: deque[Delivery] = deque(maxlen=50)
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    async def switched(self, old: SwitchState, new: SwitchState) -> None:
        payload = webhook_payload(old, new, self.config.public_url)
        for url in self.config.webhooks:
            self._spawn(self._webhook(url, payload))
        if self.config.email_to and self.config.smtp_host:
            self._spawn(self._email(old, new))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        """Deliveries still under way (not yet delivered or given up)."""
        return len(self._tasks)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for deliveries under way (the CLI before it exits; tests)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def aclose(self, grace: float = 2.0) -> None:
        await self.drain(grace)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _retrying(self, target: str, attempt_once: Callable[[], Awaitable[None]]) -> None:
        detail, n = "", 0
        for n in range(1, self.config.attempts + 1):
            try:
                await attempt_once()
            except _Permanent as exc:
                detail = str(exc)
                break
            except (httpx.HTTPError, aiosmtplib.SMTPException, OSError, _Retry) as exc:
                detail = str(exc) or type(exc).__name__
                log.warning("notification to %s failed (attempt %d of %d): %s", target, n,
                            self.config.attempts, detail)
                if n < self.config.attempts:
                    await self.sleep(self.config.backoff_seconds * 2 ** (n - 1))
                continue
            self.recent.append(Delivery(target, True, n, "delivered", self.clock()))
            log.info("notification to %s delivered (attempt %d)", target, n)
            return
        self.recent.append(Delivery(target, False, n, detail, self.clock()))
        log.error("notification to %s given up after %d attempts: %s", target, n, detail)

    async def _webhook(self, url: str, payload: dict[str, Any]) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.config.timeout_seconds,
                                           follow_redirects=False)
        client = self._http

        async def post() -> None:
            r = await client.post(url, json=payload)
            if r.status_code in (408, 429) or r.status_code >= 500:
                raise _Retry(f"HTTP {r.status_code}")
            if r.status_code >= 300:
                raise _Permanent(f"HTTP {r.status_code} (not retried)")

        await self._retrying(f"webhook {_host(url)}", post)

    async def _email(self, old: SwitchState, new: SwitchState) -> None:
        c = self.config
        msg = EmailMessage()
        msg["Subject"] = headline(new)
        msg["From"] = c.email_from or "mail-gateway@localhost"
        msg["To"] = ", ".join(c.email_to)
        body = "\n".join(f"{k}: {v}" for k, v in summary_lines(old, new))
        if c.public_url:
            body += f"\n\nAdmin page: {c.public_url}/admin\n"
        msg.set_content(body)
        tls = ssl.create_default_context(cafile=c.smtp_ca_file or None) \
            if c.smtp_starttls else None

        async def send() -> None:
            await aiosmtplib.send(msg, hostname=c.smtp_host, port=c.smtp_port,
                                  start_tls=c.smtp_starttls, tls_context=tls,
                                  username=c.smtp_username or None,
                                  password=c.smtp_password or None,
                                  timeout=c.timeout_seconds)

        await self._retrying("email", send)


class _Retry(Exception):
    pass


class _Permanent(Exception):
    pass
