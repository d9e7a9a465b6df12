"""What only the embedded store does: the file holds hashed ids, and a database that cannot
be used is StoreUnavailable. (The shared behaviour is in test_store.py, run on both.)"""

import sqlite3
from pathlib import Path

import pytest

from gateway.errors import StoreUnavailable
from gateway.store.base import SessionRecord, id_hash
from gateway.store.sqlite import SqliteStore


def rec(sid: str = "raw-session-id") -> SessionRecord:
    return SessionRecord(id=sid, user_oid="oid-1", user_name="A", email="a@x", roles=("R",),
                         groups=(), account_id="acc", csrf_token="c", created_at=1.0,
                         last_seen=1.0, auth_time=1.0)


async def test_raw_id_not_stored(tmp_path: Path) -> None:
    """The database file holds only the session id's hash, never the raw id."""
    s = SqliteStore(tmp_path / "g.db")
    await s.open()
    await s.create_session(rec())
    raw = (tmp_path / "g.db").read_bytes() + (tmp_path / "g.db-wal").read_bytes()
    await s.close()
    assert b"raw-session-id" not in raw
    assert id_hash("raw-session-id").encode() in raw


async def test_broken_database_is_store_unavailable(tmp_path: Path) -> None:
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


async def test_token_cache_read_on_the_loop_sees_another_instances_write(tmp_path: Path
                                                                        ) -> None:
    """The token cache is read through the loop's own connection (no thread hop). It sees
    what another instance on the same file wrote a moment ago, and if that connection cannot
    read, the store's thread reads instead."""
    mine, other = SqliteStore(tmp_path / "g.db"), SqliteStore(tmp_path / "g.db")
    await mine.open()
    await other.open()
    try:
        assert await mine.get_token_cache("acc") is None
        await other.put_token_cache("acc", b"refreshed elsewhere", 2)
        assert await mine.get_token_cache("acc") == b"refreshed elsewhere"
        assert mine._watch is not None
        mine._watch.close()       # reads on it now raise sqlite3.ProgrammingError
        await other.put_token_cache("acc", b"again", 3)
        assert await mine.get_token_cache("acc") == b"again"
    finally:
        await mine.close()
        await other.close()
