"""The evidence tables of the shared store, the PostgreSQL twin of
``gateway.store.sqlite_evidence`` (same behaviour, one test suite). ``MIGRATION`` is added to
``postgres_schema.MIGRATIONS``: additive, new tables only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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

MIGRATION = """
CREATE TABLE health_samples (
    key TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, status TEXT NOT NULL,
    value DOUBLE PRECISION, unit TEXT NOT NULL, output TEXT NOT NULL,
    span DOUBLE PRECISION NOT NULL, n INTEGER NOT NULL, fails INTEGER NOT NULL,
    p95 DOUBLE PRECISION, vmax DOUBLE PRECISION
);
CREATE INDEX health_samples_at ON health_samples(at);
CREATE TABLE health_transitions (
    key TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, status TEXT NOT NULL,
    previous TEXT NOT NULL, output TEXT NOT NULL
);
CREATE INDEX health_transitions_at ON health_transitions(at);
CREATE TABLE canary_rounds (
    at DOUBLE PRECISION NOT NULL, ok BOOLEAN NOT NULL, stage TEXT NOT NULL,
    latency DOUBLE PRECISION, sent_at DOUBLE PRECISION, arrived_at DOUBLE PRECISION,
    error TEXT NOT NULL
);
CREATE INDEX canary_rounds_at ON canary_rounds(at);
CREATE TABLE usage_daily (
    day TEXT NOT NULL, member TEXT NOT NULL, signins INTEGER NOT NULL,
    sends INTEGER NOT NULL, pages INTEGER NOT NULL, PRIMARY KEY (day, member)
);
CREATE TABLE notifications (
    id TEXT PRIMARY KEY, change TEXT NOT NULL, target TEXT NOT NULL, payload TEXT NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL, next_at DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
    last_error TEXT NOT NULL
);
CREATE INDEX notifications_due ON notifications(state, next_at);
CREATE TABLE audit_checkpoints (
    day TEXT PRIMARY KEY, seq BIGINT NOT NULL, head TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL, signature TEXT NOT NULL
);
"""

_SAMPLE = "key, at, status, value, unit, output, span, n, fails, p95, vmax"
_NOTE = ("id, change, target, payload, state, attempts, next_at, created_at, updated_at, "
         "last_error")
_ROLLUP_LOCK = 7_311_003       # one instance rolls up at a time


def _sample_row(s: HealthSample) -> tuple[Any, ...]:
    return (s.key, s.at, s.status, s.value, s.unit, s.output, s.span, s.n, s.fails, s.p95,
            s.vmax)


def _sample(r: Any) -> HealthSample:
    return HealthSample(r[0], r[1], r[2], r[3], r[4], r[5], r[6], int(r[7]), int(r[8]), r[9],
                        r[10])


def _note(r: Any) -> NotificationRecord:
    return NotificationRecord(r[0], r[1], r[2], r[3], r[4], int(r[5]), r[6], r[7], r[8], r[9])


class PostgresEvidence:
    async def _run(self, fn: Callable[[Any], Awaitable[T]]) -> T:  # PostgresStore's
        raise NotImplementedError

    async def _tx(self, fn: Callable[[Any], Awaitable[T]]) -> T:  # PostgresStore's
        raise NotImplementedError

    async def history_write(self, samples: list[HealthSample],
                            transitions: list[HealthTransition],
                            rounds: list[CanaryRound]) -> None:
        async def write(c: Any) -> None:
            if samples:
                await c.executemany(
                    f"INSERT INTO health_samples ({_SAMPLE}) VALUES "  # noqa: S608
                    "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)", [_sample_row(s) for s in samples])
            if transitions:
                await c.executemany("INSERT INTO health_transitions VALUES ($1,$2,$3,$4,$5)",
                                    [(t.key, t.at, t.status, t.previous, t.output)
                                     for t in transitions])
            if rounds:
                await c.executemany("INSERT INTO canary_rounds VALUES ($1,$2,$3,$4,$5,$6,$7)",
                                    [(r.at, r.ok, r.stage, r.latency, r.sent_at, r.arrived_at,
                                      r.error) for r in rounds])
        await self._tx(write)

    async def history_samples(self, since: float, until: float) -> list[HealthSample]:
        rows = await self._run(lambda c: c.fetch(
            f"SELECT {_SAMPLE} FROM health_samples WHERE at >= $1 AND at < $2 "  # noqa: S608
            "ORDER BY at", since, until))
        return [_sample(r) for r in rows]

    async def history_transitions(self, since: float | None,
                                  until: float) -> list[HealthTransition]:
        rows = await self._run(lambda c: c.fetch(
            "SELECT key, at, status, previous, output FROM health_transitions "
            "WHERE at >= $1 AND at < $2 ORDER BY at", -1e300 if since is None else since,
            until))
        return [HealthTransition(*r) for r in rows]

    async def history_state_at(self, at: float) -> dict[str, HealthTransition]:
        rows = await self._run(lambda c: c.fetch(
            "SELECT DISTINCT ON (key) key, at, status, previous, output FROM health_transitions"
            " WHERE at < $1 ORDER BY key, at DESC", at))
        return {r[0]: HealthTransition(*r) for r in rows}

    async def canary_rounds(self, since: float, until: float) -> list[CanaryRound]:
        rows = await self._run(lambda c: c.fetch(
            "SELECT at, ok, stage, latency, sent_at, arrived_at, error FROM canary_rounds "
            "WHERE at >= $1 AND at < $2 ORDER BY at", since, until))
        return [CanaryRound(*r) for r in rows]

    async def history_rollup(self, before: float) -> int:
        async def roll(c: Any) -> int:
            await c.execute("SELECT pg_advisory_xact_lock($1)", _ROLLUP_LOCK)
            rows = await c.fetch(f"SELECT {_SAMPLE} FROM health_samples "  # noqa: S608
                                 "WHERE span = 0 AND at < $1", before)
            if not rows:
                return 0
            await c.executemany(
                f"INSERT INTO health_samples ({_SAMPLE}) VALUES "  # noqa: S608
                "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                [_sample_row(s) for s in rollup(_sample(r) for r in rows)])
            await c.execute("DELETE FROM health_samples WHERE span = 0 AND at < $1", before)
            return len(rows)
        return await self._tx(roll)

    async def history_purge(self, before: float) -> int:
        async def purge(c: Any) -> int:
            n = 0
            for table in ("health_samples", "health_transitions", "canary_rounds"):
                status = await c.execute(f"DELETE FROM {table} WHERE at < $1",  # noqa: S608
                                         before)
                n += int(status.rsplit(" ", 1)[-1])
            status = await c.execute("DELETE FROM usage_daily WHERE day < $1",
                                     datetime.fromtimestamp(before, UTC).strftime("%Y-%m-%d"))
            return n + int(status.rsplit(" ", 1)[-1])
        return await self._tx(purge)

    async def usage_add(self, rows: list[UsageDay]) -> None:
        if not rows:
            return
        await self._run(lambda c: c.executemany(
            "INSERT INTO usage_daily VALUES ($1,$2,$3,$4,$5) ON CONFLICT (day, member) DO "
            "UPDATE SET signins = usage_daily.signins + excluded.signins, "
            "sends = usage_daily.sends + excluded.sends, "
            "pages = usage_daily.pages + excluded.pages",
            [(u.day, u.member, u.signins, u.sends, u.pages) for u in rows]))

    async def usage_days(self, since_day: str, until_day: str) -> list[UsageDay]:
        rows = await self._run(lambda c: c.fetch(
            "SELECT day, member, signins, sends, pages FROM usage_daily WHERE day >= $1 AND "
            "day <= $2 ORDER BY day", since_day, until_day))
        return [UsageDay(*r) for r in rows]

    async def notification_put(self, rec: NotificationRecord) -> None:
        await self._run(lambda c: c.execute(
            f"INSERT INTO notifications ({_NOTE}) VALUES "  # noqa: S608
            "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT (id) DO UPDATE SET "
            "state = excluded.state, attempts = excluded.attempts, next_at = excluded.next_at, "
            "updated_at = excluded.updated_at, last_error = excluded.last_error",
            rec.id, rec.change, rec.target, rec.payload, rec.state, rec.attempts, rec.next_at,
            rec.created_at, rec.updated_at, rec.last_error))

    async def notifications_due(self, now: float, lease_seconds: float,
                                limit: int = 20) -> list[NotificationRecord]:
        # SKIP LOCKED: instances polling together each take different deliveries.
        rows = await self._tx(lambda c: c.fetch(
            f"UPDATE notifications SET next_at = $2 WHERE id IN (SELECT id FROM notifications "  # noqa: S608
            "WHERE state = 'pending' AND next_at <= $1 ORDER BY next_at LIMIT $3 FOR UPDATE "
            f"SKIP LOCKED) RETURNING {_NOTE}", now, now + lease_seconds, limit))
        return sorted((_note(r) for r in rows), key=lambda n: (n.created_at, n.id))

    async def notifications_recent(self, limit: int = 50) -> list[NotificationRecord]:
        rows = await self._run(lambda c: c.fetch(
            f"SELECT {_NOTE} FROM notifications ORDER BY created_at DESC, id "  # noqa: S608
            "LIMIT $1", limit))
        return [_note(r) for r in rows]

    async def notifications_failed_since(self, since: float) -> int:
        return int(await self._run(lambda c: c.fetchval(
            "SELECT count(*) FROM notifications WHERE state = 'failed' AND updated_at >= $1",
            since)))

    async def checkpoint_put(self, cp: AuditCheckpoint) -> bool:
        status = await self._run(lambda c: c.execute(
            "INSERT INTO audit_checkpoints VALUES ($1,$2,$3,$4,$5) ON CONFLICT DO NOTHING",
            cp.day, cp.seq, cp.head, cp.at, cp.signature))
        return bool(int(status.rsplit(" ", 1)[-1]))

    async def checkpoints(self) -> list[AuditCheckpoint]:
        rows = await self._run(lambda c: c.fetch(
            "SELECT day, seq, head, at, signature FROM audit_checkpoints ORDER BY day"))
        return [AuditCheckpoint(r[0], int(r[1]), r[2], r[3], r[4]) for r in rows]
