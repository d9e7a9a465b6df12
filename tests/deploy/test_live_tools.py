"""A running ``gateway serve`` (its own process, TLS, on the dev stack) checked with the tools
monitoring and security reviews use on it: Prometheus' ``promtool check metrics`` on a live
/metrics scraped as deployed (through a trusted proxy, from the monitoring network), Nagios'
``check_http`` on /health and /livez, and sslyze against Mozilla's intermediate profile.
The tools come from scripts/install-system-deps.sh (Debian) and the dev extra (sslyze)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.devstack.procs import free_port
from gateway.devstack.stack import DevStack

PROMTOOL = "/usr/bin/promtool"
CHECK_HTTP = "/usr/lib/nagios/plugins/check_http"
SCRAPER = "10.20.30.40"      # a Prometheus in the monitoring network (metrics.allow)
OUTSIDER = "203.0.113.9"     # anyone else, as nginx would forward them


@dataclass
class Served:
    url: str
    port: int
    ca: Path
    log: Path


def _wait_ready(url: str, ca: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"gateway serve exited: {log.read_text()[-2000:]}"
        try:
            r = httpx.get(url + "/readyz", verify=ctx, trust_env=False, timeout=2)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("gateway serve did not become ready")


@pytest.fixture(scope="module")
def served(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`gateway serve` with a settings file, as production runs it: its own process, TLS from the
    dev CA, behind a proxy on loopback (server.trusted_proxies), metrics for the monitoring
    network only (metrics.allow), the detailed health for no one here (health.allow)."""
    assert stack.certs is not None
    tmp = tmp_path_factory.mktemp("served")
    port = free_port()
    settings = stack.gateway_settings(
        port, store__sqlite_path=str(tmp / "gw.db"),
        server__trusted_proxies=["127.0.0.1/32"], metrics__allow=["10.0.0.0/8"],
        health__allow=["192.0.2.0/24"], health__interval_seconds=1.0,
        failover__initial_mode="active", general__log_level="warning")
    conf = tmp / "gateway.toml"
    conf.write_text(settings.to_toml())
    conf.chmod(0o600)
    log = tmp / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_CONFIG"] = str(conf)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"https://127.0.0.1:{port}"
        _wait_ready(url, stack.certs.ca_cert, proc, log)
        yield Served(url, port, stack.certs.ca_cert, log)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _client(served: Served) -> httpx.Client:
    return httpx.Client(base_url=served.url, trust_env=False, timeout=10,
                        verify=ssl.create_default_context(cafile=str(served.ca)))


# ---------------------------------------------------------------- promtool and metrics.allow
def test_promtool_accepts_the_live_metrics_scraped_through_the_proxy(served: Served) -> None:
    """The monitoring network's scraper, forwarded by the trusted proxy, gets /metrics, and
    the exposition passes `promtool check metrics` (format and naming lint)."""
    with _client(served) as c:
        c.get("/livez")
        r = c.get("/metrics", headers={"X-Forwarded-For": SCRAPER})
    assert r.status_code == 200, r.text
    assert "gateway_http_requests_total" in r.text
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=r.content,
                           capture_output=True, timeout=60)
    assert check.returncode == 0, (check.stdout + check.stderr).decode()
    assert check.stdout.strip() == b"" and check.stderr.strip() == b"", \
        (check.stdout + check.stderr).decode()


def test_promtool_refuses_broken_exposition() -> None:
    """The check above can fail: promtool rejects a malformed and a badly named metric."""
    bad = b"# TYPE gateway_x counter\ngateway_x{a=\"1\" 3\n"
    assert subprocess.run([PROMTOOL, "check", "metrics"], input=bad,
                          capture_output=True, timeout=60).returncode != 0
    lint = b"# HELP gateway_y_count a counter\n# TYPE gateway_y_count counter\ngateway_y_count 1\n"
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=lint, capture_output=True,
                       timeout=60)
    assert r.returncode != 0 and b"_total" in r.stdout + r.stderr


def test_metrics_refused_to_everyone_outside_metrics_allow(served: Served) -> None:
    """A forwarded outsider and the proxy's own host are refused; an X-Forwarded-For naming
    the monitoring network from a peer that is not a trusted proxy is not believed."""
    with _client(served) as c:
        assert c.get("/metrics", headers={"X-Forwarded-For": OUTSIDER}).status_code == 403
        assert c.get("/metrics").status_code == 403
    untrusted = httpx.HTTPTransport(local_address="127.0.0.2",
                                    verify=ssl.create_default_context(cafile=str(served.ca)))
    with httpx.Client(base_url=served.url, transport=untrusted, trust_env=False) as c:
        r = c.get("/metrics", headers={"X-Forwarded-For": SCRAPER})
        assert r.status_code == 403
        assert c.get("/livez").status_code == 200  # the same peer does reach the gateway


# ---------------------------------------------------------------- check_http
def _check_http(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHECK_HTTP, "-H", "127.0.0.1", "-I", "127.0.0.1",
                           "-p", str(served.port), "--ssl", "-t", "10", *args],
                          capture_output=True, text=True, timeout=30)


def test_check_http_on_livez(served: Served) -> None:
    r = _check_http(served, "-u", "/livez", "-e", "HTTP/1.1 200", "-r", '"status": ?"pass"')
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("HTTP OK"), r.stdout


