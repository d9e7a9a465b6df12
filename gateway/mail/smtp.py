"""SMTP submission to Exchange Online with the member's own XOAUTH2 token (STARTTLS, 587).

Owns one send: connect, STARTTLS, AUTH XOAUTH2, MAIL/RCPT/DATA, and mapping every failure to
the error tree — a refused token is ``ReauthRequired``, a server that cannot be reached is
``UpstreamUnavailable``, a refused message is ``SendRefused`` carrying the server's words
(never the message). The outbox (``gateway.mail.outbox``) keeps the message safe around it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosmtplib

from gateway.errors import (
    PartlyRefused,
    ReauthRequired,
    SendRefused,
    SendUncertain,
    SmtpAuthDisabled,
    UpstreamUnavailable,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    ssl_context: ssl.SSLContext
    timeout: float
    # The whole send, connect to final answer; the outbox claim outlives it (lease_for).
    deadline: float = 150.0


class _Submission(aiosmtplib.SMTP):
    """aiosmtplib's client, noting when DATA began: from then on a lost answer may hide a
    message the server has taken."""

    data_started = False

    async def data(self, message: str | bytes, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        self.data_started = True
        return await super().data(message, **kwargs)


async def send(target: SmtpTarget, sender: str, token: str, recipients: Sequence[str],
               message: bytes) -> None:
    async def token_source() -> str:
        return token

    client = _Submission(hostname=target.host, port=target.port, start_tls=True,
                         tls_context=target.ssl_context, timeout=target.timeout,
                         oauth_token_generator=token_source, username=sender)
    try:
        async with asyncio.timeout(target.deadline), client:
            errors, _ = await client.sendmail(sender, list(recipients), message)
    except aiosmtplib.SMTPAuthenticationError as exc:
        if "5.7.139" in exc.message:
            # SMTP AUTH is off for the mailbox or tenant: a new sign-in cannot fix that.
            raise SmtpAuthDisabled() from None
        if 400 <= exc.code < 500:
            raise _busy() from None
        raise ReauthRequired() from None
    except aiosmtplib.SMTPRecipientsRefused as exc:
        names = ", ".join(f"{r.recipient} ({r.code}{_server_words(r.message)})"
                          for r in exc.recipients[:20])
        raise SendRefused(f"Not sent: the mail server refused every recipient: {names}. "
                          "Check the addresses; your message has been kept.") from None
    except aiosmtplib.SMTPResponseException as exc:
        log.info("smtp refused the message: %s", exc.code)
        if "SubmissionQuotaExceeded" in exc.message:
            # Exchange: 10,000 recipients a day from one mailbox (554 5.2.0). Not sent.
            raise UpstreamUnavailable(
                "Sending limit reached: your mailbox has sent to the most recipients "
                "Exchange allows in a day. Your message is kept in your Outbox; send it "
                "again later, or ask ICT.", retry_after=3600) from None
        if 400 <= exc.code < 500:
            # Temporary (Exchange: 432 4.3.2 more than three connections for the mailbox at
            # once): not sent, safe to send again shortly.
            raise _busy() from None
        text = _server_words(exc.message)
        raise SendRefused(f"The mail server refused the message ({exc.code}{text}). "
                          "Your message has been kept.") from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        if client.data_started:
            # Rule: a message is never sent twice. Once DATA began, a lost answer means
            # "perhaps sent", never "not sent".
            log.info("smtp answer lost during DATA: the message may have been sent")
            raise SendUncertain() from None
        raise UpstreamUnavailable("The mail server cannot be reached just now. Your message "
                                  "has been kept and can be sent again.") from None
    if errors:
        raise PartlyRefused([(addr, f"{resp.code}{_server_words(resp.message)}")
                             for addr, resp in list(errors.items())[:50]])


def _busy() -> UpstreamUnavailable:
    # Exchange's 432 4.3.2 "sender thread limit exceeded": more than 3 sends at once from
    # one mailbox (other devices or apps sending too). Not sent; safe to send again.
    return UpstreamUnavailable("Sending limit reached: the mail server is busy with other "
                               "sending from your mailbox just now. Your message is kept in "
                               "your Outbox; try again in a minute.", retry_after=60)


def _server_words(message: str) -> str:
    """The server's enhanced status text, cut short and stripped of anything odd."""
    words = "".join(c for c in message if c.isprintable())[:120].strip()
    return f": {words}" if words else ""
