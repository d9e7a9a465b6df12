"""The switch over a real SQLite store: persistence with versions, the in-memory copy,
concurrent flips, expiry and drill revert by the injected clock, a store outage, and the
access policy reading the state on every request."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import Conflict, StoreUnavailable
from gateway.store.base import SessionRecord
from gateway.store.sqlite import SqliteStore
from gateway.switch.audit import AuditLog
from gateway.switch.machine import AuditTrail, FailoverPolicy, Flip, Mode, Switch, SwitchState
from tests.switch.conftest import FlakyStore, ManualClock

PILOT, DRILL = "pilot-group", "drill-group"


class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[Mode, Mode, str]] = []

    async def switched(self, old: SwitchState, new: SwitchState) -> None:
        self.changes.append((old.mode, new.mode, new.by))


def session(groups: tuple[str, ...] = (), admin: bool = False, sid: str = "s1") -> SessionRecord:
    return SessionRecord(id=sid, user_oid="o", user_name="n", email="n@council.example",
                         roles=(), groups=groups, account_id="a", csrf_token="c",
                         created_at=0, last_seen=0, auth_time=0, is_admin=admin)


async def test_flip_is_stored_with_a_new_version_and_survives_a_restart(store: SqliteStore,
                                                                        clock: ManualClock) -> None:
    """A flip is persisted; a new Switch over the same store reads it back."""
    sw = Switch(store, clock)
    assert (await sw.current()).mode is Mode.STANDBY
    new = await sw.flip(Flip("active", "MDM down", "Priya"))
    assert new.version == 1
    again = await Switch(store, clock).current()
    assert (again.mode, again.reason, again.version) == (Mode.ACTIVE, "MDM down", 1)


async def test_other_instance_sees_a_flip_within_the_refresh_interval(store: SqliteStore,
                                                                      clock: ManualClock) -> None:
    """Another instance keeps its cached mode until refresh_seconds pass, then re-reads."""
    a, b = Switch(store, clock), Switch(store, clock, refresh_seconds=1.0)
    assert (await b.current()).mode is Mode.STANDBY
    await a.flip(Flip("active", "outage", "Priya"))
    assert (await b.current()).mode is Mode.STANDBY   # cached: no store read
    clock.advance(1.0)
    assert (await b.current()).mode is Mode.ACTIVE


async def test_two_concurrent_flips_one_wins_the_other_sees_it(store: SqliteStore,
                                                               clock: ManualClock) -> None:
    """Two admins flipping from the same version: one succeeds, the other gets Conflict
    naming the first change, and nothing is lost."""
    a, b = Switch(store, clock), Switch(store, clock)
    results = await asyncio.gather(
        a.flip(Flip("active", "from Priya", "Priya", expected_version=0)),
        b.flip(Flip("drill", "from Sam", "Sam", until=clock() + 60, group=DRILL,
                    expected_version=0)),
        return_exceptions=True)
    wins = [r for r in results if isinstance(r, SwitchState)]
    losses = [r for r in results if isinstance(r, Conflict)]
    assert len(wins) == 1 and len(losses) == 1
    assert wins[0].by in losses[0].message
    assert (await Switch(store, clock).current()).version == 1


async def test_store_refuses_a_write_based_on_a_stale_version(store: SqliteStore) -> None:
    """The store's compare-and-set refuses a stale version (the last line against lost
    updates between instances)."""
    assert await store.kv_put("k", "one", 0) == 1
    assert await store.kv_put("k", "two", 1) == 2
    with pytest.raises(Conflict):
        await store.kv_put("k", "lost", 1)
    with pytest.raises(Conflict):
        await store.kv_put("k", "again", 0)
    rec = await store.kv_get("k")
    assert rec is not None and (rec.value, rec.version) == ("two", 2)


async def test_active_with_end_time_expires_and_the_revert_is_recorded(store: SqliteStore,
                                                                       clock: ManualClock) -> None:
    """Active until T returns to standby at T; the revert is stored, audited and announced."""
    audit, seen = AuditLog(store, clock), Recorder()
    sw = Switch(store, clock, listeners=[AuditTrail(audit), seen])
    await sw.flip(Flip("active", "outage", "Priya", until=clock() + 3600))
    clock.advance(3599)
    assert (await sw.current()).mode is Mode.ACTIVE
    clock.advance(2)
    now = await sw.current()
    assert (now.mode, now.by, now.version) == (Mode.STANDBY, "system", 2)
    assert seen.changes[-1] == (Mode.ACTIVE, Mode.STANDBY, "system")
    last = (await audit.entries())[-1]
    assert last.kind == "failover.changed" and last.actor == "system"
    assert (await Switch(store, clock).current()).mode is Mode.STANDBY


async def test_drill_reverts_by_itself_and_drill_members_are_then_refused(
    store: SqliteStore, clock: ManualClock,
) -> None:
    """During a drill the drill group is let in; after its end time they see standby."""
    sw = Switch(store, clock)
    policy = FailoverPolicy(sw, [PILOT])
    await sw.flip(Flip("drill", "rehearsal", "Priya", until=clock() + 600, group=DRILL))
    assert (await policy.admit(session((DRILL,)), "/")).admitted
    clock.advance(601)
    refused = await policy.admit(session((DRILL,)), "/")
    assert not refused.admitted and refused.template == "standby.html"
    assert "usual" in refused.message


async def test_flip_after_an_expired_drill_records_the_revert_first(store: SqliteStore,
                                                                    clock: ManualClock) -> None:
    """If nobody looked since a drill ended, a new flip first records the revert."""
    audit = AuditLog(store, clock)
    sw = Switch(store, clock, listeners=[AuditTrail(audit)])
    await sw.flip(Flip("drill", "rehearsal", "Priya", until=clock() + 60, group=DRILL))
    clock.advance(120)
    await sw.flip(Flip("active", "real outage", "Priya"))
    kinds = [(e.data["old"], e.data["new"], e.actor) for e in await audit.entries()]
    assert kinds == [("standby", "drill", "Priya"), ("drill", "standby", "system"),
                     ("standby", "active", "Priya")]


async def test_store_down_keeps_last_known_mode_and_refuses_flips(flaky: FlakyStore,
                                                                  clock: ManualClock) -> None:
    """With the store down members keep the last known mode; a flip is StoreUnavailable."""
    sw = Switch(flaky, clock)
    policy = FailoverPolicy(sw, [])
    await sw.flip(Flip("active", "outage", "Priya"))
    flaky.down = True
    clock.advance(5)
    assert (await sw.current()).mode is Mode.ACTIVE and not sw.store_ok
    assert (await policy.admit(session(), "/")).admitted
    with pytest.raises(StoreUnavailable):
        await sw.flip(Flip("standby", "fixed", "Priya"))
    flaky.down = False
    clock.advance(5)
    assert (await sw.current()).mode is Mode.ACTIVE and sw.store_ok


async def test_expiry_is_honoured_even_while_the_store_is_down(flaky: FlakyStore,
                                                               clock: ManualClock) -> None:
    """An active period past its end time is not served just because the store is down."""
    sw = Switch(flaky, clock)
    await sw.flip(Flip("active", "outage", "Priya", until=clock() + 60))
    flaky.down = True
    clock.advance(61)
    assert (await sw.current()).mode is Mode.STANDBY


async def test_failing_listener_does_not_undo_or_block_the_flip(store: SqliteStore,
                                                                clock: ManualClock) -> None:
    """A listener that raises is logged; the change stands and later listeners still run."""
    class Broken:
        async def switched(self, old: SwitchState, new: SwitchState) -> None:
            raise RuntimeError("boom")
    seen = Recorder()
    sw = Switch(store, clock, listeners=[Broken(), seen])
    assert (await sw.flip(Flip("active", "outage", "Priya"))).mode is Mode.ACTIVE
    assert seen.changes == [(Mode.STANDBY, Mode.ACTIVE, "Priya")]


async def test_refusal_is_reported_once_per_session_and_switch_version(store: SqliteStore,
                                                                       clock: ManualClock) -> None:
    """The policy reports a refused member once per session and version, not per page."""
    told: list[str] = []
    sw = Switch(store, clock)
    policy = FailoverPolicy(sw, [], on_refusal=lambda s, st: told.append(s.id))
    for _ in range(3):
        assert not (await policy.admit(session(sid="x"), "/")).admitted
    await sw.flip(Flip("drill", "r", "p", until=clock() + 60, group=DRILL))
    await policy.admit(session(sid="x"), "/")
    assert told == ["x", "x"]


async def test_initial_mode_setting_applies_until_the_first_flip(store: SqliteStore,
                                                                 clock: ManualClock) -> None:
    """Before any flip the configured initial mode is in force."""
    assert (await Switch(store, clock, initial_mode=Mode.ACTIVE).current()).mode is Mode.ACTIVE
