"""A burst of monitor requests is served from the cached results: no upstream sees it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gateway.devstack.stack import DevStack
from gateway.health.monitor import HealthMonitor
from tests.conftest import LoopThread, start_gateway


def _connections(text: str) -> dict[str, float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == "gateway_upstream_connections":
            for s in fam.samples:
                if s.name.endswith("_total"):
                    out[s.labels["upstream"]] = s.value
    return out


def test_1000_health_requests_open_no_upstream_connection(stack: DevStack,
                                                          loop_thread: LoopThread,
                                                          tmp_path: Path, graph_lite: Any) -> None:
    """1,000 GET /health open no connection to Entra, Dovecot, SMTP or Graph (counted on
    the servers' side where they can be, and by the gateway's own connection counter)."""
    assert stack.entra is not None and stack.mail is not None
    g = start_gateway(stack, loop_thread, tmp_path, graph__base_url=graph_lite.base_url,
                      health__interval_seconds=600.0, health__timeout_seconds=2.0)
    try:
        m: HealthMonitor = g.running().health
        g.loop.run(m.wait_ready(), timeout=20)
        client = g.client()
        entra_before = sum(stack.entra.requests_seen.values())
        dovecot_before = stack.mail.log_path.read_text().count("imap-login:")
        graph_before = graph_lite.seen
        conn_before = _connections(client.get("/metrics").text)

        def burst(n: int) -> list[int]:
            c = g.client()
            return [c.get("/health").status_code for _ in range(n)]

        with ThreadPoolExecutor(4) as pool:
            codes = [code for part in pool.map(burst, [250] * 4) for code in part]
        assert len(codes) == 1000 and set(codes) == {200}
        assert sum(stack.entra.requests_seen.values()) == entra_before
        assert stack.mail.log_path.read_text().count("imap-login:") == dovecot_before
        assert graph_lite.seen == graph_before
        assert _connections(client.get("/metrics").text) == conn_before
        assert set(conn_before) >= {"entra", "imap", "smtp", "graph"}
    finally:
        for c in g.clients:
            c.close()
        g.stop()
