"""The store protocol, pinned once and run against both stores (SQLite and PostgreSQL):
sessions by hashed id, single-use flows, token caches, the outbox bound to its member,
versioned key/value, the audit chain, API keys."""

from __future__ import annotations

import asyncio
import functools
import itertools

import pytest

from gateway.errors import Conflict
from gateway.store.base import (
    ApiKeyRecord,
    AuditRow,
    AuthFlowRecord,
    OutboxRecord,
    SessionRecord,
    Store,
)


def rec(sid: str = "raw-session-id", oid: str = "oid-1", t: float = 1000.0) -> SessionRecord:
    return SessionRecord(id=sid, user_oid=oid, user_name="A", email="a@x", roles=("R",),
                         groups=("g1", "g2"), account_id="acc", csrf_token="c", created_at=t,
                         last_seen=t, auth_time=t, is_admin=True, data={"flash": "hi"})


def chain(last: AuditRow | None, at: float = 1.0, body: str = "{}") -> AuditRow:
    seq = 1 if last is None else last.seq + 1
    prev = "0" * 64 if last is None else last.hash
    return AuditRow(seq, at, body, prev, f"h{seq}")


async def test_ping(store: Store) -> None:
    """An open store answers ping."""
    await store.ping()


async def test_session_round_trip(store: Store) -> None:
    """A session reads back whole under its raw id; an unknown id reads as None."""
    await store.create_session(rec())
    got = await store.get_session("raw-session-id")
    assert got == rec()
    assert await store.get_session("other") is None


async def test_session_touch_and_delete(store: Store) -> None:
    """Touching moves last_seen; a deleted session is gone."""
    await store.create_session(rec())
    await store.touch_session("raw-session-id", 2000.0)
    got = await store.get_session("raw-session-id")
    assert got is not None and got.last_seen == 2000.0 and got.created_at == 1000.0
    await store.delete_session("raw-session-id")
    assert await store.get_session("raw-session-id") is None


async def test_purge_and_delete_by_user(store: Store) -> None:
    """Idle or old sessions are purged; a user's sessions can all be removed."""
    await store.create_session(rec("a", t=100))
    await store.create_session(rec("b", t=5000))
    await store.create_session(rec("c", oid="oid-2", t=5000))
    assert await store.purge_sessions(idle_before=1000, created_before=0) == 1
    assert await store.delete_sessions_of("oid-1") == 1
    assert [s.user_oid for s in await store.list_sessions()] == ["oid-2"]


async def test_list_sessions_newest_first_without_raw_ids(store: Store) -> None:
    """Listed sessions come most recently seen first and carry no raw id."""
    await store.create_session(rec("a", t=100))
    await store.create_session(rec("b", t=300))
    listed = await store.list_sessions()
    assert [s.last_seen for s in listed] == [300, 100]
    assert {s.id for s in listed}.isdisjoint({"a", "b"})


async def test_flow_is_single_use(store: Store) -> None:
    """A sign-in flow can be taken once only."""
    await store.put_flow(AuthFlowRecord("f1", b"blob", "/next", 1.0))
    first = await store.take_flow("f1")
    assert first is not None and first.next_url == "/next" and first.flow_json == b"blob"
    assert await store.take_flow("f1") is None


async def test_flow_purge(store: Store) -> None:
    """Flows older than the cut-off are purged, newer ones kept."""
    await store.put_flow(AuthFlowRecord("old", b"x", "/", 1.0))
    await store.put_flow(AuthFlowRecord("new", b"y", "/", 100.0))
    assert await store.purge_flows(50.0) == 1
    assert await store.take_flow("new") is not None


async def test_token_cache_upsert(store: Store) -> None:
    """Token caches are replaced in place and deleted."""
    await store.put_token_cache("acc", b"one", 1)
    await store.put_token_cache("acc", b"two", 2)
    assert await store.get_token_cache("acc") == b"two"
    await store.delete_token_cache("acc")
    assert await store.get_token_cache("acc") is None


