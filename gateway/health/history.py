"""Health history that lasts: every probe result, check transition and canary round written to
the store, off the request path, plus the daily counts of the standby route's use.

``HistoryRecorder`` is a ``HealthMonitor`` listener: ``observe`` only puts the result on a
bounded in-memory queue (never I/O, never blocking), and one writer task drains it in
batches into the store. When the queue is full the oldest result is dropped and counted;
when the store refuses (down, or a full disk) the batch is kept for the next try and the
problem is reported by the ``history:writes`` check (warn), never raised: a member's page
and the probes go on as before. Transitions are derived here (the first result of a check
after a start is compared with the last transition the store holds).

Once an hour ``maintain`` rolls samples older than ``health.history_raw_days`` up to one per
check per hour, deletes what is older than ``health.history_days``, and takes the day's
signed audit checkpoint (``gateway.evidence.checkpoint``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from gateway.errors import GatewayError
from gateway.health.monitor import CheckResult, Observation
from gateway.store.base import Store
from gateway.store.evidence import CanaryRound, HealthSample, HealthTransition, UsageDay
from gateway.switch.audit import iso
from gateway.web.middleware.paths import rule_for

log = logging.getLogger(__name__)

BATCH = 500
FLUSH_SECONDS = 1.0
MAINTAIN_SECONDS = 3600.0


def day_of(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def member_key(user_oid: str) -> str:
    """Members are counted by hash: the report says how many, never who."""
    return hashlib.sha256(user_oid.encode()).hexdigest()[:32]


class HistoryRecorder:
    def __init__(self, store: Store, clock: Callable[[], float], *, queue_size: int = 5000,
                 history_days: int = 400, raw_days: int = 14,
                 daily: Callable[[], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.history_days = history_days
        self.raw_days = raw_days
        self.daily = daily
        self._samples: deque[HealthSample] = deque()
        self._rounds: deque[CanaryRound] = deque()
        self._queue_size = queue_size
        self._usage: dict[tuple[str, str], list[int]] = {}
        self._last: dict[str, str] | None = None      # status per key, once loaded
        self._pending_transitions: list[HealthTransition] = []
        self._wake = asyncio.Event()
        # One flush at a time: the writer loop and stop() may both flush, and two flushes
        # would each remove the same written results from the queue.
        self._flushing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.written = 0
        self.failing_since: float | None = None
        self.last_error = ""

    # -- feeding (synchronous, never blocks)
    def observe(self, result: CheckResult) -> None:
        """A ``HealthMonitor`` listener."""
        value = float(result.observed_value) if isinstance(result.observed_value,
                                                           (int, float)) else None
        output = result.output or (str(result.observed_value)
                                   if isinstance(result.observed_value, str) else "")
        self._put(self._samples, HealthSample(result.key, result.time, result.status, value,
                                              result.observed_unit or "", output[:500]))

    def canary_round(self, rnd: CanaryRound) -> None:
        self._put(self._rounds, rnd)

    def note_use(self, user_oid: str, *, signins: int = 0, sends: int = 0,
                 pages: int = 0) -> None:
        counts = self._usage.setdefault((day_of(self.clock()), member_key(user_oid)),
                                        [0, 0, 0])
        counts[0] += signins
        counts[1] += sends
        counts[2] += pages

    def _put(self, queue: deque[HealthSample] | deque[CanaryRound], item: object) -> None:
        if len(self._samples) + len(self._rounds) >= self._queue_size:
            (self._samples if self._samples else self._rounds).popleft()
            self.dropped += 1
        queue.append(item)  # type: ignore[arg-type]
        if len(self._samples) >= BATCH:
            self._wake.set()

    # -- writing
    async def _load_state(self) -> dict[str, str]:
        if self._last is None:
            state = await self.store.history_state_at(self.clock() + 1)
            self._last = {k: t.status for k, t in state.items()}
        return self._last

    async def flush(self) -> int:
        """Write what is queued; returns rows written. Store errors are kept, not raised."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> int:
        samples = list(self._samples)[:BATCH]
        rounds = list(self._rounds)[:BATCH]
        usage = dict(self._usage)
        try:
            last = await self._load_state()
            transitions = list(self._pending_transitions)
            seen = dict(last)
            for s in samples:
                before = seen.get(s.key)
                if before != s.status:
                    transitions.append(HealthTransition(s.key, s.at, s.status, before or "",
                                                        s.output))
                    seen[s.key] = s.status
            if samples or transitions or rounds:
                await self.store.history_write(samples, transitions, rounds)
            if usage:
                await self.store.usage_add([UsageDay(d, m, *c) for (d, m), c in usage.items()])
        except GatewayError as exc:
            if self.failing_since is None:
                self.failing_since = self.clock()
                log.error("health history could not be written (%s); results are kept in "
                          "memory (up to %d) and retried", type(exc.__cause__ or exc).__name__,
                          self._queue_size)
            self.last_error = _why(exc)
            return 0
        self._pending_transitions = []
        last.update(seen)
        _drop_written(self._samples, samples)
        _drop_written(self._rounds, rounds)
        for k, c in usage.items():
            now_c = self._usage.get(k)
            if now_c is not None:
                self._usage[k] = [a - b for a, b in zip(now_c, c, strict=True)]
                if not any(self._usage[k]):
                    del self._usage[k]
        if self.failing_since is not None:
            log.info("health history is being written again")
            self.failing_since = None
            self.last_error = ""
        n = len(samples) + len(rounds)
        self.written += n
        return n

    async def maintain(self) -> None:
        now = self.clock()
        try:
            rolled = await self.store.history_rollup(now - self.raw_days * 86400)
            purged = await self.store.history_purge(now - self.history_days * 86400)
        except GatewayError:
            log.warning("health history upkeep failed: store unavailable")
            return
        if rolled or purged:
            log.info("health history: %d samples rolled up, %d old rows deleted", rolled,
                     purged)
        if self.daily is not None:
            try:
                await self.daily()
            except GatewayError:
                log.warning("daily audit checkpoint failed: store unavailable")

    async def _loop(self) -> None:
        last_maintain = float("-inf")
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_SECONDS)
            self._wake.clear()
            await self.flush()
            if self.clock() - last_maintain >= MAINTAIN_SECONDS:
                last_maintain = self.clock()
                await self.maintain()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="health-history")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 5)

    # -- reporting (an instant check: no I/O)
    def status(self) -> Observation:
        if self.failing_since is not None:
            waiting = len(self._samples) + len(self._rounds)
            return Observation(waiting, None, "warn",
                               f"history not written since {iso(self.failing_since)}: "
                               f"{self.last_error}; {waiting} results waiting, "
                               f"{self.dropped} dropped")
        if self.dropped:
            return Observation(self.written, None, "warn",
                               f"{self.dropped} results dropped (queue full)")
        return Observation(self.written)


def _drop_written(queue: deque[Any], written: list[Any]) -> None:
    """Remove from the front of ``queue`` what was just written. Not by count: while the
    store was writing, a full queue may have dropped some of them already (``_put`` drops
    the oldest), and new results only ever join at the back."""
    ids = {id(x) for x in written}
    while queue and id(queue[0]) in ids:
        queue.popleft()


def _why(exc: GatewayError) -> str:
    cause = str(exc.__cause__ or "")
    if "full" in cause.lower():
        return "the disk is full"
    return "the store is unavailable"


class UsageMiddleware:
    """Counts the pages members read through the standby route (a GET under ``/mail`` or
    ``/calendar`` answered 200), per member and day, for the evidence report. In memory
    only: the recorder's writer stores the counts."""

    def __init__(self, app: Any, recorder: Callable[[], HistoryRecorder | None]) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET" or \
                not rule_for(scope.get("path", "")).counts_usage:
            await self.app(scope, receive, send)
            return

        async def counting(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                session = scope.get("state", {}).get("session")
                rec = self.recorder()
                if session is not None and rec is not None:
                    rec.note_use(session.user_oid, pages=1)
            await send(message)

        await self.app(scope, receive, counting)
