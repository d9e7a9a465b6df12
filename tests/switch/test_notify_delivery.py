"""Notifications of switch changes: webhooks (Teams/Slack shape) retried with backoff
against a real loopback receiver, email to the ICT list through a real SMTP server, and
never blocking the switch."""

from __future__ import annotations

import asyncio
import email
import logging
import time

import pytest

from gateway.store.sqlite import SqliteStore
from gateway.switch.machine import Flip, Switch
from gateway.switch.notify import Notifier, NotifyConfig
from tests.switch.conftest import ManualClock, SmtpReceiver, WebhookReceiver


class Sleeps:
    """Records the backoff waits instead of sleeping them (keeps the test fast)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_webhook_is_retried_with_backoff_until_it_succeeds(store: SqliteStore,
                                                                 clock: ManualClock,
                                                                 webhook: WebhookReceiver) -> None:
    """Two 5xx answers, then 200: delivered on attempt 3 after waits of 2s and 4s."""
    webhook.statuses = [503, 500, 200]
    sleeps = Sleeps()
    notifier = Notifier(NotifyConfig(webhooks=(webhook.url,), attempts=5, backoff_seconds=2,
                                     public_url="https://gw.example"), clock, sleep=sleeps)
    sw = Switch(store, clock, listeners=[notifier])
    await sw.flip(Flip("active", "MDM outage INC-1", "Priya", until=clock() + 3600))
    await notifier.drain(10)
    await notifier.aclose()
    assert len(webhook.bodies) == 3 and sleeps.waits == [2, 4]
    body = webhook.bodies[-1]
    assert "ACTIVE" in body["text"] and "MDM outage INC-1" in body["text"]
    assert body["@type"] == "MessageCard" and body["summary"] and body["themeColor"]
    facts = {f["name"]: f["value"] for f in body["sections"][0]["facts"]}
    assert facts["By"] == "Priya" and facts["Mode"] == "standby -> active"
    d = notifier.recent[-1]
    assert d.ok and d.attempts == 3 and d.target.startswith("webhook 127.0.0.1:")


async def test_failing_webhook_is_given_up_and_logged_without_its_secret(
    store: SqliteStore, clock: ManualClock, webhook: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A webhook that keeps failing is tried `attempts` times, then logged as failed; the
    log names the host, never the URL's secret path."""
    webhook.statuses = [500] * 10
    notifier = Notifier(NotifyConfig(webhooks=(webhook.url,), attempts=3), clock,
                        sleep=Sleeps())
    with caplog.at_level(logging.WARNING, logger="gateway.switch.notify"):
        await Switch(store, clock, listeners=[notifier]).flip(Flip("active", "r", "p"))
        await notifier.drain(10)
    await notifier.aclose()
    assert len(webhook.bodies) == 3
    assert not notifier.recent[-1].ok and "HTTP 500" in notifier.recent[-1].detail
    assert "given up after 3 attempts" in caplog.text
    assert "secret-token" not in caplog.text


async def test_client_error_is_not_retried(store: SqliteStore, clock: ManualClock,
                                           webhook: WebhookReceiver) -> None:
    """A 404 (wrong URL) is permanent: one attempt, reported failed."""
    webhook.statuses = [404]
    notifier = Notifier(NotifyConfig(webhooks=(webhook.url,), attempts=5), clock,
                        sleep=Sleeps())
    await Switch(store, clock, listeners=[notifier]).flip(Flip("active", "r", "p"))
    await notifier.drain(10)
    await notifier.aclose()
    assert len(webhook.bodies) == 1 and not notifier.recent[-1].ok


async def test_slow_webhook_never_blocks_the_switch(store: SqliteStore, clock: ManualClock,
                                                    webhook: WebhookReceiver) -> None:
    """The flip returns while a slow receiver is still answering."""
    webhook.delay = 2.0
    notifier = Notifier(NotifyConfig(webhooks=(webhook.url,), timeout_seconds=5), clock)
    started = time.monotonic()
    await Switch(store, clock, listeners=[notifier]).flip(Flip("active", "r", "p"))
    assert time.monotonic() - started < 1.0
    await notifier.aclose(grace=0.1)   # shutdown cancels what is still under way


async def test_email_goes_to_the_ict_list_through_plain_smtp(store: SqliteStore, clock: ManualClock,
                                                             smtp_receiver: SmtpReceiver) -> None:
    """The ICT list gets one email, through the notification SMTP relay, with the facts."""
    notifier = Notifier(NotifyConfig(email_to=("ict@council.example", "oncall@council.example"),
                                     email_from="gateway@council.example",
                                     smtp_host=smtp_receiver.host, smtp_port=smtp_receiver.port,
                                     smtp_starttls=False, public_url="https://gw.example"),
                        clock)
    await Switch(store, clock, listeners=[notifier]).flip(
        Flip("drill", "quarterly rehearsal", "Priya", until=clock() + 1800, group="g-1"))
    await notifier.drain(10)
    await notifier.aclose()
    assert len(smtp_receiver.handler.messages) == 1
    sender, rcpts, raw = smtp_receiver.handler.messages[0]
    assert sender == "gateway@council.example"
    assert sorted(rcpts) == ["ict@council.example", "oncall@council.example"]
    msg = email.message_from_bytes(raw)
    assert msg["Subject"] == "Mail gateway switched to DRILL"
    payload = msg.get_payload(decode=True)
    assert isinstance(payload, bytes)
    text = payload.decode()
    assert "quarterly rehearsal" in text and "g-1" in text and "https://gw.example/admin" in text
    assert notifier.recent[-1].target == "email" and notifier.recent[-1].ok


async def test_unreachable_smtp_is_retried_then_reported(store: SqliteStore,
                                                         clock: ManualClock) -> None:
    """An SMTP relay that refuses connections is retried, then reported failed."""
    from gateway.devstack.procs import free_port
    sleeps = Sleeps()
    notifier = Notifier(NotifyConfig(email_to=("ict@council.example",), smtp_host="127.0.0.1",
                                     smtp_port=free_port(), smtp_starttls=False, attempts=2,
                                     timeout_seconds=2), clock, sleep=sleeps)
    await Switch(store, clock, listeners=[notifier]).flip(Flip("active", "r", "p"))
    await asyncio.wait_for(notifier.drain(10), 10)
    await notifier.aclose()
    assert not notifier.recent[-1].ok and notifier.recent[-1].attempts == 2
    assert sleeps.waits == [2.0]
