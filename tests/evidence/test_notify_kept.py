"""Notifications that do not give up, on SQLite and PostgreSQL, against a real loopback
webhook receiver: kept in the store, retried with backoff by a later process (a restart),
given up after ``notify.retry_hours`` with the hook (the metric) called and a warning that
survives a restart; a change made from the command line while the receiver is down is
delivered later by the running gateway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.store.base import Store
from gateway.store.sqlite import SqliteStore
from gateway.switch.machine import Flip, Switch
from gateway.switch.notify import Message, Notifier, NotifyConfig
from tests.switch.conftest import WebhookReceiver


class Clock:
    def __init__(self, t: float = 1_780_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def hook() -> AsyncIterator[WebhookReceiver]:
    r = WebhookReceiver()
    await r.start()
    yield r
    await r.stop()


def config(url: str, **kw: object) -> NotifyConfig:
    return NotifyConfig(webhooks=(url,), attempts=1, backoff_seconds=30,
                        backoff_max_seconds=600, retry_hours=1.0, **kw)  # type: ignore[arg-type]


async def test_a_delivery_survives_a_restart_and_is_retried_with_backoff(
    store: Store, hook: WebhookReceiver,
) -> None:
    hook.statuses = [503, 500, 200]
    clock = Clock()
    first = Notifier(config(hook.url), clock, store=store, sleep=no_sleep)
    await Switch(store, clock, listeners=[first]).flip(Flip("active", "MDM down", "Priya"))
    await first.drain(10)
    await first.aclose()                          # the process ends; the delivery is kept
    [rec] = await store.notifications_recent()
    assert (rec.state, rec.attempts, rec.last_error) == ("pending", 1, "HTTP 503")
    assert rec.next_at == clock.t + 30 and "standby -> active by Priya" in rec.change
    assert "secret-token" not in rec.target + rec.payload

    second = Notifier(config(hook.url), clock, store=store, sleep=no_sleep)  # after restart
    assert await second.run_due() == 0            # not yet due
    clock.t += 31
    assert await second.run_due() == 1
    [rec] = await store.notifications_recent()
    assert (rec.state, rec.attempts) == ("pending", 2) and rec.next_at == clock.t + 60
    clock.t += 61
    assert await second.run_due() == 1
    [rec] = await store.notifications_recent()
    assert (rec.state, rec.attempts) == ("delivered", 3)
    assert len(hook.bodies) == 3 and "MDM down" in hook.bodies[-1]["text"]
    assert await second.run_due() == 0
    await second.aclose()


async def test_given_up_after_the_retry_window_warns_and_counts(store: Store,
                                                                hook: WebhookReceiver) -> None:
    hook.statuses = [500] * 50
    clock = Clock()
    given_up: list[str] = []
    n = Notifier(config(hook.url), clock, store=store, sleep=no_sleep)
    n.on_given_up.append(given_up.append)
    await n.send("health alert: imap:responseTime", _message())
    await n.drain(10)
    for _ in range(20):
        clock.t += 700
        await n.run_due()
    [rec] = await store.notifications_recent()
    assert rec.state == "failed" and rec.attempts >= 3 and given_up == ["webhook " +
                                                                       hook.url.split("/")[2]]
    assert n.given_up_recently()
    assert await store.notifications_failed_since(clock.t - 86400) == 1
    later = Notifier(config(hook.url), clock, store=store)     # a restart keeps the warning
    await later.load_state()
    assert later.given_up_recently()
    await n.aclose()


def _message() -> Message:
    return Message("imap failing", "imap failing since now", (("Check", "imap"),), "C62828")


def test_a_cli_change_with_the_receiver_down_is_delivered_by_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """The CLI tries at the terminal, says it failed and that it is kept; the server's loop
    delivers it once the receiver is back."""
    db = tmp_path / "g.db"
    monkeypatch.setenv("GATEWAY_STORE_SQLITE_PATH", str(db))

    async def scenario() -> None:
        hook = WebhookReceiver(statuses=[503, 503])
        await hook.start()
        try:
            monkeypatch.setenv("GATEWAY_NOTIFY_WEBHOOKS", hook.url)
            monkeypatch.setenv("GATEWAY_NOTIFY_BACKOFF_SECONDS", "0.05")
            code = await asyncio.to_thread(main, ["failover", "activate", "--reason",
                                                  "platform down", "--by", "ops"])
            assert code == 3
            err = capsys.readouterr().err
            assert "FAILED" in err and "kept in the store" in err
            store = SqliteStore(db)
            await store.open()
            try:
                [rec] = await store.notifications_recent()
                assert rec.state == "pending" and "by ops" in rec.change
                clock = Clock(rec.next_at + 1)
                server = Notifier(NotifyConfig(webhooks=(hook.url,)), clock, store=store)
                assert await server.run_due() == 1
                [rec] = await store.notifications_recent()
                assert rec.state == "delivered"
                assert json.dumps(hook.bodies[-1]).count("platform down") >= 1
                await server.aclose()
            finally:
                await store.close()
        finally:
            await hook.stop()

    asyncio.run(scenario())
