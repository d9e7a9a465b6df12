"""The IMAP probe and the mail-flow canary keep their login across rounds (Exchange throttles
bursts of logins: gateway.health.kept), against Exchange's personality with its login-burst
rule switched on: N rounds make one login, a dropped connection is found and replaced, and
the rule is never tripped by the gateway's own probes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.devstack.entra import APP_SERVICE_PRINCIPAL_OID
from gateway.devstack.mailserver import MailServer
from gateway.health.kept import KeptLogin
from gateway.health.probes import build_probes
from gateway.store.factory import build_store
from tests.conftest import LoopThread
from tests.health.conftest import CANARY

# Stricter than anything Exchange is known to do: a fourth login within a minute is refused.
BURST = (3, 60.0)


@pytest.fixture
def mail(stack: Any, loop_thread: LoopThread, tmp_path: Path) -> Iterator[MailServer]:
    server = MailServer(tmp_path / "mail", stack.certs, stack.signer, exchange_proxy=True,
                        exchange_capabilities=True, login_burst=BURST,
                        app_mailboxes=(CANARY,), app_principal=APP_SERVICE_PRINCIPAL_OID)
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop())


def _probes(stack: Any, mail: MailServer, tmp_path: Path, **kw: Any) -> Any:
    settings = stack.gateway_settings(
        8443, imap__port=mail.imap_port, smtp__port=mail.smtp_port,
        health__canary_mailbox=CANARY, health__timeout_seconds=10.0,
        store__sqlite_path=str(tmp_path / "gw.db"), **kw)
    return settings


def test_probe_rounds_keep_one_login_and_replace_a_dropped_one(stack: Any, loop_thread: LoopThread,
                                                              tmp_path: Path,
                                                              mail: MailServer) -> None:
    from gateway.health.probes import probe_http_client
    settings = _probes(stack, mail, tmp_path)
    kept: list[KeptLogin] = []

    async def rounds() -> tuple[int, int, int]:
        store = build_store(settings, listen=False)
        await store.open()
        http = probe_http_client(settings, 10.0)
        try:
            probes = build_probes(settings, store, http, kept=kept)
            imap = next(p for p in probes if p.key == "imap:responseTime")
            for _ in range(10):
                await imap.run()
            ten = mail.imap_logins(CANARY)
            # The server goes away and comes back: the kept connection is dead.
            await mail.stop_imap()
            await mail.start_imap()
            for _ in range(5):
                await imap.run()
            after = mail.imap_logins(CANARY)
            return ten, after, len(kept)
        finally:
            for k in kept:
                await k.close()
            await http.aclose()
            await store.close()
    ten, after, held = loop_thread.run(rounds())
    assert ten == 1                 # ten rounds, one login (and the burst rule untouched)
    assert after == 1               # the restarted proxy counts afresh: one new login
    assert held == 1


def test_canary_rounds_keep_their_login(stack: Any, loop_thread: LoopThread, tmp_path: Path,
                                        mail: MailServer) -> None:
    """Five mail-flow rounds (send, see it arrive over IMAP, clean up) make one IMAP login for
    the canary, and every round passes: the burst rule (3 a minute) is never met."""
    settings = _probes(stack, mail, tmp_path, health__mailflow_interval_seconds=60.0,
                       health__mailflow_fail_seconds=10.0, health__mailflow_warn_seconds=8.0)
    kept: list[KeptLogin] = []

    async def rounds() -> list[Any]:
        from gateway.health.probes import probe_http_client
        store = build_store(settings, listen=False)
        await store.open()
        http = probe_http_client(settings, 10.0)
        try:
            probes = build_probes(settings, store, http, kept=kept)
            flow = next(p for p in probes if p.key == "mailflow:latency")
            return [await flow.run() for _ in range(5)]
        finally:
            for k in kept:
                await k.close()
            await http.aclose()
            await store.close()
    started = time.monotonic()
    results = loop_thread.run(rounds(), timeout=120)
    # (A failed round raises ProbeFailed; a slow one would say "warn".)
    assert len(results) == 5 and all(r.status is None and r.unit == "s" for r in results)
    assert mail.imap_logins(CANARY) == 1, time.monotonic() - started