async def test_outbox_is_bound_to_its_member(store: Store) -> None:
    """Outbox records upsert, list newest first, and are invisible to another member."""
    await store.put_outbox(OutboxRecord("m1", "oid-1", b"a", "compose", 1.0, 1.0))
    await store.put_outbox(OutboxRecord("m2", "oid-1", b"b", "compose", 2.0, 2.0))
    await store.put_outbox(OutboxRecord("m1", "oid-1", b"c", "failed", 9.0, 3.0))
    got = await store.get_outbox("m1", "oid-1")
    assert got == OutboxRecord("m1", "oid-1", b"c", "failed", 1.0, 3.0)
    assert [r.id for r in await store.list_outbox("oid-1")] == ["m1", "m2"]
    # Another member can neither read, overwrite nor delete it.
    assert await store.get_outbox("m1", "oid-2") is None
    await store.put_outbox(OutboxRecord("m1", "oid-2", b"evil", "compose", 5.0, 5.0))
    await store.delete_outbox("m1", "oid-2")
    kept = await store.get_outbox("m1", "oid-1")
    assert kept is not None and kept.blob == b"c"
    await store.delete_outbox("m1", "oid-1")
    assert await store.get_outbox("m1", "oid-1") is None


async def test_outbox_claim_has_one_winner_release_and_lease(store: Store) -> None:
    """Of many concurrent claims one wins; a release or the lease's end frees the message;
    another member cannot claim it."""
    await store.put_outbox(OutboxRecord("c1", "oid-1", b"x", "compose", 1.0, 1.0))
    got = await asyncio.gather(*(store.claim_outbox("c1", "oid-1", 100.0, 60.0)
                                 for _ in range(8)))
    assert sum(g is not None for g in got) == 1
    assert await store.claim_outbox("c1", "oid-2", 100.0, 60.0) is None
    assert await store.claim_outbox("c1", "oid-1", 150.0, 60.0) is None
    # Saving the form again (the member typed more) does not free a claim held elsewhere.
    await store.put_outbox(OutboxRecord("c1", "oid-1", b"y", "compose", 1.0, 150.0))
    assert await store.claim_outbox("c1", "oid-1", 151.0, 60.0) is None
    assert await store.claim_outbox("c1", "oid-1", 161.0, 60.0) is not None  # lease over
    await store.release_outbox("c1", "oid-1")
    assert await store.claim_outbox("c1", "oid-1", 162.0, 60.0) is not None


async def test_kv_versions_and_conflicts(store: Store) -> None:
    """kv_put creates at version 1, bumps on a matching version, refuses a stale one."""
    assert await store.kv_get("k") is None
    assert await store.kv_put("k", "one", 0) == 1
    with pytest.raises(Conflict):
        await store.kv_put("k", "again", 0)
    assert await store.kv_put("k", "two", 1) == 2
    with pytest.raises(Conflict):
        await store.kv_put("k", "stale", 1)
    got = await store.kv_get("k")
    assert got is not None and (got.value, got.version) == ("two", 2)


async def test_kv_compare_and_set_has_one_winner(store: Store) -> None:
    """Of many writers racing from the same version, exactly one succeeds."""
    await store.kv_put("k", "v0", 0)

    async def attempt(i: int) -> bool:
        try:
            await store.kv_put("k", f"v{i}", 1)
            return True
        except Conflict:
            return False
    results = await asyncio.gather(*(attempt(i) for i in range(8)))
    assert results.count(True) == 1
    record = await store.kv_get("k")
    assert record is not None and record.version == 2


async def test_audit_append_chains_and_filters(store: Store) -> None:
    """Appends see the previous row; rows read back in order and filter by time."""
    for at in (10.0, 20.0, 30.0):
        await store.audit_append(functools.partial(chain, at=at))
    rows = await store.audit_rows()
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[1].prev_hash == rows[0].hash
    assert [r.at for r in await store.audit_rows(since=15.0, until=30.0)] == [20.0]


async def test_concurrent_audit_appends_keep_one_chain(store: Store) -> None:
    """Concurrent appends are serialised: no sequence number is used twice."""
    await asyncio.gather(*(store.audit_append(chain) for _ in range(10)))
    rows = await store.audit_rows()
    assert [r.seq for r in rows] == list(range(1, 11))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))


async def test_api_keys(store: Store) -> None:
    """API keys: unique names, found by hash, revoked once, touched."""
    k = ApiKeyRecord("runbook", "hash1", 1.0, "ict")
    await store.create_api_key(k)
    with pytest.raises(Conflict):
        await store.create_api_key(ApiKeyRecord("runbook", "hash2", 2.0, "ict"))
    assert await store.api_key_by_hash("hash1") == k
    assert await store.api_key_by_hash("nope") is None
    await store.touch_api_key("runbook", 5.0)
    assert await store.revoke_api_key("runbook", 6.0) is True
    assert await store.revoke_api_key("runbook", 7.0) is False
    [listed] = await store.list_api_keys()
    assert (listed.last_used, listed.revoked_at) == (5.0, 6.0)
