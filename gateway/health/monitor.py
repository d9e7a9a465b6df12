"""Health of the gateway and its upstreams: background probes, cached results, and the
``application/health+json`` document (IETF draft "Health Check Response Format for HTTP
APIs", draft-inadarei-api-health-check).

Owns the probe loop. Each ``Probe`` (a check key such as ``imap:responseTime`` plus an async
function; the functions live in ``gateway.health.probes``) runs in its own task on its interval
and is cut at its timeout, so one hanging upstream neither stalls the others nor the
monitors. A
request for ``/health`` only reads the latest ``CheckResult`` of each probe: a burst of monitor
requests never reaches an upstream. Instant checks (``failover:mode``) are cheap callables read
at request time.

    HealthMonitor(probes, interval, clock)  .start() / .stop() in the app's lifespan
      .run_once()            every probe once, concurrently (``gateway probe`` and tests)
      .next_result(key)      wait for the next result of one probe (tests)
      .document(...)         the health+json body and its HTTP status (200 pass/warn, 503 fail)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.switch.audit import iso

log = logging.getLogger(__name__)

Status = Literal["pass", "warn", "fail"]
MEDIA_TYPE = "application/health+json"
_RANK: dict[str, int] = {"pass": 0, "warn": 1, "fail": 2}
# A result older than this many intervals (plus the timeout) means the loop is not running.
STALE_INTERVALS = 3


class ProbeFailed(Exception):
    """A probe found its upstream unhealthy; the message becomes the check's ``output`` (it is
    shown to monitors: name the part that failed, never a token or mail content)."""


@dataclass(frozen=True)
class Observation:
    """What a probe function reports. ``value=None`` means "use the measured response time in
    ms"; ``status=None`` means pass (or warn when slower than the warn threshold)."""

    value: float | int | str | None = None
    unit: str | None = None
    status: Status | None = None
    output: str = ""


ProbeFn = Callable[[], Awaitable[Observation | None]]


@dataclass(frozen=True)
class Probe:
    key: str                      # "component:measurement"
    run: ProbeFn
    timeout: float
    interval: float | None = None  # None: the monitor's interval
    component_type: str = "component"
    # Shown and kept like the others, but never makes the gateway itself unhealthy (the
    # supplier's platform checks: their failure is the reason the gateway is needed).
    informational: bool = False


@dataclass(frozen=True)
class CheckResult:
    key: str
    status: Status
    observed_value: float | int | str | None
    observed_unit: str | None
    time: float                   # wall clock when the probe started
    duration: float               # seconds the probe took (or its timeout)
    output: str = ""
    component_type: str = "component"
    seq: int = 0                  # counts the results of this probe
    informational: bool = False

    def entry(self, now: float) -> dict[str, Any]:
        """One element of ``checks[key]`` in the health+json document."""
        out: dict[str, Any] = {"componentType": self.component_type, "status": self.status,
                               "time": iso(self.time)}
        if self.observed_value is not None:
            out["observedValue"] = self.observed_value
        if self.observed_unit:
            out["observedUnit"] = self.observed_unit
        if self.status != "pass" and self.output:
            out["output"] = self.output
        # An extension (the draft allows them): seconds since this result was observed.
        out["ageSeconds"] = round(max(0.0, now - self.time), 3)
        if self.informational:
            out["affectsStatus"] = False
        return out


def worst(statuses: Iterable[str]) -> Status:
    rank = max((_RANK[s] for s in statuses), default=0)
    order: tuple[Status, Status, Status] = ("pass", "warn", "fail")
    return order[rank]


@dataclass
class _Slot:
    probe: Probe
    result: CheckResult | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    last_start: float = float("-inf")     # monotonic
    reprobe_timer: asyncio.TimerHandle | None = None   # a member's failure, probed soon


Listener = Callable[[CheckResult], None]


