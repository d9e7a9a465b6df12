"""/health, /metrics and the probes against the real dev stack: every upstream failing in
turn, recovery, access settings, and the document's shape."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from gateway.devstack.stack import DevStack
from gateway.health.monitor import HealthMonitor
from tests.conftest import Gateway, LoopThread, start_gateway

SCHEMA = json.loads((Path(__file__).parent / "health-schema.json").read_text())
REQUIRED = ("entra:responseTime", "imap:responseTime", "smtp:responseTime",
            "graph:responseTime", "store:responseTime", "failover:mode", "sessions:count")
FAST: dict[str, Any] = {"health__interval_seconds": 0.3, "health__timeout_seconds": 1.0}


def monitor_of(gw: Gateway) -> HealthMonitor:
    m: HealthMonitor = gw.running().health
    return m


def wait_all(gw: Gateway, after: float | None = None) -> None:
    """Until every probe has a result (started after ``after``, when given)."""
    m = monitor_of(gw)
    gw.loop.run(m.wait_ready(), timeout=20)
    if after is not None:
        for key in m._slots:
            gw.loop.run(m.next_result(key, after=after), timeout=20)


@pytest.fixture(scope="module")
def gw(stack: DevStack, loop_thread: LoopThread, graph_lite: Any,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    g = start_gateway(stack, loop_thread, tmp_path_factory.mktemp("gw"),
                      graph__base_url=graph_lite.base_url, **FAST)
    wait_all(g)
    yield g
    g.stop()


def test_document_passes_and_follows_the_draft(gw: Gateway) -> None:
    """With every upstream up, /health is 200 health+json, valid, with every required check."""
    r = gw.client().get("/health")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/health+json")
    assert r.headers.get("x-request-id")
    doc = r.json()
    jsonschema.validate(doc, SCHEMA)
    assert doc["status"] == "pass", doc
    assert set(REQUIRED) <= set(doc["checks"])
    for key in REQUIRED:
        entry = doc["checks"][key][0]
        assert entry["status"] == "pass" and "time" in entry and "ageSeconds" in entry
    assert doc["checks"]["failover:mode"][0]["observedValue"] == \
        gw.settings.failover.initial_mode
    assert doc["checks"]["imap:responseTime"][0]["observedUnit"] == "ms"
    for path in ("/livez", "/readyz"):
        assert gw.client().get(path).status_code == 200


def _imap(stack: DevStack, loop: LoopThread, down: bool) -> None:
    assert stack.mail is not None
    loop.run(stack.mail.stop_imap() if down else stack.mail.start_imap())


def _smtp(stack: DevStack, loop: LoopThread, down: bool) -> None:
    assert stack.mail is not None
    loop.run(stack.mail.stop_smtp() if down else stack.mail.start_smtp())


def _entra(fault: str) -> Any:
    def act(stack: DevStack, loop: LoopThread, down: bool) -> None:
        assert stack.entra is not None
        stack.entra.set_fault(fault if down else None)
    return act


FAULTS = {
    "imap:responseTime": _imap,
    "smtp:responseTime": _smtp,
    "entra:responseTime:error": _entra("error"),
    "entra:responseTime:hang": _entra("hang"),
    "graph:responseTime": None,   # the Graph stand-in of this module answers 503
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_each_upstream_fails_in_turn_and_recovers(case: str, gw: Gateway, stack: DevStack,
                                                  loop_thread: LoopThread, graph_lite: Any) -> None:
    """The failing upstream's check fails in the first round after the fault (503), the
    others still pass, and after recovery the next round passes again (200)."""
    key = ":".join(case.split(":")[:2])
    m = monitor_of(gw)
    act = FAULTS[case]

    def fault(down: bool) -> None:
        if act is None:
            graph_lite.fault = 503 if down else None
        else:
            act(stack, loop_thread, down)

    try:
        t = gw.clock()
        fault(True)
        r = gw.loop.run(m.next_result(key, after=t), timeout=20)
        assert r.status == "fail", r
        assert r.output
        resp = gw.client().get("/health")
        assert resp.status_code == 503
        doc = resp.json()
        jsonschema.validate(doc, SCHEMA)
        assert doc["status"] == "fail" and doc["checks"][key][0]["status"] == "fail"
        others = [k for k in REQUIRED if k != key]
        assert all(doc["checks"][k][0]["status"] == "pass" for k in others), doc
    finally:
        fault(False)
    t = gw.clock()
    assert gw.loop.run(m.next_result(key, after=t), timeout=20).status == "pass"
    wait_all(gw, after=t)
    assert gw.client().get("/health").status_code == 200


@pytest.mark.parametrize("overrides,headers,detailed", [
    ({"health__access": "open"}, {}, True),
    ({"health__access": "network", "health__allow": ["10.0.0.0/8"]}, {}, False),
    ({"health__access": "network"}, {}, True),
    ({"health__access": "token", "health__token": "t" * 24}, {}, False),
    ({"health__access": "token", "health__token": "t" * 24},
     {"Authorization": "Bearer " + "t" * 24}, True),
    ({"health__access": "token", "health__token": "t" * 24},
     {"Authorization": "Bearer " + "x" * 24}, False),
])
def test_access_setting_decides_who_sees_details(stack: DevStack, loop_thread: LoopThread,
                                                 tmp_path: Path, graph_lite: Any,
                                                 overrides: dict[str, Any],
                                                 headers: dict[str, str], detailed: bool) -> None:
    """Details (and /metrics) only for callers health.access admits; the status for all;
    /livez and /readyz always open."""
    g = start_gateway(stack, loop_thread, tmp_path, graph__base_url=graph_lite.base_url,
                      **FAST, **overrides)
    try:
        wait_all(g)
        c = g.client(headers=headers)
        doc = c.get("/health").json()
        assert doc["status"] in ("pass", "warn", "fail")
        assert ("checks" in doc) is detailed
        metrics = c.get("/metrics")
        assert metrics.status_code == (200 if detailed else 403)
        if detailed:
            assert 'gateway_http_requests_total{method="GET",route="/health",status="200"}' \
                in metrics.text
            assert "gateway_health_check_status" in metrics.text
            mode = g.settings.failover.initial_mode
            assert f'gateway_failover_mode{{mode="{mode}"}} 1.0' in metrics.text
        for path in ("/livez", "/readyz"):
            assert g.client().get(path).status_code == 200
    finally:
        g.stop()


def test_metrics_on_a_separate_port(stack: DevStack, loop_thread: LoopThread, tmp_path: Path,
                                    graph_lite: Any) -> None:
    """With metrics.port set, /metrics is served there and not on the main port."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    g = start_gateway(stack, loop_thread, tmp_path, graph__base_url=graph_lite.base_url,
                      metrics__port=port, **FAST)
    try:
        wait_all(g)
        g.client().get("/livez")
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False)
        assert r.status_code == 200 and "gateway_upstream_connections_total" in r.text
        main = g.client().get("/metrics")
        assert "gateway_http_requests_total" not in main.text
    finally:
        g.stop()


