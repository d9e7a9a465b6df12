"""Telling ICT that an upstream (or the canary) is failing, and that it has recovered, through
the notification channels of ``gateway.switch.notify`` (kept in the store and retried).

``Alerts`` is a ``HealthMonitor`` listener with hysteresis, per check:

    ok --fail--> failing --failed >= alert_after--> alerted --pass--> recovering
    recovering --passing >= recover_after--> ok (one recovery notice)
    recovering --fail--> alerted (no new alert: a flapping check sends one)

A check that fails and recovers before ``alert_after`` sends nothing. Informational checks
(the supplier's platform) alert too: ICT wants to know the platform went down. Notices are
sent from a task, so the listener never blocks the probe loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from gateway.health.monitor import CheckResult
from gateway.switch.audit import iso
from gateway.switch.notify import Message

log = logging.getLogger(__name__)

RED, GREEN = "C62828", "2E7D32"
# Checks about the gateway's own bookkeeping, not an upstream: they never page anyone.
QUIET = ("sessions:count", "failover:mode", "history:writes", "notify:deliveries")


@dataclass
class _Track:
    state: str = "ok"                    # ok | failing | alerted | recovering
    since: float = 0.0                   # when the current state began
    first_fail: float = 0.0
    output: str = ""


Send = Callable[[str, Message], Coroutine[Any, Any, None]]


class Alerts:
    def __init__(self, send: Send, *, alert_after: float, recover_after: float,
                 service: str = "Mail gateway") -> None:
        self.send = send
        self.alert_after = alert_after
        self.recover_after = recover_after
        self.service = service
        self._tracks: dict[str, _Track] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent: list[tuple[str, str]] = []       # (key, "alert" | "recovery")

    def observe(self, r: CheckResult) -> None:
        if self.alert_after <= 0 or r.key in QUIET:
            return
        t = self._tracks.setdefault(r.key, _Track(since=r.time))
        failing = r.status == "fail"
        if t.state == "ok" and failing:
            t.state, t.since, t.first_fail, t.output = "failing", r.time, r.time, r.output
        elif t.state == "failing":
            if not failing:
                t.state, t.since = "ok", r.time
            elif r.time - t.first_fail >= self.alert_after:
                t.state, t.since, t.output = "alerted", r.time, r.output
                self._notify(r.key, "alert", self._alert(r, t))
        elif t.state == "alerted" and not failing:
            t.state, t.since = "recovering", r.time
        elif t.state == "recovering" and failing:
            t.state, t.output = "alerted", r.output
        if t.state == "recovering" and r.time - t.since >= self.recover_after:
            t.state = "ok"
            self._notify(r.key, "recovery", self._recovery(r, t))

    def _alert(self, r: CheckResult, t: _Track) -> Message:
        title = f"{self.service}: {r.key} is failing"
        facts = (("Check", r.key), ("Failing since", iso(t.first_fail)),
                 ("Error", t.output or "-"))
        return Message(title, f"{title} since {iso(t.first_fail)}: {t.output or '-'}", facts,
                       RED)

    def _recovery(self, r: CheckResult, t: _Track) -> Message:
        title = f"{self.service}: {r.key} has recovered"
        facts = (("Check", r.key), ("Failing since", iso(t.first_fail)),
                 ("Passing since", iso(t.since)))
        return Message(title, f"{title} (failed from {iso(t.first_fail)}, passing since "
                              f"{iso(t.since)})", facts, GREEN)

    def _notify(self, key: str, what: str, message: Message) -> None:
        self.sent.append((key, what))
        log.log(logging.WARNING if what == "alert" else logging.INFO,
                "health alert: %s %s", key, "failing: ICT notified" if what == "alert"
                else "recovered: ICT notified")
        try:
            task = asyncio.get_running_loop().create_task(
                self.send(f"health {what}: {key}", message))
        except RuntimeError:
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10)
