"""The mail-flow canary: send a tagged message through SMTP to the canary mailbox, with an
app-only token, and measure how long it takes to appear over IMAP (``mailflow:latency``).

Every canary message carries ``X-Gateway-Canary``; after each round every such message in the
canary's INBOX and Sent Items is deleted, so a failed round is cleaned up by the next one.

Each round is handed to ``on_round`` (the history keeps it) as a ``CanaryRound``: when it was
sent (SMTP accepted it) and when it arrived (IMAP saw it), the latency, or the stage that
failed: ``token`` (Entra refused the app-only token), ``imap login``, ``smtp accept`` (login
or submission refused) or ``imap arrival`` (accepted but never seen, or the round was cut).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import aioimaplib
import aiosmtplib

from gateway.auth.apponly import AppTokens
from gateway.config import Settings
from gateway.errors import GatewayError, ReauthRequired
from gateway.health.kept import KeptLogin
from gateway.health.monitor import Observation, ProbeFailed
from gateway.mail.imap_login import ImapTarget
from gateway.mail.imap_mailboxes import parse_search
from gateway.mail.imap_tokens import ImapParseError
from gateway.store.evidence import CanaryRound

HEADER = "X-Gateway-Canary"
POLL_SECONDS = 0.25
FOLDERS = ("INBOX", '"Sent Items"')


def _uids(resp: aioimaplib.Response) -> list[str]:
    """The numbers of a SEARCH answer; none when refused or unreadable."""
    if resp.result != "OK":
        return []
    try:
        return [str(uid) for uid in parse_search(resp.lines)]
    except ImapParseError:
        return []


class MailFlowCanary:
    def __init__(self, settings: Settings, imap: ImapTarget, smtp_ctx: ssl.SSLContext,
                 mailbox: str, tokens: AppTokens, resource: str,
                 on_connect: Callable[[str], None],
                 timer: Callable[[], float] = time.monotonic,
                 clock: Callable[[], float] = time.time,
                 on_round: Callable[[CanaryRound], None] | None = None,
                 kept: KeptLogin | None = None) -> None:
        self.settings = settings
        self.imap = imap
        self.smtp_ctx = smtp_ctx
        self.mailbox = mailbox
        self.tokens = tokens
        self.resource = resource
        self.on_connect = on_connect
        self.timer = timer
        self.clock = clock
        self.on_round = on_round
        self.warn_after = float(settings.health.mailflow_warn_seconds)
        self.fail_after = float(settings.health.mailflow_fail_seconds)
        if kept is None:
            async def token() -> str:
                return await tokens.token(resource)
            kept = KeptLogin(imap, mailbox, token, lambda: on_connect("imap"))
        # The canary's IMAP login, kept across rounds (see gateway.health.kept).
        self.kept = kept

    def _message(self, tag: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.mailbox
        msg["To"] = self.mailbox
        msg["Subject"] = f"[gateway canary] {tag}"
        msg[HEADER] = tag
        msg.set_content("Mail-flow canary of the failover mail gateway. It is deleted "
                        "automatically; please leave this mailbox alone.\n")
        return msg

    async def _send(self, token: str, tag: str) -> None:
        smtp = aiosmtplib.SMTP(hostname=self.settings.smtp.host,
                               port=self.settings.smtp.port, start_tls=True,
                               tls_context=self.smtp_ctx, timeout=self.imap.timeout)
        try:
            self.on_connect("smtp")
            await smtp.connect()
            await smtp.auth_xoauth2(self.mailbox, token)
            await smtp.send_message(self._message(tag))
            with contextlib.suppress(aiosmtplib.SMTPException):
                await smtp.quit()
        except aiosmtplib.SMTPAuthenticationError:
            raise ProbeFailed("SMTP refused the canary's XOAUTH2 login") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise ProbeFailed(f"canary message not sent: {type(exc).__name__}") from None
        finally:
            smtp.close()

    async def run(self) -> Observation:
        rnd: dict[str, Any] = {"at": self.clock(), "stage": "token", "sent_at": None}
        try:
            latency = await self._round(rnd)
        except BaseException as exc:
            # A cut round (CancelledError from the probe's timeout) is a failure too.
            error = str(exc) if isinstance(exc, ProbeFailed) else "the round was cut off"
            self._report(CanaryRound(rnd["at"], False, rnd["stage"], None, rnd["sent_at"],
                                     None, error[:300]))
            raise
        arrived = rnd["sent_at"] + latency if rnd["sent_at"] is not None else self.clock()
        self._report(CanaryRound(rnd["at"], True, "", round(latency, 3), rnd["sent_at"],
                                 arrived))
        value = round(latency, 3)
        if latency > self.warn_after:
            return Observation(value, "s", "warn", f"canary took {value} s to arrive")
        return Observation(value, "s")

    def _report(self, rnd: CanaryRound) -> None:
        if self.on_round is not None:
            self.on_round(rnd)

    async def _round(self, rnd: dict[str, Any]) -> float:
        token = await self.tokens.token(self.resource)
        tag = secrets.token_hex(8)
        rnd["stage"] = "imap login"
        try:
            async with self.kept.use() as conn:
                rnd["stage"] = "smtp accept"
                started = self.timer()
                try:
                    await self._send(token, tag)
                    rnd["stage"], rnd["sent_at"] = "imap arrival", self.clock()
                    sent = self.timer()
                    await self._wait_for(conn.client, tag, started)
                    # Latency counts from SMTP's acceptance: the mail system's own time.
                    return self.timer() - sent
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(self._clean(conn.client), self.imap.timeout)
        except ReauthRequired:
            raise ProbeFailed("IMAP refused the canary's XOAUTH2 login") from None
        except GatewayError:
            raise ProbeFailed("IMAP server cannot be reached for the canary") from None

    async def _wait_for(self, client: aioimaplib.IMAP4_SSL, tag: str, started: float) -> float:
        await client.select("INBOX")
        while True:
            await client.noop()
            found = _uids(await client.uid_search("HEADER", HEADER, tag, charset=None))
            if found:
                return self.timer() - started
            waited = self.timer() - started
            if waited > self.fail_after:
                raise ProbeFailed(f"canary message not seen after {waited:.0f} s")
            await asyncio.sleep(POLL_SECONDS)

    async def _clean(self, client: aioimaplib.IMAP4_SSL) -> None:
        for folder in FOLDERS:
            resp = await client.select(folder)
            if resp.result != "OK":
                continue
            uids = _uids(await client.uid_search("HEADER", HEADER, '""', charset=None))
            if uids:
                await client.uid("store", ",".join(uids), "+FLAGS.SILENT", r"(\Deleted)")
                await client.expunge()
