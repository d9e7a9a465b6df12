"""The supplier's platform checks against a real HTTPS stand-in on loopback (dev CA): https
with expected status and text, TLS with certificate expiry, TCP connect; shown in /health
as their own checks that never make the gateway unhealthy; bad settings name the key."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.cli.health import summary
from gateway.config import ConfigError, load_settings
from gateway.devstack.platform import PlatformStandIn
from gateway.health.monitor import HealthMonitor, Observation, Probe
from gateway.health.platform import build_platform_probes, parse_checks
from gateway.server.certs import make_dev_certs


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[tuple[PlatformStandIn, str]]:
    certs = make_dev_certs(tmp_path / "certs")
    p = PlatformStandIn(certs)
    await p.start()
    yield p, str(certs.ca_cert)
    await p.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _monitor(specs: list[str], ca: str) -> tuple[HealthMonitor, object]:
    probes, client = build_platform_probes(parse_checks(specs), ca_file=ca, timeout=5,
                                           interval=60)

    async def ok() -> Observation:
        return Observation()
    return HealthMonitor([Probe("imap:responseTime", ok, 5), *probes], interval=60), client


async def test_checks_pass_then_fail_without_making_the_gateway_unhealthy(
    platform: tuple[PlatformStandIn, str],
) -> None:
    stand_in, ca = platform
    port = closed_port()
    specs = [*stand_in.checks(), f"tcp relay 127.0.0.1:{stand_in.server.port}",
             f"tcp gone 127.0.0.1:{port}"]
    monitor, client = await _monitor(specs, ca)
    results = await monitor.run_once()
    assert results["platform:portal"].status == "pass"
    edge = results["platform:edge"]
    assert edge.status == "pass" and edge.observed_unit == "d"
    assert isinstance(edge.observed_value, int | float) and 80 < edge.observed_value < 91
    assert results["platform:relay"].status == "pass"
    assert results["platform:gone"].status == "fail"
    assert "refused" in results["platform:gone"].output

    stand_in.fail_with = 503
    results = await monitor.run_once()
    assert results["platform:portal"].status == "fail"
    assert results["platform:portal"].output == "answered HTTP 503, expected 200"
    doc, code = monitor.document(version="1", release_id="1", service_id="gw")
    assert doc["status"] == "pass" and code == 200          # the gateway itself is fine
    entry = doc["checks"]["platform:portal"][0]
    assert entry["status"] == "fail" and entry["affectsStatus"] is False
    assert entry["componentType"] == "platform"
    assert summary(monitor.results())[0] == 0                # gateway probe: OK
    await client.aclose()                                    # type: ignore[attr-defined]


async def test_wrong_text_untrusted_certificate_and_expiry_warning(
    platform: tuple[PlatformStandIn, str],
) -> None:
    stand_in, ca = platform
    hp = stand_in.host_port
    monitor, client = await _monitor(
        [f'https words https://{hp}/status text="Everything is on fire"',
         f"tls soon {hp} cert_days=1000"], ca)
    results = await monitor.run_once()
    assert results["platform:words"].status == "fail"
    assert "lacks the expected text" in results["platform:words"].output
    assert results["platform:soon"].status == "warn"
    assert "certificate expires in" in results["platform:soon"].output
    await client.aclose()                                    # type: ignore[attr-defined]
    untrusted, client2 = await _monitor([f"tls edge {hp}", f"https p https://{hp}/status"], "")
    results = await untrusted.run_once()
    assert results["platform:edge"].status == "fail"
    assert "certificate not accepted" in results["platform:edge"].output
    assert "certificate not trusted" in results["platform:p"].output
    await client2.aclose()                                   # type: ignore[attr-defined]


@pytest.mark.parametrize("spec, words", [
    ("ftp x host:1", "https|tcp|tls"),
    ("https x http://plain.example/", "https:// URL"),
    ("tcp x nohostport", "HOST:PORT"),
    ("https x https://a.example/ colour=red", "unknown option"),
    ("tls x a.example:443 cert_days=soon", "whole number"),
])
def test_bad_checks_are_refused_naming_the_setting(spec: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ={"GATEWAY_PLATFORM_CHECKS": spec})
    assert str(err.value).startswith("platform.checks:") and words in str(err.value)
