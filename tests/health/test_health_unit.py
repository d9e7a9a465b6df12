"""The probe loop and the health+json document, with in-process probes (no servers)."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.cli.health import CRITICAL, OK, WARNING, summary
from gateway.health.monitor import (
    HealthMonitor,
    Observation,
    Probe,
    ProbeFailed,
    Status,
    instant_check,
)
from gateway.logging import redact

SCHEMA = json.loads((Path(__file__).parent / "health-schema.json").read_text())


async def ok() -> None:
    return None


async def broken() -> None:
    raise ProbeFailed("IMAP server cannot be reached")


async def hangs() -> None:
    await asyncio.sleep(3600)


async def crashes() -> None:
    raise RuntimeError("bug with a secret eyJhbGciOi.eyJzdWIiOi.sig in it")


def monitor(*probes: Probe, **kw: object) -> HealthMonitor:
    return HealthMonitor(probes, interval=0.05, **kw)  # type: ignore[arg-type]


def doc_of(m: HealthMonitor, detailed: bool = True) -> tuple[dict[str, Any], int]:
    return m.document(version="0", release_id="0.1.0", service_id="gw", detailed=detailed)


async def test_all_passing_is_200_and_validates() -> None:
    """Passing probes give status pass, HTTP 200, and a document valid against the schema."""
    m = monitor(Probe("imap:responseTime", ok, 1), Probe("store:responseTime", ok, 1),
                instant={"failover:mode": instant_check("failover:mode",
                                                        lambda: Observation("standby"))})
    await m.run_once()
    doc, status = doc_of(m)
    jsonschema.validate(doc, SCHEMA)
    assert (doc["status"], status) == ("pass", 200)
    entry = doc["checks"]["imap:responseTime"][0]
    assert entry["observedUnit"] == "ms" and entry["status"] == "pass"
    assert doc["checks"]["failover:mode"][0]["observedValue"] == "standby"


async def test_failing_probe_makes_503_with_output() -> None:
    """One failing check makes the whole document fail with 503 and names the reason."""
    m = monitor(Probe("imap:responseTime", broken, 1), Probe("smtp:responseTime", ok, 1))
    await m.run_once()
    doc, status = doc_of(m)
    jsonschema.validate(doc, SCHEMA)
    assert (doc["status"], status) == ("fail", 503)
    assert doc["checks"]["imap:responseTime"][0]["output"] == "IMAP server cannot be reached"
    assert "output" not in doc["checks"]["smtp:responseTime"][0]


async def test_warn_is_200() -> None:
    """A warning check gives status warn and HTTP 200, as the draft says."""
    async def slowish() -> Observation:
        return Observation(12.5, "s", "warn", "canary took 12.5 s")
    m = monitor(Probe("mailflow:latency", slowish, 1), Probe("imap:responseTime", ok, 1))
    await m.run_once()
    doc, status = doc_of(m)
    assert (doc["status"], status) == ("warn", 200)


async def test_hanging_probe_is_cut_at_its_timeout() -> None:
    """A probe that never returns is cut at its timeout and reported failing."""
    m = monitor(Probe("entra:responseTime", hangs, 0.05), Probe("store:responseTime", ok, 1))
    results = await asyncio.wait_for(m.run_once(), 5)
    assert results["entra:responseTime"].status == "fail"
    assert "no answer within" in results["entra:responseTime"].output
    assert results["store:responseTime"].status == "pass"


async def test_probe_crash_is_a_failure_without_details() -> None:
    """An unexpected exception fails the check and shows only its type, never its text."""
    m = monitor(Probe("graph:responseTime", crashes, 1))
    r = (await m.run_once())["graph:responseTime"]
    assert r.status == "fail" and r.output == "probe error: RuntimeError"


async def test_background_loop_serves_cached_results_with_age() -> None:
    """Reading the document runs no probe; results carry their age and change each round."""
    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1

    m = monitor(Probe("imap:responseTime", counted, 1))
    m.start()
    try:
        await m.wait_ready()
        before = calls
        for _ in range(1000):
            doc, _ = doc_of(m)
        assert calls - before <= 1  # at most the one background round running meanwhile
        assert doc["checks"]["imap:responseTime"][0]["ageSeconds"] >= 0
        first = m.results()["imap:responseTime"].seq
        nxt = await asyncio.wait_for(m.next_result("imap:responseTime"), 5)
        assert nxt.seq > first
    finally:
        await m.stop()


async def test_a_member_failure_just_after_a_probe_is_probed_soon() -> None:
    """A member meets a failure moments after a probe of that upstream started (and passed):
    the probe it asks for runs once ``reprobe_after`` has passed since that start, not at the
    next interval (10 minutes here); it was once dropped. A burst of failures asks for one
    probe, and nothing is left due after it."""
    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1

    m = HealthMonitor([Probe("imap:responseTime", counted, 1)], interval=600.0,
                      reprobe_after=0.3)
    m.start()
    try:
        await m.wait_ready()
        first = m.results()["imap:responseTime"]
        asked = [m.reprobe("imap:responseTime") for _ in range(20)]
        assert asked == [["imap:responseTime"]] * 20
        assert calls == 1                       # not at once: the last one just started
        again = await asyncio.wait_for(m.next_result("imap:responseTime"), 5)
        assert again.seq == first.seq + 1 and again.time - first.time >= 0.29
        await asyncio.sleep(0.6)
        assert calls == 2                       # the burst cost one probe, and none is due
        assert m.reprobe("unknown:check") == []
    finally:
        await m.stop()


async def test_a_member_failure_long_after_a_probe_is_probed_at_once() -> None:
    """With the last probe started longer ago than ``reprobe_after``, a member's failure
    wakes the probe at once."""
    m = HealthMonitor([Probe("imap:responseTime", ok, 1)], interval=600.0, reprobe_after=0.1)
    m.start()
    try:
        await m.wait_ready()
        await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        asked_at = loop.time()
        assert m.reprobe("imap:responseTime") == ["imap:responseTime"]
        await asyncio.wait_for(m.next_result("imap:responseTime"), 5)
        assert loop.time() - asked_at < 0.1 + 0.5   # at once, not after a second wait
    finally:
        await m.stop()


async def test_stale_results_fail_and_unprobed_warn() -> None:
    """Before the first round a check warns; a result far older than the interval fails."""
    now = [1000.0]
    m = monitor(Probe("imap:responseTime", ok, 1), clock=lambda: now[0])
    assert m.results()["imap:responseTime"].status == "warn"
    m.start()
    try:
        await m.wait_ready()
        await m.stop()
        m._tasks = [asyncio.create_task(asyncio.sleep(0))]  # the loop "runs" but is stuck
        now[0] += 3600
        r = m.results()["imap:responseTime"]
        assert r.status == "fail" and r.output.startswith("no result for")
    finally:
        await m.stop()


async def test_summary_document_hides_checks() -> None:
    """Without access to the details only the overall status is given."""
    m = monitor(Probe("imap:responseTime", broken, 1))
    await m.run_once()
    doc, status = doc_of(m, detailed=False)
    jsonschema.validate(doc, SCHEMA)
    assert "checks" not in doc and "output" not in doc and status == 503


@pytest.mark.parametrize("statuses,code", [(["pass", "pass"], OK), (["pass", "warn"], WARNING),
                                           (["warn", "fail"], CRITICAL)])
async def test_probe_summary_exit_codes(statuses: list[Status], code: int) -> None:
    """`gateway probe` maps pass/warn/fail to Nagios 0/1/2 and prints one line."""
    async def make(s: Status) -> Observation:
        if s == "fail":
            raise ProbeFailed("down")
        return Observation(status=s)

    probes = [Probe(f"c{i}:responseTime", functools.partial(make, s), 1)
              for i, s in enumerate(statuses)]
    m = monitor(*probes)
    got, line = summary(await m.run_once())
    assert got == code and "\n" not in line and line.startswith("HEALTH ")


@pytest.mark.parametrize("secret", [
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl",
    "Bearer abc.def-ghi",
    "Cookie: __Host-gw_session=0123456789abcdef",
    "refresh_token=" + "A" * 20,
    "x" * 12 + "Zq9_-" * 10,
    "dXNlcj1hbGV4QGNvdW5jaWwuZXhhbXBsZQFhdXRoPUJlYXJlciB4",
])
def test_redact_removes_token_shapes(secret: str) -> None:
    """The log filter removes JWTs, bearer values, cookies, named secrets and opaque tokens."""
    out = redact(f"before {secret} after")
    assert out.startswith("before ")
    sensitive = secret.split("=", 1)[-1].split(": ", 1)[-1].split(" ", 1)[-1]
    assert sensitive not in out