class HealthMonitor:
    def __init__(self, probes: Iterable[Probe], *, interval: float, warn_ms: float = 2000.0,
                 clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] = time.monotonic,
                 instant: dict[str, Callable[[], CheckResult]] | None = None,
                 listeners: Iterable[Listener] = (), reprobe_after: float = 2.0) -> None:
        self.interval = interval
        self.reprobe_after = reprobe_after
        self.warn_ms = warn_ms
        self.clock = clock
        self.timer = timer
        self.instant = dict(instant or {})
        self.listeners = list(listeners)
        self._slots = {p.key: _Slot(p) for p in probes}
        self._tasks: list[asyncio.Task[None]] = []
        # The loop the probes run on, from ``start`` to ``stop`` (None when not running): a
        # member's failure schedules its re-probe there.
        self._event_loop: asyncio.AbstractEventLoop | None = None

    @property
    def keys(self) -> list[str]:
        return [*self._slots, *self.instant]

    # -- running
    async def _run(self, slot: _Slot) -> CheckResult:
        probe = slot.probe
        started_wall, started = self.clock(), self.timer()
        slot.last_start = started
        if slot.reprobe_timer is not None:   # this probe starts after the failure: it covers it
            slot.reprobe_timer.cancel()
            slot.reprobe_timer = None
        value: float | int | str | None
        unit: str | None
        status: Status
        output = ""
        try:
            obs = await asyncio.wait_for(probe.run(), probe.timeout) or Observation()
        except TimeoutError:
            elapsed = self.timer() - started
            value, unit, status = round(elapsed * 1000, 1), "ms", "fail"
            output = f"no answer within {probe.timeout:g} s"
        except ProbeFailed as exc:
            elapsed = self.timer() - started
            value, unit, status, output = round(elapsed * 1000, 1), "ms", "fail", str(exc)
        except Exception as exc:  # noqa: BLE001 - a probe must never take the loop down
            elapsed = self.timer() - started
            value, unit, status = round(elapsed * 1000, 1), "ms", "fail"
            output = f"probe error: {type(exc).__name__}"
            log.warning("health probe %s raised %s", probe.key, type(exc).__name__)
        else:
            elapsed = self.timer() - started
            value, unit, output = obs.value, obs.unit, obs.output
            if value is None:
                value, unit = round(elapsed * 1000, 1), "ms"
            status = obs.status or ("warn" if unit == "ms" and isinstance(value, float)
                                    and value > self.warn_ms else "pass")
            if status == "warn" and not output:
                output = f"slow: {value} {unit}"
        seq = slot.result.seq + 1 if slot.result else 1
        result = CheckResult(probe.key, status, value, unit, started_wall, elapsed, output,
                             probe.component_type, seq, probe.informational)
        before = slot.result.status if slot.result else None
        if before != status:
            # A failure is news for whoever watches the log; a recovery or a first pass is not.
            level = logging.WARNING if status == "fail" else logging.INFO
            log.log(level, "health check %s is now %s (was %s)%s", probe.key, status,
                    before or "unknown", f": {output}" if output else "")
        slot.result = result
        slot.changed.set()
        slot.changed = asyncio.Event()
        for listener in self.listeners:
            try:
                listener(result)
            except Exception:
                log.exception("health listener failed for %s", probe.key)
        return result

    async def run_once(self) -> dict[str, CheckResult]:
        """Run every probe once, concurrently; the results are also kept."""
        results = await asyncio.gather(*(self._run(s) for s in self._slots.values()))
        return {r.key: r for r in results}

    async def _loop(self, slot: _Slot) -> None:
        every = slot.probe.interval or self.interval
        while True:
            slot.wake.clear()
            await self._run(slot)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(slot.wake.wait(), every)

    def reprobe(self, *keys: str) -> list[str]:
        """Probe these checks soon instead of at their next interval (a member just met a
        failure of that upstream): at once, or, if one started less than ``reprobe_after``
        seconds ago, when that much time has passed since it started. A burst of failing
        requests costs the upstream one probe, and a failure that comes just after a passing
        probe is still probed: it used to be dropped, and waited for the next interval
        (test_a_member_failure_just_after_a_probe_is_probed_soon). Returns the keys due."""
        due = []
        now = self.timer()
        for key in keys:
            slot = self._slots.get(key)
            if slot is None or self._event_loop is None:    # unknown, or not running
                continue
            due.append(key)
            if slot.reprobe_timer is not None:
                continue                  # already due
            wait = slot.last_start + self.reprobe_after - now
            if wait <= 0:
                self._wake(slot)
            else:
                slot.reprobe_timer = self._event_loop.call_later(wait, self._wake, slot)
        return due

    def _wake(self, slot: _Slot) -> None:
        slot.reprobe_timer = None
        slot.last_start = self.timer()    # debounce from the moment of asking
        slot.wake.set()

    def start(self) -> None:
        """Start one task per probe (each runs at once, then on its interval)."""
        if not self._tasks:
            self._event_loop = asyncio.get_running_loop()
            self._tasks = [asyncio.create_task(self._loop(s), name=f"probe {k}")
                           for k, s in self._slots.items()]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        self._event_loop = None
        for slot in self._slots.values():
            if slot.reprobe_timer is not None:
                slot.reprobe_timer.cancel()
                slot.reprobe_timer = None
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def next_result(self, key: str, after: float | None = None) -> CheckResult:
        """The next result of ``key``; with ``after`` (wall clock), the first one whose probe
        started at or after that moment."""
        slot = self._slots[key]
        while True:
            await slot.changed.wait()
            result = slot.result
            assert result is not None
            if after is None or result.time >= after:
                return result

    async def wait_ready(self) -> None:
        """Until every probe has a result (tests, ``gateway probe``)."""
        for slot in self._slots.values():
            while slot.result is None:
                await slot.changed.wait()

    # -- reading
    def results(self) -> dict[str, CheckResult]:
        now = self.clock()
        out: dict[str, CheckResult] = {}
        for key, slot in self._slots.items():
            r = slot.result
            if r is None:
                r = CheckResult(key, "warn", None, None, now, 0.0, "not yet probed",
                                slot.probe.component_type,
                                informational=slot.probe.informational)
            else:
                limit = STALE_INTERVALS * (slot.probe.interval or self.interval) + \
                    slot.probe.timeout
                if self._tasks and now - r.time > limit:
                    r = CheckResult(key, "fail", r.observed_value, r.observed_unit, r.time,
                                    r.duration, f"no result for {now - r.time:.0f} s",
                                    r.component_type, r.seq, r.informational)
            out[key] = r
        for key, fn in self.instant.items():
            out[key] = fn()
        return out

    def overall(self, results: dict[str, CheckResult]) -> Status:
        return worst(r.status for r in results.values() if not r.informational)

    def document(self, *, version: str, release_id: str, service_id: str,
                 description: str = "", detailed: bool = True) -> tuple[dict[str, Any], int]:
        """The health+json body and its status code (200 for pass and warn, 503 for fail).
        Without ``detailed`` only the overall status is given."""
        results = self.results()
        status = self.overall(results)
        doc: dict[str, Any] = {"status": status, "version": version, "releaseId": release_id,
                               "serviceId": service_id}
        if description:
            doc["description"] = description
        if detailed:
            now = self.clock()
            doc["checks"] = {k: [r.entry(now)] for k, r in results.items()}
            failing = sorted(k for k, r in results.items() if r.status != "pass")
            if failing:
                doc["output"] = "not passing: " + ", ".join(failing)
        return doc, 503 if status == "fail" else 200


def instant_check(key: str, fn: Callable[[], Observation],
                  clock: Callable[[], float] = time.time,
                  component_type: str = "component") -> Callable[[], CheckResult]:
    """Wrap a cheap in-memory reading (no I/O) as an instant check."""
    def read() -> CheckResult:
        now = clock()
        try:
            obs = fn()
        except Exception as exc:  # noqa: BLE001 - a reading error is a failing check
            return CheckResult(key, "fail", None, None, now, 0.0,
                               f"could not read: {type(exc).__name__}", component_type)
        return CheckResult(key, obs.status or "pass", obs.value, obs.unit, now, 0.0,
                           obs.output, component_type)
    return read
