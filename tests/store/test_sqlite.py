"""The embedded store: sessions by hashed id, single-use flows, token caches."""

import sqlite3

import pytest

from gateway.errors import StoreUnavailable
from gateway.store.base import AuthFlowRecord, SessionRecord, id_hash
from gateway.store.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path):
    s = SqliteStore(tmp_path / "g.db")
    await s.open()
    yield s
    await s.close()


def rec(sid: str = "raw-session-id", oid: str = "oid-1", t: float = 1000.0) -> SessionRecord:
    return SessionRecord(id=sid, user_oid=oid, user_name="A", email="a@x", roles=("R",),
                         groups=(), account_id="acc", csrf_token="c", created_at=t,
                         last_seen=t, auth_time=t)


async def test_session_round_trip_and_raw_id_not_stored(store, tmp_path):
    """A session reads back whole, and the database holds only the id's hash."""
    await store.create_session(rec())
    got = await store.get_session("raw-session-id")
    assert got is not None and got.roles == ("R",) and got.email == "a@x"
    raw = (tmp_path / "g.db").read_bytes() + (tmp_path / "g.db-wal").read_bytes()
    assert b"raw-session-id" not in raw
    assert id_hash("raw-session-id").encode() in raw


async def test_purge_and_delete_by_user(store):
    """Idle or old sessions are purged; a user's sessions can all be removed."""
    await store.create_session(rec("a", t=100))
    await store.create_session(rec("b", t=5000))
    await store.create_session(rec("c", oid="oid-2", t=5000))
    assert await store.purge_sessions(idle_before=1000, created_before=0) == 1
    assert await store.delete_sessions_of("oid-1") == 1
    assert [s.user_oid for s in await store.list_sessions()] == ["oid-2"]


async def test_flow_is_single_use(store):
    """A sign-in flow can be taken once only."""
    await store.put_flow(AuthFlowRecord("f1", b"blob", "/next", 1.0))
    first = await store.take_flow("f1")
    assert first is not None and first.next_url == "/next" and first.flow_json == b"blob"
    assert await store.take_flow("f1") is None


async def test_token_cache_upsert(store):
    """Token caches are replaced in place and deleted."""
    await store.put_token_cache("acc", b"one", 1)
    await store.put_token_cache("acc", b"two", 2)
    assert await store.get_token_cache("acc") == b"two"
    await store.delete_token_cache("acc")
    assert await store.get_token_cache("acc") is None


async def test_broken_database_is_store_unavailable(tmp_path):
    """A database that cannot be used raises StoreUnavailable, not sqlite3 errors."""
    s = SqliteStore(tmp_path / "g.db")
    await s.open()
    await s.close()
    with pytest.raises(StoreUnavailable):
        await s.ping()
    bad = tmp_path / "dir.db"
    bad.mkdir()
    with pytest.raises(StoreUnavailable):
        await SqliteStore(bad).open()
    assert sqlite3.sqlite_version
