"""ICT alerts with hysteresis: a check failing longer than ``alert_after`` sends one alert, a
recovery is sent once it has passed for ``recover_after``, a flapping check sends one of each,
a short blip sends nothing; the alert reaches a real webhook through the kept notifications."""

from __future__ import annotations

import asyncio

from gateway.health.alerts import Alerts
from gateway.health.monitor import CheckResult, Status
from gateway.store.base import Store
from gateway.switch.notify import Message, Notifier, NotifyConfig
from tests.switch.conftest import WebhookReceiver

KEY = "imap:responseTime"


def result(at: float, status: Status, key: str = KEY, output: str = "") -> CheckResult:
    return CheckResult(key, status, 10.0, "ms", at, 0.01, output or
                       ("IMAP server cannot be reached" if status == "fail" else ""))


async def test_hysteresis_one_alert_one_recovery_for_a_flapping_check() -> None:
    sent: list[tuple[str, Message]] = []

    async def send(change: str, message: Message) -> None:
        sent.append((change, message))

    a = Alerts(send, alert_after=120, recover_after=120)
    t = 1000.0
    steps: list[tuple[int, Status]] = [
        (0, "fail"), (60, "fail"), (119, "fail"),                   # not yet two minutes
        (121, "fail"),                                              # alert
        (150, "pass"), (180, "fail"), (200, "pass"), (230, "fail"),  # flapping
        (260, "pass"), (300, "pass"), (379, "pass"),                 # passing, not yet long enough
        (381, "pass"),                                              # recovery
        (400, "pass"), (500, "pass")]
    for dt, status in steps:
        a.observe(result(t + dt, status))
    await a.drain()
    assert a.sent == [(KEY, "alert"), (KEY, "recovery")]
    assert sent[0][1].title.endswith("imap:responseTime is failing")
    facts = dict(sent[0][1].facts)
    assert facts["Error"] == "IMAP server cannot be reached"
    assert facts["Failing since"] == "1970-01-01T00:16:40Z"
    assert "recovered" in sent[1][1].title


async def test_a_short_blip_and_bookkeeping_checks_send_nothing() -> None:
    a = Alerts(lambda c, m: asyncio.sleep(0), alert_after=60, recover_after=60)
    blips: list[tuple[int, Status]] = [(0, "fail"), (30, "fail"), (40, "pass"), (200, "pass")]
    for dt, status in blips:
        a.observe(result(dt, status))
    for dt in (0, 100, 200):
        a.observe(result(dt, "fail", key="sessions:count"))
    assert a.sent == []


async def test_the_alert_reaches_the_webhook(store: Store) -> None:
    hook = WebhookReceiver()
    await hook.start()
    try:
        notifier = Notifier(NotifyConfig(webhooks=(hook.url,)), lambda: 5000.0, store=store)
        a = Alerts(notifier.send, alert_after=10, recover_after=10, service="gw-test")
        a.observe(result(0, "fail", key="platform:portal", output="answered HTTP 503"))
        a.observe(result(11, "fail", key="platform:portal", output="answered HTTP 503"))
        await a.drain()
        await notifier.drain(10)
        assert len(hook.bodies) == 1
        body = hook.bodies[0]
        assert body["title"] == "gw-test: platform:portal is failing"
        assert body["themeColor"] == "C62828" and "HTTP 503" in body["text"]
        [rec] = await store.notifications_recent()
        assert rec.state == "delivered" and rec.change == "health alert: platform:portal"
        await notifier.aclose()
    finally:
        await hook.stop()
