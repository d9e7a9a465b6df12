"""The history writer, on SQLite and PostgreSQL: probe results become samples and
transitions (one per change, also across a restart); canary rounds and page counts are
kept; a full disk is reported in ``history:writes`` and nothing is lost or raised; the
queue is bounded; upkeep rolls old samples up, deletes what is past retention and takes the
day's signed audit checkpoint."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.evidence.checkpoint import take_checkpoint
from gateway.evidence.signing import Signer
from gateway.health.history import HistoryRecorder, member_key
from gateway.health.monitor import CheckResult, Status
from gateway.store.base import Store
from gateway.store.evidence import CanaryRound
from gateway.store.sqlite import SqliteStore
from gateway.switch.audit import AuditLog

T0 = 1_790_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def res(key: str, at: float, status: Status, value: float = 12.0, output: str = "") -> CheckResult:
    return CheckResult(key, status, value, "ms", at, 0.01, output)


async def test_results_become_samples_and_transitions(store: Store) -> None:
    clock = Clock()
    rec = HistoryRecorder(store, clock)
    statuses: list[Status] = ["pass", "pass", "fail", "fail", "pass"]
    for i, st in enumerate(statuses):
        rec.observe(res("smtp:responseTime", T0 + 30 * i, st,
                        output="SMTP server cannot be reached" if st == "fail" else ""))
    rec.canary_round(CanaryRound(T0, True, "", 1.5, T0 + 0.2, T0 + 1.7))
    rec.note_use("oid-alex", pages=2)
    assert await rec.flush() == 6
    samples = await store.history_samples(T0, T0 + 3600)
    assert [s.status for s in samples] == statuses
    transitions = await store.history_transitions(T0, T0 + 3600)
    assert [(t.status, t.previous) for t in transitions] == [("pass", ""), ("fail", "pass"),
                                                             ("pass", "fail")]
    assert transitions[1].output == "SMTP server cannot be reached"
    assert (await store.canary_rounds(T0, T0 + 10))[0].latency == 1.5
    [use] = await store.usage_days("2026-09-21", "2026-09-22")
    assert use.member == member_key("oid-alex") and use.pages == 2
    # A restart: the first result after it, unchanged, is no transition.
    again = HistoryRecorder(store, clock)
    again.observe(res("smtp:responseTime", T0 + 300, "pass"))
    await again.flush()
    assert len(await store.history_transitions(T0, T0 + 3600)) == 3
    assert rec.status().status is None and rec.status().value == 6


async def test_the_queue_is_bounded_and_drops_are_reported(store: Store) -> None:
    rec = HistoryRecorder(store, Clock(), queue_size=10)
    for i in range(15):
        rec.observe(res("entra:responseTime", T0 + i, "pass"))
    assert rec.dropped == 5
    obs = rec.status()
    assert obs.status == "warn" and "5 results dropped" in obs.output
    await rec.flush()
    assert len(await store.history_samples(T0, T0 + 100)) == 10


async def test_upkeep_rolls_up_purges_and_takes_the_checkpoint(store: Store,
                                                               tmp_path: Path) -> None:
    clock = Clock()
    signer = Signer.from_file(tmp_path / "k.pem")
    await AuditLog(store, clock).record("failover.changed", "cli:ict", new="active")
    rec = HistoryRecorder(store, clock, history_days=30, raw_days=2,
                          daily=lambda: _cp(store, signer, clock))
    for day in (0, 5, 40):
        for i in range(3):
            rec.observe(res("imap:responseTime", T0 - day * 86400 + i * 60, "pass", 10.0 + i))
    await rec.flush()
    await rec.maintain()
    rows = await store.history_samples(T0 - 50 * 86400, T0 + 86400)
    assert [(r.span, r.n) for r in rows] == [(3600.0, 3), (0.0, 1), (0.0, 1), (0.0, 1)]
    assert rows[0].value == 11.0 and rows[0].vmax == 12.0
    assert len(await store.checkpoints()) == 1


async def _cp(store: Store, signer: Signer, clock: Clock) -> None:
    await take_checkpoint(store, signer, clock)


async def test_a_full_disk_is_reported_not_fatal(tmp_path: Path) -> None:
    """A real SQLITE_FULL: the database is capped at its current size, as a full disk
    would. The recorder keeps the results, says why in history:writes, and writes them all
    once there is room again."""
    store = SqliteStore(tmp_path / "full.db")
    await store.open()
    try:
        clock = Clock()
        rec = HistoryRecorder(store, clock)
        pages = await store._run(lambda db: db.execute("PRAGMA page_count").fetchone()[0])
        await store._run(lambda db: db.execute(f"PRAGMA max_page_count = {pages}"))
        for i in range(400):
            rec.observe(res("graph:responseTime", T0 + i, "fail", output="x" * 400))
        assert await rec.flush() == 0                   # refused, nothing raised
        obs = rec.status()
        assert obs.status == "warn" and "the disk is full" in obs.output
        assert "400 results waiting" in obs.output
        await store._run(lambda db: db.execute("PRAGMA max_page_count = 1000000"))
        assert await rec.flush() == 400
        assert rec.status().status is None
        assert len(await store.history_samples(T0, T0 + 1000)) == 400
    finally:
        await store.close()


@pytest.mark.parametrize("n", [1])
async def test_observe_never_waits_for_the_store(n: int, tmp_path: Path) -> None:
    """With the store closed (down), observing still returns at once and keeps the result."""
    store = SqliteStore(tmp_path / "down.db")
    rec = HistoryRecorder(store, Clock())
    rec.observe(res("store:responseTime", T0, "fail"))
    assert await rec.flush() == 0 and "unavailable" in rec.status().output


class HeldStore(SqliteStore):
    """A real SQLite store whose history writes wait until the test lets them go, so the
    test can act while a flush is in the middle of writing."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.release = asyncio.Event()
        self.writing = asyncio.Event()

    async def history_write(self, *args: Any) -> None:
        self.writing.set()
        await self.release.wait()
        await super().history_write(*args)


async def test_two_flushes_at_once_write_each_result_once(tmp_path: Path) -> None:
    """The writer loop and stop() can flush together; the second waits for the first."""
    store = HeldStore(tmp_path / "held.db")
    await store.open()
    try:
        rec = HistoryRecorder(store, Clock())
        for i in range(3):
            rec.observe(res("imap:responseTime", T0 + i, "pass"))
        first = asyncio.create_task(rec.flush())
        await store.writing.wait()
        second = asyncio.create_task(rec.flush())
        store.release.set()
        assert await first == 3 and await second == 0
        assert len(await store.history_samples(T0, T0 + 100)) == 3
        assert rec.written == 3
    finally:
        await store.close()


async def test_results_dropped_while_a_flush_writes_do_not_take_newer_ones(
        tmp_path: Path) -> None:
    """A full queue drops its oldest results while the store is still writing them; what
    arrived after the flush began stays queued for the next one."""
    store = HeldStore(tmp_path / "held.db")
    await store.open()
    try:
        rec = HistoryRecorder(store, Clock(), queue_size=4)
        for i in range(4):
            rec.observe(res("imap:responseTime", T0 + i, "pass"))
        first = asyncio.create_task(rec.flush())
        await store.writing.wait()
        for i in range(4, 7):              # three more: the three oldest are dropped
            rec.observe(res("imap:responseTime", T0 + i, "fail"))
        store.release.set()
        assert await first == 4
        assert rec.dropped == 3
        assert await rec.flush() == 3      # the three newer ones, not lost
        samples = await store.history_samples(T0, T0 + 100)
        assert [s.at for s in samples] == [T0 + i for i in range(7)]
    finally:
        await store.close()
