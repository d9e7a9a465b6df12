"""The evidence tables of the embedded store (``gateway.store.evidence``): health samples and
transitions, canary rounds, use of the standby route, notification deliveries and signed
audit checkpoints. Mixed into ``SqliteStore``; its schema is additive (``CREATE ... IF NOT
EXISTS``), so an existing database gains the tables at the next start."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from gateway.store.evidence import (
    AuditCheckpoint,
    CanaryRound,
    HealthSample,
    HealthTransition,
    NotificationRecord,
    UsageDay,
    rollup,
)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS health_samples (
    key TEXT NOT NULL, at REAL NOT NULL, status TEXT NOT NULL, value REAL, unit TEXT NOT NULL,
    output TEXT NOT NULL, span REAL NOT NULL, n INTEGER NOT NULL, fails INTEGER NOT NULL,
    p95 REAL, vmax REAL
);
CREATE INDEX IF NOT EXISTS health_samples_at ON health_samples(at);
CREATE TABLE IF NOT EXISTS health_transitions (
    key TEXT NOT NULL, at REAL NOT NULL, status TEXT NOT NULL, previous TEXT NOT NULL,
    output TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS health_transitions_at ON health_transitions(at);
CREATE TABLE IF NOT EXISTS canary_rounds (
    at REAL NOT NULL, ok INTEGER NOT NULL, stage TEXT NOT NULL, latency REAL, sent_at REAL,
    arrived_at REAL, error TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS canary_rounds_at ON canary_rounds(at);
CREATE TABLE IF NOT EXISTS usage_daily (
    day TEXT NOT NULL, member TEXT NOT NULL, signins INTEGER NOT NULL, sends INTEGER NOT NULL,
    pages INTEGER NOT NULL, PRIMARY KEY (day, member)
);
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT PRIMARY KEY, change TEXT NOT NULL, target TEXT NOT NULL, payload TEXT NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL, next_at REAL NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, last_error TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications(state, next_at);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    day TEXT PRIMARY KEY, seq INTEGER NOT NULL, head TEXT NOT NULL, at REAL NOT NULL,
    signature TEXT NOT NULL
);
"""

_SAMPLE = "key, at, status, value, unit, output, span, n, fails, p95, vmax"
_NOTE = ("id, change, target, payload, state, attempts, next_at, created_at, updated_at, "
         "last_error")


def _sample_row(s: HealthSample) -> tuple[Any, ...]:
    return (s.key, s.at, s.status, s.value, s.unit, s.output, s.span, s.n, s.fails, s.p95,
            s.vmax)