def test_check_http_on_health(served: Served) -> None:
    """As Nagios polls it: 200 with application/health+json and status pass (the dev stack
    is healthy), and CRITICAL when asked for a status the gateway does not report."""
    deadline = time.monotonic() + 30
    while True:
        r = _check_http(served, "-u", "/health", "-e", "HTTP/1.1 200",
                        "-d", "application/health+json",
                        "-r", '"status": "(pass|warn)"')
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)  # the first probe round may still be running
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("HTTP OK"), r.stdout
    wrong = _check_http(served, "-u", "/health", "-s", '"status": "nonsense"')
    assert wrong.returncode == 2 and wrong.stdout.startswith("HTTP CRITICAL"), wrong.stdout


# ---------------------------------------------------------------- TLS: sslyze, Mozilla intermediate
MOZILLA_TLS12 = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}
MOZILLA_TLS13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                 "TLS_CHACHA20_POLY1305_SHA256"}


def _scan(port: int, commands: set[Any]) -> Any:
    from sslyze import Scanner, ServerNetworkLocation, ServerScanRequest

    scanner = Scanner()
    scanner.queue_scans([ServerScanRequest(
        server_location=ServerNetworkLocation("127.0.0.1", port), scan_commands=commands)])
    [result] = list(scanner.get_results())
    assert result.scan_result is not None, result.connectivity_error_trace
    return result


def _offer(sr: Any) -> tuple[set[str], set[str], set[str], set[str]]:
    """(protocol versions, TLS 1.2 suites, TLS 1.3 suites, curves) a scan found."""
    versions = {name for name, attempt in (
        ("SSLv2", sr.ssl_2_0_cipher_suites), ("SSLv3", sr.ssl_3_0_cipher_suites),
        ("TLSv1", sr.tls_1_0_cipher_suites), ("TLSv1.1", sr.tls_1_1_cipher_suites),
        ("TLSv1.2", sr.tls_1_2_cipher_suites), ("TLSv1.3", sr.tls_1_3_cipher_suites))
        if attempt.result and attempt.result.is_tls_version_supported}

    def accepted(attempt: Any) -> set[str]:
        return {a.cipher_suite.name for a in attempt.result.accepted_cipher_suites} \
            if attempt.result else set()
    curves = {c.name for c in (sr.elliptic_curves.result.supported_curves or [])} \
        if sr.elliptic_curves.result else set()
    return versions, accepted(sr.tls_1_2_cipher_suites), accepted(sr.tls_1_3_cipher_suites), \
        curves


def test_sslyze_finds_exactly_mozillas_intermediate_profile(served: Served) -> None:
    """Protocols TLS 1.2 and 1.3 only; the TLS 1.2 suites offered are the profile's ECDHE
    AES-GCM/ChaCha20 ones for this (ECDSA) certificate, no CBC; the three TLS 1.3 suites;
    curves exactly X25519, P-256, P-384 (no P-521, no X448); and sslyze's own Mozilla
    checker finds nothing to say but about the development certificate."""
    from sslyze.mozilla_tls_profile.tls_config_checker import (
        SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
        MozillaTlsConfiguration,
        ServerNotCompliantWithTlsConfiguration,
        TlsConfigurationEnum,
        check_server_against_tls_configuration,
    )

    result = _scan(served.port, SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER)
    versions, tls12, tls13, curves = _offer(result.scan_result)
    assert versions == {"TLSv1.2", "TLSv1.3"}
    assert tls12 == {n for n in MOZILLA_TLS12 if "ECDSA" in n}, tls12
    assert tls13 == MOZILLA_TLS13
    assert curves == {"X25519", "secp256r1", "secp384r1"}, curves  # secp256r1 = prime256v1

    profile = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    try:
        check_server_against_tls_configuration(result, profile)
        issues: dict[str, str] = {}
    except ServerNotCompliantWithTlsConfiguration as e:
        issues = e.issues
    # The dev CA is not a public one and its certificate lives a year: those are the
    # certificate's business (production uses the council's), not the server's offer.
    assert {k: v for k, v in issues.items() if not k.startswith(
        ("certificate_", "maximum_certificate_lifespan"))} == {}


def test_sslyze_sees_what_pythons_default_server_context_offers_too_much(stack: DevStack) -> None:
    """The check above can fail: Python's own server context (what uvicorn builds without
    gateway.server.tls) offers CBC suites and the P-521 and X448 groups, and sslyze reports them."""
    from sslyze import ScanCommand

    assert stack.certs is not None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(stack.certs.server_cert, stack.certs.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with contextlib.suppress(OSError), ctx.wrap_socket(conn, server_side=True) as tls:
                tls.settimeout(2)
                with contextlib.suppress(OSError):
                    tls.recv(1)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        result = _scan(listener.getsockname()[1],
                       {ScanCommand.TLS_1_2_CIPHER_SUITES, ScanCommand.ELLIPTIC_CURVES})
    finally:
        stop.set()
        t.join(5)
        listener.close()
    _, tls12, _, curves = _offer(result.scan_result)
    assert any("CBC" in n for n in tls12), tls12
    assert {"secp521r1", "X448"} <= curves, curves


def test_sslyze_is_installed_where_the_suite_runs() -> None:
    """The TLS check above needs the scanner from the dev extra (no silent skip)."""
    import sslyze

    assert sslyze.__version__
    assert shutil.which(PROMTOOL) and os.access(CHECK_HTTP, os.X_OK)
