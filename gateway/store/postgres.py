"""The shared store: PostgreSQL through asyncpg, for several gateway instances behind a load
balancer. It behaves exactly as ``sqlite.SqliteStore`` (one test suite runs against both).

What it adds for several instances:

- Schema migrations (``gateway.store.postgres_schema``), applied at start
  (``store.migrate_on_start``) or by ``gateway migrate``; when they are not applied at
  start, ``open`` refuses a schema that is not up to date.
- Change notices: ``kv_put`` sends ``NOTIFY gateway_kv, '<key>'`` in its transaction, and one
  dedicated ``LISTEN`` connection per instance hands the key to the callbacks registered
  with ``add_change_listener`` (the failover switch re-reads at once). After that connection
  is lost and made again, every callback gets ``""`` (anything may have changed meanwhile).
  Ending a session sends ``NOTIFY gateway_sessions`` the same way; ``sessions_epoch`` counts
  them, and is None while the LISTEN connection is down.
- Bounded waits: acquiring a connection and every statement give up after
  ``store.postgres_timeout_seconds`` with ``StoreUnavailable``; a database outage never
  hangs a request.
- ``claim_outbox``: a row lock, so that each outbox message is sent by one instance only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from gateway.errors import Conflict, StoreUnavailable
from gateway.store.base import (
    ApiKeyRecord,
    AuditRow,
    AuthFlowRecord,
    KvRecord,
    OutboxRecord,
    SessionRecord,
    id_hash,
    session_from_row,
    session_to_json,
)
from gateway.store.postgres_evidence import PostgresEvidence
from gateway.store.postgres_schema import migrate, pending_migrations

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL = "gateway_kv"
# Ending a session notifies every instance, so none keeps serving it from memory.
SESSION_CHANNEL = "gateway_sessions"
AUDIT_LOCK = 7_311_002         # one audit writer at a time (the chain is read, then extended)
RECONNECT_SECONDS = 0.2
KEEPALIVE_SECONDS = 2.0

# Everything asyncpg or the socket can raise when the database is away or refuses.
_DOWN = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError,
         OSError, asyncio.TimeoutError)

_OUTBOX_COLS = "id, user_oid, blob, state, created_at, updated_at"
_KEY_COLS = "name, key_hash, created_at, created_by, revoked_at, last_used"


def _count(status: str) -> int:
    """Rows touched, from a command tag such as ``DELETE 3``."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


def _outbox(r: Any) -> OutboxRecord:
    return OutboxRecord(r[0], r[1], bytes(r[2]), r[3], r[4], r[5])


