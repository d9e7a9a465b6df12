"""The session layer's in-memory records (issue 16), against both stores: a page after the
first costs no store read, and a session ended through another store object on the same
database (another instance or worker) is refused by the first at its next request, not
served from memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.auth.sessions import SessionManager
from gateway.config import load_settings
from gateway.store.base import SessionRecord, Store
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.pgserver import pg, pg_dsn  # noqa: F401  (fixtures)


def counting(store: Store) -> list[str]:
    """Note each get_session the store answers (wrapping the real method)."""
    calls: list[str] = []
    real = store.get_session

    async def get_session(session_id: str) -> SessionRecord | None:
        calls.append(session_id)
        return await real(session_id)
    store.get_session = get_session  # type: ignore[method-assign]
    return calls


@pytest.fixture(params=["sqlite", "postgres"])
async def two(request: pytest.FixtureRequest, tmp_path: Any
              ) -> AsyncIterator[tuple[Store, Store]]:
    """Two store objects on one database, as two instances (or workers) hold."""
    stores: list[Store] = []
    for _ in range(2):
        if request.param == "sqlite":
            stores.append(SqliteStore(tmp_path / "g.db"))
        else:
            stores.append(PostgresStore(request.getfixturevalue("pg_dsn"), timeout=5.0))
    for s in stores:
        await s.open()
    for s in stores:   # PostgreSQL: the LISTEN connection is up
        for _ in range(200):
            if s.sessions_epoch() is not None:
                break
            await asyncio.sleep(0.01)
    yield stores[0], stores[1]
    for s in stores:
        await s.close()


def manager(store: Store) -> SessionManager:
    return SessionManager(store, load_settings(environ={}), clock=lambda: 1000.0)


async def signed_in(m: SessionManager) -> SessionRecord:
    return await m.create(user_oid="oid-1", user_name="A", email="a@x", roles=("R",),
                          groups=(), account_id="acc", is_admin=False)


async def test_epoch_moves_only_when_a_session_ends(two: tuple[Store, Store]) -> None:
    """Creating and touching leave the epoch alone; ending one session or a member's all
    moves it, seen by the other store object too."""
    a, b = two
    m = manager(a)
    rec = await signed_in(m)
    e0 = a.sessions_epoch()
    await a.touch_session(rec.id, 1001.0)
    assert a.sessions_epoch() == e0 is not None
    seen = b.sessions_epoch()
    await a.delete_session(rec.id)
    assert a.sessions_epoch() != e0
    await until(lambda: b.sessions_epoch() != seen)
    seen = b.sessions_epoch()
    await a.delete_sessions_of("oid-1")
    await until(lambda: b.sessions_epoch() != seen)


async def test_second_page_reads_no_store_and_sign_out_elsewhere_refuses_at_once(
    two: tuple[Store, Store],
) -> None:
    """Manager one reads the store once for three pages; manager two ends the session;
    manager one's next page refuses it."""
    a, b = two
    one, other = manager(a), manager(b)
    rec = await signed_in(one)
    calls = counting(a)
    for _ in range(3):
        got = await one.load(rec.id)
        assert got is not None and got.user_oid == "oid-1"
    assert len(calls) == 1
    await other.end(rec)
    # SQLite: the shared counter row is read on each request. PostgreSQL: the NOTIFY arrives
    # on the LISTEN connection (milliseconds); until then the copy may still be served.
    await until(lambda: a.sessions_epoch() != one._epoch)
    assert await one.load(rec.id) is None


async def test_no_cache_while_the_store_cannot_tell(request: pytest.FixtureRequest) -> None:
    """A PostgreSQL store without its LISTEN connection cannot hear of sign-outs elsewhere:
    it is read on every request."""
    store = PostgresStore(request.getfixturevalue("pg_dsn"), timeout=5.0, listen=False)
    await store.open()
    try:
        assert store.sessions_epoch() is None
        m = manager(store)
        rec = await signed_in(m)
        calls = counting(store)
        for _ in range(3):
            assert await m.load(rec.id) is not None
        assert len(calls) == 3
    finally:
        await store.close()


async def until(cond: Any, seconds: float = 2.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within the bound")