class SqliteEvidence:
    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:  # SqliteStore's
        raise NotImplementedError

    async def history_write(self, samples: list[HealthSample],
                            transitions: list[HealthTransition],
                            rounds: list[CanaryRound]) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN")      # all or nothing (the connection is in autocommit mode)
            db.executemany(f"INSERT INTO health_samples ({_SAMPLE}) VALUES "  # noqa: S608
                           "(?,?,?,?,?,?,?,?,?,?,?)", [_sample_row(s) for s in samples])
            db.executemany("INSERT INTO health_transitions VALUES (?,?,?,?,?)",
                           [(t.key, t.at, t.status, t.previous, t.output) for t in transitions])
            db.executemany("INSERT INTO canary_rounds VALUES (?,?,?,?,?,?,?)",
                           [(r.at, int(r.ok), r.stage, r.latency, r.sent_at, r.arrived_at,
                             r.error) for r in rounds])
        await self._run(write)

    async def history_samples(self, since: float, until: float) -> list[HealthSample]:
        rows = await self._run(lambda db: db.execute(
            f"SELECT {_SAMPLE} FROM health_samples WHERE at >= ? AND at < ? "  # noqa: S608
            "ORDER BY at", (since, until)).fetchall())
        return [HealthSample(*r) for r in rows]

    async def history_transitions(self, since: float | None,
                                  until: float) -> list[HealthTransition]:
        rows = await self._run(lambda db: db.execute(
            "SELECT key, at, status, previous, output FROM health_transitions "
            "WHERE at >= ? AND at < ? ORDER BY at", (-1e300 if since is None else since,
                                                     until)).fetchall())
        return [HealthTransition(*r) for r in rows]

    async def history_state_at(self, at: float) -> dict[str, HealthTransition]:
        rows = await self._run(lambda db: db.execute(
            "SELECT t.key, t.at, t.status, t.previous, t.output FROM health_transitions t "
            "JOIN (SELECT key, max(at) AS at FROM health_transitions WHERE at < ? GROUP BY key)"
            " m ON m.key = t.key AND m.at = t.at", (at,)).fetchall())
        return {r[0]: HealthTransition(*r) for r in rows}

    async def canary_rounds(self, since: float, until: float) -> list[CanaryRound]:
        rows = await self._run(lambda db: db.execute(
            "SELECT at, ok, stage, latency, sent_at, arrived_at, error FROM canary_rounds "
            "WHERE at >= ? AND at < ? ORDER BY at", (since, until)).fetchall())
        return [CanaryRound(r[0], bool(r[1]), *r[2:]) for r in rows]

    async def history_rollup(self, before: float) -> int:
        def roll(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(f"SELECT {_SAMPLE} FROM health_samples "  # noqa: S608
                              "WHERE span = 0 AND at < ?", (before,)).fetchall()
            if not rows:
                return 0
            db.executemany(f"INSERT INTO health_samples ({_SAMPLE}) VALUES "  # noqa: S608
                           "(?,?,?,?,?,?,?,?,?,?,?)",
                           [_sample_row(s) for s in rollup(HealthSample(*r) for r in rows)])
            db.execute("DELETE FROM health_samples WHERE span = 0 AND at < ?", (before,))
            return len(rows)
        return await self._run(roll)

    async def history_purge(self, before: float) -> int:
        def purge(db: sqlite3.Connection) -> int:
            db.execute("BEGIN")
            n = 0
            for table in ("health_samples", "health_transitions", "canary_rounds"):
                n += db.execute(f"DELETE FROM {table} WHERE at < ?",  # noqa: S608
                                (before,)).rowcount
            day = _day(before)
            n += db.execute("DELETE FROM usage_daily WHERE day < ?", (day,)).rowcount
            return n
        return await self._run(purge)

    async def usage_add(self, rows: list[UsageDay]) -> None:
        def add(db: sqlite3.Connection) -> None:
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO usage_daily VALUES (?,?,?,?,?) ON CONFLICT(day, member) DO "
                "UPDATE SET signins = signins + excluded.signins, "
                "sends = sends + excluded.sends, pages = pages + excluded.pages",
                [(u.day, u.member, u.signins, u.sends, u.pages) for u in rows])
        await self._run(add)

    async def usage_days(self, since_day: str, until_day: str) -> list[UsageDay]:
        rows = await self._run(lambda db: db.execute(
            "SELECT day, member, signins, sends, pages FROM usage_daily WHERE day >= ? AND "
            "day <= ? ORDER BY day", (since_day, until_day)).fetchall())
        return [UsageDay(*r) for r in rows]

    async def notification_put(self, rec: NotificationRecord) -> None:
        await self._run(lambda db: db.execute(
            f"INSERT OR REPLACE INTO notifications ({_NOTE}) VALUES "  # noqa: S608
            "(?,?,?,?,?,?,?,?,?,?)",
            (rec.id, rec.change, rec.target, rec.payload, rec.state, rec.attempts, rec.next_at,
             rec.created_at, rec.updated_at, rec.last_error)))

    async def notifications_due(self, now: float, lease_seconds: float,
                                limit: int = 20) -> list[NotificationRecord]:
        def claim(db: sqlite3.Connection) -> list[Any]:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(f"SELECT {_NOTE} FROM notifications WHERE state = 'pending' "  # noqa: S608
                              "AND next_at <= ? ORDER BY next_at LIMIT ?",
                              (now, limit)).fetchall()
            db.executemany("UPDATE notifications SET next_at = ? WHERE id = ?",
                           [(now + lease_seconds, r[0]) for r in rows])
            return rows
        return [NotificationRecord(*r) for r in await self._run(claim)]

    async def notifications_recent(self, limit: int = 50) -> list[NotificationRecord]:
        rows = await self._run(lambda db: db.execute(
            f"SELECT {_NOTE} FROM notifications ORDER BY created_at DESC, id "  # noqa: S608
            "LIMIT ?", (limit,)).fetchall())
        return [NotificationRecord(*r) for r in rows]

    async def notifications_failed_since(self, since: float) -> int:
        return int(await self._run(lambda db: db.execute(
            "SELECT count(*) FROM notifications WHERE state = 'failed' AND updated_at >= ?",
            (since,)).fetchone()[0]))

    async def checkpoint_put(self, cp: AuditCheckpoint) -> bool:
        return bool(await self._run(lambda db: db.execute(
            "INSERT OR IGNORE INTO audit_checkpoints VALUES (?,?,?,?,?)",
            (cp.day, cp.seq, cp.head, cp.at, cp.signature)).rowcount))

    async def checkpoints(self) -> list[AuditCheckpoint]:
        rows = await self._run(lambda db: db.execute(
            "SELECT day, seq, head, at, signature FROM audit_checkpoints ORDER BY day"
        ).fetchall())
        return [AuditCheckpoint(*r) for r in rows]


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")

