"""The evidence tables behave the same on SQLite and PostgreSQL: history with transitions and
hourly roll-up, retention, canary rounds, usage counts, notification claims, checkpoints."""

from __future__ import annotations

from gateway.store.base import Store
from gateway.store.evidence import (
    AuditCheckpoint,
    CanaryRound,
    HealthSample,
    HealthTransition,
    NotificationRecord,
    UsageDay,
    rollup,
)

T0 = 1_790_000_000.0 - (1_790_000_000.0 % 3600)   # on the hour


def test_rollup_counts_failures_and_takes_percentiles() -> None:
    raw = [HealthSample("imap:responseTime", T0 + i * 30, "fail" if i in (3, 7) else "pass",
                        float(i + 1), "ms", "down" if i in (3, 7) else "") for i in range(100)]
    raw.append(HealthSample("imap:responseTime", T0 + 3600, "pass", 5.0, "ms"))
    hours = rollup(raw)
    assert [h.at for h in hours] == [T0, T0 + 3600]
    first = hours[0]
    assert (first.n, first.fails, first.status, first.span) == (100, 2, "fail", 3600)
    assert (first.value, first.p95, first.vmax) == (50.0, 95.0, 100.0)
    assert first.output == "down"
    assert hours[1].n == 1 and hours[1].status == "pass"


async def test_samples_transitions_and_rounds_round_trip(store: Store) -> None:
    await store.history_write(
        [HealthSample("smtp:responseTime", T0 + 1, "pass", 12.5, "ms"),
         HealthSample("smtp:responseTime", T0 + 31, "fail", 10000.0, "ms", "no answer")],
        [HealthTransition("smtp:responseTime", T0 + 31, "fail", "pass", "no answer")],
        [CanaryRound(T0 + 2, True, "", 1.25, T0 + 2.5, T0 + 3.75),
         CanaryRound(T0 + 60, False, "smtp accept", None, None, None, "refused")])
    samples = await store.history_samples(T0, T0 + 3600)
    assert [(s.status, s.value, s.output) for s in samples] == [
        ("pass", 12.5, ""), ("fail", 10000.0, "no answer")]
    assert await store.history_samples(T0 + 40, T0 + 3600) == []
    assert [t.status for t in await store.history_transitions(T0, T0 + 3600)] == ["fail"]
    state = await store.history_state_at(T0 + 3600)
    assert state["smtp:responseTime"].status == "fail"
    assert await store.history_state_at(T0 + 31) == {}
    rounds = await store.canary_rounds(T0, T0 + 3600)
    assert [(r.ok, r.stage, r.latency) for r in rounds] == [(True, "", 1.25),
                                                            (False, "smtp accept", None)]


async def test_rollup_replaces_old_raw_samples_and_purge_keeps_the_rest(store: Store) -> None:
    raw = [HealthSample("entra:responseTime", T0 + i * 60, "fail" if i == 5 else "pass",
                        float(10 + i), "ms") for i in range(120)]          # two hours
    await store.history_write(raw, [], [])
    assert await store.history_rollup(T0 + 3600) == 60
    rows = await store.history_samples(T0, T0 + 7200)
    hourly = [r for r in rows if r.span == 3600]
    assert len(hourly) == 1 and hourly[0].n == 60 and hourly[0].fails == 1
    assert len([r for r in rows if r.span == 0]) == 60          # the recent hour stays raw
    assert await store.history_rollup(T0 + 3600) == 0            # idempotent
    removed = await store.history_purge(T0 + 3600)
    assert removed == 1
    assert len(await store.history_samples(T0, T0 + 7200)) == 60


async def test_usage_counts_add_up_per_day_and_member(store: Store) -> None:
    await store.usage_add([UsageDay("2026-03-28", "m1", signins=1, pages=3)])
    await store.usage_add([UsageDay("2026-03-28", "m1", sends=2, pages=1),
                           UsageDay("2026-03-29", "m2", pages=1)])
    days = await store.usage_days("2026-03-28", "2026-03-29")
    assert [(u.day, u.member, u.signins, u.sends, u.pages) for u in days] == [
        ("2026-03-28", "m1", 1, 2, 4), ("2026-03-29", "m2", 0, 0, 1)]


async def test_due_notifications_are_claimed_once(store: Store) -> None:
    for i in range(3):
        await store.notification_put(NotificationRecord(
            f"n{i}", "failover v2", "email", "{}", "pending", 0, T0 + i, T0, T0))
    first = await store.notifications_due(T0 + 1, lease_seconds=60)
    assert [n.id for n in first] == ["n0", "n1"]
    assert await store.notifications_due(T0 + 1, lease_seconds=60) == []   # leased
    again = await store.notifications_due(T0 + 61, lease_seconds=60)
    assert {n.id for n in again} == {"n0", "n1", "n2"}
    n0 = again[0]
    await store.notification_put(NotificationRecord(
        n0.id, n0.change, n0.target, n0.payload, "failed", 5, n0.next_at, n0.created_at,
        T0 + 100, "HTTP 500"))
    assert await store.notifications_failed_since(T0 + 50) == 1
    recent = await store.notifications_recent()
    assert {n.state for n in recent} == {"pending", "failed"}


async def test_one_checkpoint_per_day(store: Store) -> None:
    cp = AuditCheckpoint("2026-03-29", 4, "ab" * 32, T0, "c2ln")
    assert await store.checkpoint_put(cp)
    assert not await store.checkpoint_put(AuditCheckpoint("2026-03-29", 5, "cd" * 32, T0, "x"))
    assert await store.checkpoints() == [cp]