def test_canary_login_graph_call_and_mail_flow(
    stack: DevStack, loop_thread: LoopThread, tmp_path: Path, app_mail: Any, graph_lite: Any,
) -> None:
    """With a canary mailbox, IMAP logs in with an app-only token, Graph is called with one,
    the mail-flow canary reports its latency, and its messages are cleaned up."""
    from tests.health.conftest import CANARY
    seen = graph_lite.seen
    g = start_gateway(stack, loop_thread, tmp_path, graph__base_url=graph_lite.base_url,
                      imap__port=app_mail.imap_port, smtp__port=app_mail.smtp_port,
                      health__canary_mailbox=CANARY, health__mailflow_interval_seconds=0.5,
                      health__mailflow_warn_seconds=5.0, health__mailflow_fail_seconds=10.0,
                      health__interval_seconds=0.3, health__timeout_seconds=3.0)
    try:
        m = monitor_of(g)
        t = g.clock()
        flow = g.loop.run(m.next_result("mailflow:latency", after=t), timeout=30)
        assert flow.status == "pass" and flow.observed_unit == "s", flow
        wait_all(g)
        doc = g.client().get("/health").json()
        jsonschema.validate(doc, SCHEMA)
        assert doc["status"] == "pass", doc
        assert "mailflow:latency" in doc["checks"]
        assert graph_lite.seen > seen
        assert "Login: user=<" + CANARY in app_mail.log_path.read_text()
    finally:
        g.stop()
    # Every canary message (INBOX and Sent Items) is gone after the round.
    deadline = time.monotonic() + 10
    while True:
        left = [p for p in app_mail.maildir(CANARY).rglob("*") if p.is_file()
                and p.parent.name in ("cur", "new") and b"X-Gateway-Canary" in p.read_bytes()]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(left) <= 2  # at most the round cut short when the gateway stopped


def test_graph_probe_against_the_dev_stack_graph_stand_in(stack: DevStack,
                                                          loop_thread: LoopThread,
                                                          tmp_path: Path) -> None:
    """Without a canary, the Graph probe passes against the dev stack's Graph stand-in."""
    assert stack.graph is not None
    g = start_gateway(stack, loop_thread, tmp_path, **FAST)
    try:
        wait_all(g)
        r = monitor_of(g).results()["graph:responseTime"]
        assert r.status == "pass", r
    finally:
        g.stop()
