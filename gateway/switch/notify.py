"""Telling people the switch changed (and, from ``gateway.health.alerts``, that an upstream is
failing or has recovered): webhooks and an email to the ICT list.

``Notifier`` is a ``SwitchListener``: ``switched`` returns at once and the deliveries run as
background tasks, so a slow or failing receiver never blocks or undoes the switch.

With a store (the server and the CLI), every delivery is first written to the store's
``notifications`` table, with the change it belongs to, and then tried at once. One that
fails is retried by ``run_due`` (the server's loop; any instance) with exponential backoff
(``notify.backoff_seconds`` doubled up to ``notify.backoff_max_seconds``) until
``notify.retry_hours`` have passed: a restart, or a change made from the command line while
the receiver was down, loses nothing. One that finally fails is logged at ERROR, counted
(``on_given_up``: the metric) and raises a ``/health`` warning (``given_up_recently``).
Without a store (unit tests) deliveries are retried in memory ``notify.attempts`` times.
Outcomes are also kept in ``recent`` for the admin page. The store holds the message and the
target's number and host, never a webhook's URL (it carries its own secret).

The webhook body is JSON that Slack incoming webhooks accept (``text``) and that is also a
Teams connector MessageCard (``@type``, ``summary``, ``title``, ``themeColor``,
``sections[].facts``). Webhook URLs carry their own secret, so logs name only their host.

The email goes through its own SMTP settings (``notify.smtp_*``), not the members' Exchange
submission route: it must work when the member-facing side is the thing that is broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import aiosmtplib
import httpx

from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.store.evidence import NotificationRecord
from gateway.switch.audit import iso
from gateway.switch.machine import Mode, SwitchState, duration_text

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
    retry_hours: float = 6.0
    backoff_max_seconds: float = 900.0

    @classmethod
    def from_settings(cls, s: Settings) -> NotifyConfig:
        return cls(webhooks=tuple(s.notify.webhooks),
                   email_to=tuple(s.notify.email_to),
                   email_from=s.notify.email_from, smtp_host=s.notify.smtp_host,
                   smtp_port=s.notify.smtp_port,
                   smtp_starttls=s.notify.smtp_starttls,
                   smtp_username=s.notify.smtp_username,
                   smtp_password=s.notify.smtp_password,
                   smtp_ca_file=s.notify.smtp_ca_file,
                   attempts=s.notify.attempts,
                   backoff_seconds=s.notify.backoff_seconds,
                   timeout_seconds=s.notify.timeout_seconds, public_url=s.public_url,
                   retry_hours=s.notify.retry_hours,
                   backoff_max_seconds=s.notify.backoff_max_seconds)


@dataclass(frozen=True)
class Delivery:
    target: str      # "webhook <host>" or "email"
    ok: bool
    attempts: int
    detail: str
    at: float
    change: str = ""


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


@dataclass(frozen=True)
class Message:
    """What a notification says, whatever carries it (kept in the store as JSON)."""

    title: str
    text: str
    facts: tuple[tuple[str, str], ...]
    colour: str

    def to_json(self) -> str:
        return json.dumps({"title": self.title, "text": self.text,
                           "facts": [list(f) for f in self.facts], "colour": self.colour})

    @classmethod
    def from_json(cls, raw: str) -> Message:
        d = json.loads(raw)
        return cls(str(d["title"]), str(d["text"]),
                   tuple((str(k), str(v)) for k, v in d["facts"]), str(d["colour"]))


def switch_message(old: SwitchState, new: SwitchState) -> Message:
    text = headline(new) + " by " + new.by + ": " + new.reason
    if new.until is not None:
        text += f" (until {iso(new.until)})"
    return Message(headline(new), text, tuple(summary_lines(old, new)), COLOURS[new.mode])


def payload_of(message: Message, public_url: str = "") -> dict[str, Any]:
    payload: dict[str, Any] = {
        "text": message.text,
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": message.title,
        "title": message.title,
        "themeColor": message.colour,
        "sections": [{"facts": [{"name": k, "value": v} for k, v in message.facts]}],
    }
    if public_url:
        payload["potentialAction"] = [{"@type": "OpenUri", "name": "Open the admin page",
                                       "targets": [{"os": "default",
                                                    "uri": public_url + "/admin"}]}]
    return payload


def webhook_payload(old: SwitchState, new: SwitchState, public_url: str = "") -> dict[str, Any]:
    return payload_of(switch_message(old, new), public_url)


def _host(url: str) -> str:
    return urlsplit(url).netloc or "?"


def change_of(old: SwitchState, new: SwitchState) -> str:
    """What the admin page shows a delivery belongs to."""
    return (f"switch v{new.version}: {old.mode} -> {new.mode} by {new.by} at "
            f"{iso(new.since)}")


class Notifier:
    def __init__(self, config: NotifyConfig, clock: Callable[[], float], *,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 store: Any = None) -> None:
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self.store = store            # an EvidenceStore, or None: retries in memory only
        self.recent: deque[Delivery] = deque(maxlen=50)
        self.on_given_up: list[Callable[[str], None]] = []
        # Kept deliveries whose attempt here failed and that wait for a retry (the CLI says so).
        self.deferred: list[tuple[str, str, float]] = []       # (target, detail, next try)
        self.given_up_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    # -- what to send
    async def switched(self, old: SwitchState, new: SwitchState) -> None:
        await self.send(change_of(old, new), switch_message(old, new))

    def targets(self) -> list[str]:
        out = [f"webhook:{i}:{_host(url)}" for i, url in enumerate(self.config.webhooks)]
        if self.config.email_to and self.config.smtp_host:
            out.append("email")
        return out

    async def send(self, change: str, message: Message) -> None:
        """Queue ``message`` for every target and try each at once, in the background."""
        now = self.clock()
        for target in self.targets():
            if self.store is None:
                self._spawn(self._retrying(_label(target), self._attempt_for(target, message),
                                           change))
                continue
            # Leased for the attempts made at once: no other instance takes it meanwhile.
            rec = NotificationRecord(secrets.token_hex(12), change, target, message.to_json(),
                                     "pending", 0, now + self._lease(self.config.attempts),
                                     now, now)
            try:
                await self.store.notification_put(rec)
            except GatewayError:
                # The store is down: still try now, in memory (better than not at all).
                log.error("notification to %s could not be kept: store unavailable",
                          _label(target))
                self._spawn(self._retrying(_label(target), self._attempt_for(target, message),
                                           change))
                continue
            self._spawn(self._deliver(rec, tries=self.config.attempts))

    # -- the durable path
    def _lease(self, tries: int = 1) -> float:
        waits = sum(self.config.backoff_seconds * 2 ** (n - 1) for n in range(1, tries))
        return float(tries * (self.config.timeout_seconds + 1) + waits + 5)

    def _backoff(self, attempts: int) -> float:
        return float(min(self.config.backoff_max_seconds,
                         self.config.backoff_seconds * 2 ** max(0, attempts - 1)))

    async def run_due(self) -> int:
        """Attempt every kept delivery whose time has come (the server calls this often)."""
        assert self.store is not None
        due = await self.store.notifications_due(self.clock(), self._lease())
        await asyncio.gather(*(self._deliver(rec) for rec in due))
        return len(due)

    async def load_state(self) -> None:
        """After a restart: remember a delivery given up on within the last day."""
        if self.store is not None:
            with contextlib.suppress(GatewayError):
                if await self.store.notifications_failed_since(self.clock() - 86400):
                    self.given_up_at = self.clock()

    def given_up_recently(self, within: float = 86400) -> bool:
        return self.given_up_at is not None and self.clock() - self.given_up_at < within

    async def _deliver(self, rec: NotificationRecord, tries: int = 1) -> None:
        """Up to ``tries`` attempts now (quick backoff), then, if still failing, the next try
        is kept in the store for ``run_due``."""
        label = _label(rec.target)
        attempts = rec.attempts
        attempt = self._attempt_for(rec.target, Message.from_json(rec.payload))
        for n in range(1, tries + 1):
            attempts += 1
            try:
                await attempt()
            except _Permanent as exc:
                await self._finish(rec, attempts, "failed", str(exc), label)
                return
            except (httpx.HTTPError, aiosmtplib.SMTPException, OSError, _Retry) as exc:
                detail = str(exc) or type(exc).__name__
                if n < tries:
                    log.warning("notification to %s failed (attempt %d): %s", label, attempts,
                                detail)
                    await self.sleep(self.config.backoff_seconds * 2 ** (n - 1))
                    continue
                await self._defer(rec, attempts, detail, label)
                return
            await self._finish(rec, attempts, "delivered", "", label)
            return

    async def _defer(self, rec: NotificationRecord, attempts: int, detail: str,
                 label: str) -> None:
        now = self.clock()
        if now - rec.created_at + self._backoff(attempts) > self.config.retry_hours * 3600:
            await self._finish(rec, attempts, "failed", detail, label)
            return
        log.warning("notification to %s failed (attempt %d, retried in %.0f s): %s", label,
                    attempts, self._backoff(attempts), detail)
        self.deferred.append((label, detail, now + self._backoff(attempts)))
        await self._save(NotificationRecord(
            rec.id, rec.change, rec.target, rec.payload, "pending", attempts,
            now + self._backoff(attempts), rec.created_at, now, detail))

    async def _finish(self, rec: NotificationRecord, attempts: int, state: str, detail: str,
                      label: str) -> None:
        now = self.clock()
        await self._save(NotificationRecord(rec.id, rec.change, rec.target, rec.payload, state,
                                            attempts, now, rec.created_at, now, detail))
        ok = state == "delivered"
        self.recent.append(Delivery(label, ok, attempts, "delivered" if ok else detail, now,
                                    rec.change))
        if ok:
            log.info("notification to %s delivered (attempt %d)", label, attempts)
        else:
            self._given_up(label, attempts, detail)

    def _given_up(self, label: str, attempts: int, detail: str) -> None:
        self.given_up_at = self.clock()
        log.error("notification to %s given up after %d attempts: %s", label, attempts, detail)
        for hook in self.on_given_up:
            hook(label)

    async def _save(self, rec: NotificationRecord) -> None:
        try:
            await self.store.notification_put(rec)
        except GatewayError:
            log.error("notification state could not be saved: store unavailable")

    # -- tasks
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

    # -- the in-memory path (no store)
    async def _retrying(self, target: str, attempt_once: Callable[[], Awaitable[None]],
                        change: str = "") -> None:
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
            self.recent.append(Delivery(target, True, n, "delivered", self.clock(), change))
            log.info("notification to %s delivered (attempt %d)", target, n)
            return
        self.recent.append(Delivery(target, False, n, detail, self.clock(), change))
        self._given_up(target, n, detail)

    # -- one attempt, per channel
    def _attempt_for(self, target: str, message: Message) -> Callable[[], Awaitable[None]]:
        if target == "email":
            return self._email_attempt(message)
        _, index, host = target.split(":", 2)
        urls = self.config.webhooks
        url = urls[int(index)] if index.isdigit() and int(index) < len(urls) else ""
        if not url or _host(url) != host:
            async def gone() -> None:
                raise _Permanent("that webhook is no longer configured")
            return gone
        return self._webhook_attempt(url, payload_of(message, self.config.public_url))

    def _webhook_attempt(self, url: str, payload: dict[str, Any]) -> Callable[[],
                                                                             Awaitable[None]]:
        async def post() -> None:
            if self._http is None:
                self._http = httpx.AsyncClient(timeout=self.config.timeout_seconds,
                                               follow_redirects=False)
            r = await self._http.post(url, json=payload)
            if r.status_code in (408, 429) or r.status_code >= 500:
                raise _Retry(f"HTTP {r.status_code}")
            if r.status_code >= 300:
                raise _Permanent(f"HTTP {r.status_code} (not retried)")
        return post

    def _email_attempt(self, message: Message) -> Callable[[], Awaitable[None]]:
        c = self.config
        msg = EmailMessage()
        msg["Subject"] = message.title
        msg["From"] = c.email_from or "mail-gateway@localhost"
        msg["To"] = ", ".join(c.email_to)
        body = "\n".join(f"{k}: {v}" for k, v in message.facts)
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
        return send


def _label(target: str) -> str:
    """``webhook:0:hooks.example`` -> ``webhook hooks.example`` (for logs and the page)."""
    if target.startswith("webhook:"):
        return "webhook " + target.split(":", 2)[2]
    return target


class _Retry(Exception):
    pass


class _Permanent(Exception):
    pass
