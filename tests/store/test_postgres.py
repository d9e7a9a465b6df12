"""What only the shared store does: versioned migrations, hashed ids in the tables, bounded
waits when the database is away, change notices between instances (also after the LISTEN
connection is lost), and outbox claims that one instance wins."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from gateway.devstack.procs import free_port
from gateway.errors import StoreUnavailable
from gateway.store.base import OutboxRecord, SessionRecord, id_hash
from gateway.store.postgres import PostgresStore
from gateway.store.postgres_schema import SCHEMA_VERSION, migrate


async def opened(dsn: str, **kw: object) -> PostgresStore:
    s = PostgresStore(dsn, timeout=3.0, **kw)  # type: ignore[arg-type]
    await s.open()
    return s


async def until(cond: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_migrations_are_versioned_and_applied_once(pg_dsn: str) -> None:
    """Opening applies every migration once; a second migrator finds nothing to do."""
    s = await opened(pg_dsn)
    try:
        assert await s.schema_version() == SCHEMA_VERSION
    finally:
        await s.close()
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await migrate(conn) == []
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == SCHEMA_VERSION
    finally:
        await conn.close()


async def test_without_migrate_on_start_an_old_schema_is_refused(pg_dsn: str) -> None:
    """With migrate_on_start off, an unmigrated database refuses to open and names the fix."""
    s = PostgresStore(pg_dsn, timeout=3.0, migrate_on_start=False)
    with pytest.raises(StoreUnavailable, match="gateway migrate"):
        await s.open()


async def test_raw_session_id_not_stored(pg_dsn: str) -> None:
    """The sessions table holds the id's hash, never the raw cookie value."""
    s = await opened(pg_dsn)
    try:
        await s.create_session(SessionRecord("raw-id", "o", "A", "a@x", (), (), "acc", "c",
                                             1.0, 1.0, 1.0))
        conn = await asyncpg.connect(pg_dsn)
        dump = str(await conn.fetch("SELECT * FROM sessions"))
        await conn.close()
    finally:
        await s.close()
    assert "raw-id" not in dump and id_hash("raw-id") in dump


async def test_unreachable_database_is_store_unavailable() -> None:
    """No server at the address: open fails with StoreUnavailable within the timeout."""
    s = PostgresStore(f"postgresql://u:p@127.0.0.1:{free_port()}/x", timeout=1.0)
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(s.open(), 10)
    with pytest.raises(StoreUnavailable):
        await s.ping()


async def test_kv_change_reaches_other_instance_also_after_reconnect(pg_dsn: str) -> None:
    """A kv_put on one instance is notified to another; after its LISTEN connection is cut
    it reconnects and tells its listeners that anything may have changed."""
    a, b = await opened(pg_dsn), await opened(pg_dsn)
    seen: list[str] = []
    b.add_change_listener(seen.append)
    try:
        await until(lambda: b.listening)
        await a.kv_put("failover.state", "x", 0)
        await until(lambda: "failover.state" in seen)
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                           "query LIKE 'LISTEN%' AND pid <> pg_backend_pid()")
        await conn.close()
        await until(lambda: "" in seen)
        await until(lambda: b.listening)
        await a.kv_put("failover.state", "y", 1)
        await until(lambda: seen.count("failover.state") == 2)
    finally:
        await a.close()
        await b.close()


async def test_outbox_claim_has_one_winner_until_the_lease_ends(pg_dsn: str) -> None:
    """Two instances claiming one outbox message: one wins; after the lease, another may."""
    a, b = await opened(pg_dsn), await opened(pg_dsn)
    try:
        await a.put_outbox(OutboxRecord("m1", "oid", b"blob", "compose", 1.0, 1.0))
        got = await asyncio.gather(*(s.claim_outbox("m1", "oid", 100.0, 60.0)
                                     for s in (a, b, a, b)))
        assert sum(r is not None for r in got) == 1
        assert await b.claim_outbox("m1", "oid", 159.0, 60.0) is None
        assert await b.claim_outbox("m1", "other", 200.0, 60.0) is None
        assert await b.claim_outbox("m1", "oid", 161.0, 60.0) is not None
    finally:
        await a.close()
        await b.close()