class PostgresStore(PostgresEvidence):
    def __init__(self, dsn: str, *, timeout: float = 5.0, pool_size: int = 10,
                 migrate_on_start: bool = True, listen: bool = True) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self.pool_size = pool_size
        self.migrate_on_start = migrate_on_start
        self.listen = listen
        self._pool: Any = None
        self._callbacks: list[Callable[[str], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self._listening: asyncio.Event | None = None   # made in open(), in its loop
        self._session_epoch = 0

    # -- life cycle

    async def open(self) -> None:
        try:
            conn = await asyncpg.connect(self.dsn, timeout=self.timeout)
        except _DOWN as exc:
            raise StoreUnavailable() from exc
        try:
            if self.migrate_on_start:
                await migrate(conn)
            elif await pending_migrations(conn):
                raise StoreUnavailable("The database schema is not up to date: run "
                                       "`gateway migrate`.")
        except _DOWN as exc:
            raise StoreUnavailable() from exc
        finally:
            await conn.close()
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self.pool_size, timeout=self.timeout,
                command_timeout=self.timeout, max_inactive_connection_lifetime=60)
        except _DOWN as exc:
            raise StoreUnavailable() from exc
        self._listening = asyncio.Event()
        if self.listen:
            self._listener = asyncio.create_task(self._listen_loop(), name="store-listen")

    async def close(self) -> None:
        task, self._listener = self._listener, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.timeout)
            except _DOWN:
                pool.terminate()

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[Any]:
        if self._pool is None:
            raise StoreUnavailable()
        try:
            async with self._pool.acquire(timeout=self.timeout) as conn:
                yield conn
        except (Conflict, StoreUnavailable):
            raise
        except _DOWN as exc:
            raise StoreUnavailable() from exc

    async def _run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        async with self._conn() as conn:
            return await fn(conn)

    async def _tx(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        async with self._conn() as conn, conn.transaction():
            return await fn(conn)

    async def ping(self) -> None:
        """A real write (rule: a store failure is a health failure; a full disk or a
        read-only replica still answers SELECT 1). No NOTIFY: nobody follows this key."""
        await self._run(lambda c: c.execute(
            "INSERT INTO kv (key, value, version) VALUES ('store.probe', $1, 1) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value", repr(time.time())))

    async def schema_version(self) -> int:
        return int(await self._run(lambda c: c.fetchval(
            "SELECT coalesce(max(version), 0) FROM schema_migrations")))

    # -- change notices

    def add_change_listener(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(key)`` when any instance writes ``key`` with ``kv_put``, and
        ``callback("")`` after a lost LISTEN connection is made again."""
        self._callbacks.append(callback)

    @property
    def listening(self) -> bool:
        return self._listening is not None and self._listening.is_set()

    def _fire(self, key: str) -> None:
        for cb in self._callbacks:
            try:
                cb(key)
            except Exception:
                log.exception("store change listener failed")

    async def _listen_loop(self) -> None:
        assert self._listening is not None
        reconnected = False
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=self.timeout)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, lambda _c, _pid, _ch, key: self._fire(key))
                await conn.add_listener(SESSION_CHANNEL, lambda *_: self._sessions_ended())
                self._sessions_ended()   # anything may have ended while not listening
                self._listening.set()
                if reconnected:
                    log.info("store: change notices resumed")
                    self._fire("")
                reconnected = True
                while not lost.is_set() and not conn.is_closed():
                    # A quiet connection is checked now and then: a half-open socket (a
                    # vanished server) would otherwise never tell us it is gone.
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(lost.wait(), KEEPALIVE_SECONDS)
                    if not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=self.timeout)
            except _DOWN as exc:
                if self._listening.is_set():
                    log.warning("store: change notices lost (%s); reconnecting",
                                type(exc).__name__)
            finally:
                self._listening.clear()
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(RECONNECT_SECONDS)

    def _sessions_ended(self) -> None:
        self._session_epoch += 1

    def sessions_epoch(self) -> int | None:
        # Only while the LISTEN connection is up: otherwise an instance would not hear of a
        # sign-out elsewhere, and must read the store on every request.
        return self._session_epoch if self.listening else None

    # -- sessions

    async def create_session(self, rec: SessionRecord) -> None:
        await self._run(lambda c: c.execute(
            "INSERT INTO sessions VALUES ($1,$2,$3,$4,$5)", id_hash(rec.id), rec.user_oid,
            session_to_json(rec), rec.created_at, rec.last_seen))

    async def get_session(self, session_id: str) -> SessionRecord | None:
        row = await self._run(lambda c: c.fetchrow(
            "SELECT body, created_at, last_seen FROM sessions WHERE id_hash=$1",
            id_hash(session_id)))
        return session_from_row(session_id, row[0], row[1], row[2]) if row else None

    async def touch_session(self, session_id: str, last_seen: float) -> None:
        await self._run(lambda c: c.execute(
            "UPDATE sessions SET last_seen=$1 WHERE id_hash=$2", last_seen, id_hash(session_id)))

    async def delete_session(self, session_id: str) -> None:
        # The notice is sent at commit, in the same transaction as the delete.
        async def run(c: Any) -> None:
            await c.execute("DELETE FROM sessions WHERE id_hash=$1", id_hash(session_id))
            await c.execute(f"NOTIFY {SESSION_CHANNEL}")
        await self._tx(run)
        self._sessions_ended()

    async def delete_sessions_of(self, user_oid: str) -> int:
        async def run(c: Any) -> str:
            status = await c.execute("DELETE FROM sessions WHERE user_oid=$1", user_oid)
            await c.execute(f"NOTIFY {SESSION_CHANNEL}")
            return str(status)
        n = _count(await self._tx(run))
        self._sessions_ended()
        return n

    async def purge_sessions(self, idle_before: float, created_before: float) -> int:
        return _count(await self._run(lambda c: c.execute(
            "DELETE FROM sessions WHERE last_seen < $1 OR created_at < $2",
            idle_before, created_before)))

    async def list_sessions(self) -> list[SessionRecord]:
        rows = await self._run(lambda c: c.fetch(
            "SELECT id_hash, body, created_at, last_seen FROM sessions "
            "ORDER BY last_seen DESC"))
        # The raw id is not stored; listed records carry the hash in its place.
        return [session_from_row(r[0], r[1], r[2], r[3]) for r in rows]

    # -- sign-in flows

    async def put_flow(self, rec: AuthFlowRecord) -> None:
        await self._run(lambda c: c.execute(
            "INSERT INTO auth_flows VALUES ($1,$2,$3,$4)", id_hash(rec.id), rec.flow_json,
            rec.next_url, rec.created_at))

    async def take_flow(self, flow_id: str) -> AuthFlowRecord | None:
        # DELETE ... RETURNING: of two instances taking the same flow, one gets it.
        row = await self._run(lambda c: c.fetchrow(
            "DELETE FROM auth_flows WHERE id_hash=$1 RETURNING flow, next_url, created_at",
            id_hash(flow_id)))
        return AuthFlowRecord(flow_id, bytes(row[0]), row[1], row[2]) if row else None

    async def purge_flows(self, created_before: float) -> int:
        return _count(await self._run(lambda c: c.execute(
            "DELETE FROM auth_flows WHERE created_at < $1", created_before)))

    # -- outbox

    async def put_outbox(self, rec: OutboxRecord) -> None:
        await self._run(lambda c: c.execute(
            "INSERT INTO outbox (id, user_oid, blob, state, created_at, updated_at) "
            "VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (id) DO UPDATE SET blob=excluded.blob, "
            "state=excluded.state, updated_at=excluded.updated_at "
            "WHERE outbox.user_oid=excluded.user_oid",
            rec.id, rec.user_oid, rec.blob, rec.state, rec.created_at, rec.updated_at))

    async def get_outbox(self, outbox_id: str, user_oid: str) -> OutboxRecord | None:
        row = await self._run(lambda c: c.fetchrow(
            f"SELECT {_OUTBOX_COLS} FROM outbox WHERE id=$1 AND user_oid=$2",  # noqa: S608
            outbox_id, user_oid))
        return _outbox(row) if row else None

    async def delete_outbox(self, outbox_id: str, user_oid: str) -> None:
        await self._run(lambda c: c.execute(
            "DELETE FROM outbox WHERE id=$1 AND user_oid=$2", outbox_id, user_oid))

    async def purge_outbox(self, updated_before: float, now: float) -> int:
        return _count(await self._run(lambda c: c.execute(
            "DELETE FROM outbox WHERE updated_at < $1 AND "
            "(claimed_until IS NULL OR claimed_until <= $2)", updated_before, now)))

    async def list_outbox(self, user_oid: str) -> list[OutboxRecord]:
        rows = await self._run(lambda c: c.fetch(
            f"SELECT {_OUTBOX_COLS} FROM outbox WHERE user_oid=$1 "  # noqa: S608
            "ORDER BY updated_at DESC", user_oid))
        return [_outbox(r) for r in rows]

    async def claim_outbox(self, outbox_id: str, user_oid: str, now: float,
                           lease_seconds: float) -> OutboxRecord | None:
        """Take the message for sending: returns it to exactly one caller until the lease
        ends (a sender that died frees it then), None to everyone else. The UPDATE locks
        the row, so a second instance waits for the first and then finds it claimed."""
        row = await self._run(lambda c: c.fetchrow(
            "UPDATE outbox SET claimed_until=$3 WHERE id=$1 AND user_oid=$2 AND "  # noqa: S608
            f"(claimed_until IS NULL OR claimed_until <= $4) RETURNING {_OUTBOX_COLS}",
            outbox_id, user_oid, now + lease_seconds, now))
        return _outbox(row) if row else None

    async def release_outbox(self, outbox_id: str, user_oid: str) -> None:
        await self._run(lambda c: c.execute(
            "UPDATE outbox SET claimed_until=NULL WHERE id=$1 AND user_oid=$2",
            outbox_id, user_oid))

    # -- token caches

    async def get_token_cache(self, account_key: str) -> bytes | None:
        blob = await self._run(lambda c: c.fetchval(
            "SELECT blob FROM token_caches WHERE account_key=$1", account_key))
        return bytes(blob) if blob is not None else None

    async def put_token_cache(self, account_key: str, blob: bytes, updated_at: float) -> None:
        await self._run(lambda c: c.execute(
            "INSERT INTO token_caches VALUES ($1,$2,$3) ON CONFLICT (account_key) DO UPDATE "
            "SET blob=excluded.blob, updated_at=excluded.updated_at",
            account_key, blob, updated_at))

    async def delete_token_cache(self, account_key: str) -> None:
        await self._run(lambda c: c.execute(
            "DELETE FROM token_caches WHERE account_key=$1", account_key))

    # -- key/value with optimistic concurrency

    async def kv_get(self, key: str) -> KvRecord | None:
        row = await self._run(lambda c: c.fetchrow(
            "SELECT value, version FROM kv WHERE key=$1", key))
        return KvRecord(key, row[0], int(row[1])) if row else None

    async def kv_put(self, key: str, value: str, expected_version: int) -> int:
        async def put(c: Any) -> int | None:
            if expected_version == 0:
                version = await c.fetchval(
                    "INSERT INTO kv VALUES ($1,$2,1) ON CONFLICT (key) DO NOTHING "
                    "RETURNING version", key, value)
            else:
                version = await c.fetchval(
                    "UPDATE kv SET value=$2, version=version+1 WHERE key=$1 AND version=$3 "
                    "RETURNING version", key, value, expected_version)
            if version is not None:
                # Delivered to every listening instance when this transaction commits.
                await c.execute("SELECT pg_notify($1, $2)", CHANNEL, key)
            return None if version is None else int(version)
        version = await self._tx(put)
        if version is None:
            raise Conflict()
        return version

    # -- audit chain

    async def audit_append(self, make_row: Callable[[AuditRow | None], AuditRow]) -> AuditRow:
        async def append(c: Any) -> AuditRow:
            # The lock is held to the end of the transaction: no other instance can read
            # the same tail and append beside us.
            await c.execute("SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK)
            last = await c.fetchrow("SELECT seq, at, body, prev_hash, hash FROM audit "
                                    "ORDER BY seq DESC LIMIT 1")
            row = make_row(AuditRow(*last) if last else None)
            try:
                await c.execute("INSERT INTO audit VALUES ($1,$2,$3,$4,$5)",
                                row.seq, row.at, row.body, row.prev_hash, row.hash)
            except asyncpg.UniqueViolationError:
                raise Conflict(f"Audit entry {row.seq} already exists.") from None
            return row
        return await self._tx(append)

    async def audit_rows(self, since: float | None = None,
                         until: float | None = None) -> list[AuditRow]:
        rows = await self._run(lambda c: c.fetch(
            "SELECT seq, at, body, prev_hash, hash FROM audit WHERE at >= $1 AND at < $2 "
            "ORDER BY seq", -1e300 if since is None else since,
            1e300 if until is None else until))
        return [AuditRow(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    async def audit_rows_after(self, seq: int) -> list[AuditRow]:
        rows = await self._run(lambda c: c.fetch(
            "SELECT seq, at, body, prev_hash, hash FROM audit WHERE seq > $1 ORDER BY seq",
            seq))
        return [AuditRow(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    # -- API keys

    async def create_api_key(self, rec: ApiKeyRecord) -> None:
        status = await self._run(lambda c: c.execute(
            "INSERT INTO api_keys VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING",
            rec.name, rec.key_hash, rec.created_at, rec.created_by, rec.revoked_at,
            rec.last_used))
        if _count(status) != 1:
            raise Conflict(f"An API key named {rec.name!r} already exists.")

    async def api_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        row = await self._run(lambda c: c.fetchrow(
            f"SELECT {_KEY_COLS} FROM api_keys WHERE key_hash=$1", key_hash))  # noqa: S608
        return ApiKeyRecord(*row) if row else None

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        rows = await self._run(lambda c: c.fetch(
            f"SELECT {_KEY_COLS} FROM api_keys ORDER BY name"))  # noqa: S608
        return [ApiKeyRecord(*r) for r in rows]

    async def revoke_api_key(self, name: str, at: float) -> bool:
        return _count(await self._run(lambda c: c.execute(
            "UPDATE api_keys SET revoked_at=$1 WHERE name=$2 AND revoked_at IS NULL",
            at, name))) > 0

    async def touch_api_key(self, name: str, at: float) -> None:
        await self._run(lambda c: c.execute(
            "UPDATE api_keys SET last_used=$1 WHERE name=$2", at, name))
