"""Faster detection against a real Dovecot: with probes only every ten minutes, a member's
request that meets the dead IMAP server re-probes it at once, so /health shows the failure
within seconds; with the demo's 5-second probes, killing Dovecot shows within 5 s without any
member; either way the next evidence report has the outage window, ended once Dovecot is
back. The canary's rounds are stored, and a refused SMTP submission is recorded as such."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.devstack.entra import APP_SERVICE_PRINCIPAL_OID
from gateway.devstack.mailserver import MailServer
from gateway.devstack.stack import DevStack
from gateway.evidence.export import make_report
from gateway.services import Services
from tests.conftest import Gateway, LoopThread, sign_in, start_gateway
from tests.health.conftest import CANARY, GraphLite


@pytest.fixture
def mail(stack: Any, loop_thread: LoopThread, tmp_path: Path) -> Iterator[MailServer]:
    server = MailServer(tmp_path / "mail", stack.certs, stack.signer,
                        app_mailboxes=(CANARY,), app_principal=APP_SERVICE_PRINCIPAL_OID)
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop())


def _gateway(stack: Any, loop: LoopThread, tmp_path: Path, mail: MailServer,
             **kw: Any) -> Gateway:
    return start_gateway(stack, loop, tmp_path, imap__port=mail.imap_port,
                         smtp__port=mail.smtp_port, **kw)


def _imap_status(g: Gateway, client: Any) -> str:
    return str(client.get("/health").json()["checks"]["imap:responseTime"][0]["status"])


def _wait_for(g: Gateway, client: Any, status: str, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if _imap_status(g, client) == status:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"imap:responseTime not {status} within {within} s")


def _report(g: Gateway) -> Any:
    svc = g.app.state.gateway.services

    async def make() -> Any:
        await svc.recorder.flush()
        now = g.clock()
        return await make_report(svc.settings, svc.store, svc.signer, since=now - 600,
                                 until=now + 1, now=now)
    return g.loop.run(make())


def test_a_member_meeting_a_dead_imap_server_reprobes_at_once(stack: DevStack,
                                                              loop_thread: LoopThread,
                                                              tmp_path: Path,
                                                             mail: MailServer) -> None:
    g = _gateway(stack, loop_thread, tmp_path, mail, health__interval_seconds=600.0,
                 health__reprobe_seconds=1.0)
    try:
        g.loop.run(g.running().health.wait_ready(), timeout=20)
        monitor = g.client()
        assert _imap_status(g, monitor) == "pass"
        member = sign_in(g, "member", "/mail")
        assert member.get("/mail").status_code == 200
        loop_thread.run(mail.stop_imap())
        page = member.get("/mail")
        assert page.status_code >= 500 and "Traceback" not in page.text
        assert _wait_for(g, monitor, "fail", within=5.0) < 5.0
        [outage] = next(c for c in _report(g).checks if c.key == "imap:responseTime").outages
        assert outage.end is None and "cannot be reached" in outage.error
    finally:
        for c in g.clients:
            c.close()
        g.stop()


def test_killed_dovecot_shows_within_5_s_and_as_an_outage_window(stack: DevStack,
                                                                 loop_thread: LoopThread,
                                                                 tmp_path: Path,
                                                                mail: MailServer) -> None:
    g = _gateway(stack, loop_thread, tmp_path, mail, health__interval_seconds=2.0)
    try:
        g.loop.run(g.running().health.wait_ready(), timeout=20)
        monitor = g.client()
        assert _imap_status(g, monitor) == "pass"
        loop_thread.run(mail.stop_imap())
        killed = time.time()
        assert _wait_for(g, monitor, "fail", within=5.0) < 5.0
        loop_thread.run(mail.start_imap())
        _wait_for(g, monitor, "pass", within=10.0)
        doc = monitor.get("/health").json()
        assert "history:writes" in doc["checks"] and "notify:deliveries" in doc["checks"]
        section = next(c for c in _report(g).checks if c.key == "imap:responseTime")
        [outage] = section.outages
        assert outage.end is not None and killed - 3 < outage.start < outage.end
        assert section.failures >= 1 and section.availability < 100
    finally:
        for c in g.clients:
            c.close()
        g.stop()


def test_canary_rounds_are_stored_with_where_they_failed(stack: DevStack, loop_thread: LoopThread,
                                                         tmp_path: Path, mail: MailServer,
                                                        graph_lite: GraphLite) -> None:
    """App-only canary (https://outlook.office365.com/.default) against the dev mail server:
    a delivered round keeps sent/arrived/latency; with SMTP down the round is recorded as
    failed at 'smtp accept', and the report says so."""
    g = _gateway(stack, loop_thread, tmp_path, mail, graph__base_url=graph_lite.base_url,
                 health__canary_mailbox=CANARY, health__mailflow_interval_seconds=0.5,
                 health__mailflow_fail_seconds=5.0, health__mailflow_warn_seconds=4.0,
                 health__timeout_seconds=3.0)
    try:
        monitor = g.running().health
        ok = g.loop.run(monitor.next_result("mailflow:latency"), timeout=30)
        assert ok.status == "pass", ok
        loop_thread.run(mail.stop_smtp())
        after = time.time()
        failed = g.loop.run(monitor.next_result("mailflow:latency", after=after), timeout=30)
        assert failed.status == "fail"
        report = _report(g)
        assert report.canary.ok >= 1
        assert any(stage == "smtp accept" for _, stage, _ in report.canary.failures)
        svc: Services = g.app.state.gateway.services

        async def rounds() -> list[Any]:
            return await svc.store.canary_rounds(0, time.time() + 60)
        stored = g.loop.run(rounds())
        good = next(r for r in stored if r.ok)
        assert good.sent_at is not None and good.arrived_at >= good.sent_at
        assert good.latency is not None and good.latency >= 0
    finally:
        loop_thread.run(mail.start_smtp())
        for c in g.clients:
            c.close()
        g.stop()
