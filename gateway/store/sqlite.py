"""The embedded store: SQLite in WAL mode, reached from one worker thread so the event loop
never blocks on disk and writes are serialised without extra locking.

Tables: sessions, auth_flows, token_caches, kv (failover state), audit, api_keys; outbox is
created here too so the schema has one home; each is filled by its own module."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

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
from gateway.store.sqlite_evidence import SCHEMA as EVIDENCE_SCHEMA
from gateway.store.sqlite_evidence import SqliteEvidence

T = TypeVar("T")
# Counts sessions ended, for ``sessions_epoch`` (other worker processes share the file).
_BUMP_EPOCH = ("INSERT INTO meta VALUES ('sessions_epoch', '1') ON CONFLICT(key) DO UPDATE "
               "SET value = CAST(value AS INTEGER) + 1")

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    user_oid TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_oid);
CREATE TABLE IF NOT EXISTS auth_flows (
    id_hash TEXT PRIMARY KEY,
    flow BLOB NOT NULL,
    next_url TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS token_caches (
    account_key TEXT PRIMARY KEY,
    blob BLOB NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at REAL,
    last_used REAL
);
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    user_oid TEXT NOT NULL,
    blob BLOB NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""




_PATH_FIX = ("Set store.sqlite_path (GATEWAY_STORE_SQLITE_PATH) to a file in a directory "
             "this user can write (relative paths start from the working directory).")


def path_problem(path: str) -> str | None:
    """Why a database at ``path`` could not be opened for writing by this process, or None.
    For ``gateway check-config``: it tries what the store will do (create the file in its
    directory, or the directory in the nearest existing parent) and undoes it, so root on a
    read-only filesystem and an unprivileged user in ``/`` are both caught."""
    if path == ":memory:":
        return None
    target = Path(path)
    where = os.path.abspath(target)
    if target.exists():
        if target.is_dir():
            return f"store.sqlite_path: {where!r} is a directory. {_PATH_FIX}"
        try:
            with open(target, "ab"):
                pass
        except OSError as exc:
            return f"store.sqlite_path: cannot write {where!r} ({exc.strerror}). {_PATH_FIX}"
        parent = target.parent  # WAL and shared-memory files are created beside it
    else:
        parent = target.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".gateway-check-", dir=parent)
    except OSError as exc:
        return (f"store.sqlite_path: cannot create {where!r}: {os.path.abspath(parent)!r} is "
                f"not writable ({exc.strerror}). {_PATH_FIX}")
    os.close(fd)
    os.unlink(probe)
    return None


class SqliteStore(SqliteEvidence):
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._own_epoch = 0
        self._db: sqlite3.Connection | None = None
        # A second connection, used only on the event loop to read the session epoch (one
        # row of ``meta``, WAL readers never wait for the writer).
        self._watch: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None:
            raise StoreUnavailable()

        def call() -> T:
            if self._db is None:
                raise StoreUnavailable()
            with self._db:  # one transaction per call
                return fn(self._db)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except sqlite3.Error as exc:
            raise StoreUnavailable() from exc

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(SCHEMA + EVIDENCE_SCHEMA)
            columns = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
            if "claimed_until" not in columns:   # databases made before outbox claims
                db.execute("ALTER TABLE outbox ADD COLUMN claimed_until REAL")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                       (str(SCHEMA_VERSION),))
            return db

        def watch() -> sqlite3.Connection | None:
            if self.path == ":memory:":
                return None   # one connection, one process: nobody else ends sessions
            w = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            w.execute("PRAGMA busy_timeout=50")
            return w
        try:
            self._db = await asyncio.get_running_loop().run_in_executor(self._pool, connect)
            self._watch = await asyncio.get_running_loop().run_in_executor(self._pool, watch)
        except (sqlite3.Error, OSError) as exc:
            # Only at start-up (no member sees it): say which setting to fix.
            raise StoreUnavailable(
                f"store.sqlite_path: cannot open the SQLite database {self.path!r} "
                f"({exc}). {_PATH_FIX}") from exc

    async def close(self) -> None:
        db, self._db = self._db, None
        w, self._watch = self._watch, None
        if w is not None:
            w.close()
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, db.close)
        self._pool.shutdown(wait=False)

    async def ping(self) -> None:
        """A real write (rule: a store failure is a health failure; a full disk still
        answers SELECT 1)."""
        await self._run(lambda db: db.execute(
            "INSERT INTO kv (key, value, version) VALUES ('store.probe', ?, 1) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (repr(time.time()),)))

    # -- sessions
    async def create_session(self, rec: SessionRecord) -> None:
        await self._run(lambda db: db.execute(
            "INSERT INTO sessions VALUES (?,?,?,?,?)",
            (id_hash(rec.id), rec.user_oid, session_to_json(rec), rec.created_at,
             rec.last_seen)))

    async def get_session(self, session_id: str) -> SessionRecord | None:
        row = await self._run(lambda db: db.execute(
            "SELECT body, created_at, last_seen FROM sessions WHERE id_hash=?",
            (id_hash(session_id),)).fetchone())
        return session_from_row(session_id, *row) if row else None

    async def touch_session(self, session_id: str, last_seen: float) -> None:
        await self._run(lambda db: db.execute(
            "UPDATE sessions SET last_seen=? WHERE id_hash=?", (last_seen, id_hash(session_id))))

    async def delete_session(self, session_id: str) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM sessions WHERE id_hash=?", (id_hash(session_id),))
            db.execute(_BUMP_EPOCH)
        await self._run(run)
        self._own_epoch += 1

    async def delete_sessions_of(self, user_oid: str) -> int:
        def run(db: sqlite3.Connection) -> int:
            n = db.execute("DELETE FROM sessions WHERE user_oid=?", (user_oid,)).rowcount
            db.execute(_BUMP_EPOCH)
            return n
        n = await self._run(run)
        self._own_epoch += 1
        return n

    def sessions_epoch(self) -> int | None:
        if self._db is None:
            return None
        if self._watch is None:
            return self._own_epoch
        try:
            row = self._watch.execute(
                "SELECT value FROM meta WHERE key='sessions_epoch'").fetchone()
        except sqlite3.Error:
            return None
        return int(row[0]) if row else 0

    async def purge_sessions(self, idle_before: float, created_before: float) -> int:
        return await self._run(lambda db: db.execute(
            "DELETE FROM sessions WHERE last_seen < ? OR created_at < ?",
            (idle_before, created_before)).rowcount)

    async def list_sessions(self) -> list[SessionRecord]:
        rows = await self._run(lambda db: db.execute(
            "SELECT id_hash, body, created_at, last_seen FROM sessions "
            "ORDER BY last_seen DESC").fetchall())
        # The raw id is not stored; listed records carry the hash in its place.
        return [session_from_row(r[0], r[1], r[2], r[3]) for r in rows]

    # -- sign-in flows
    async def put_flow(self, rec: AuthFlowRecord) -> None:
        await self._run(lambda db: db.execute(
            "INSERT INTO auth_flows VALUES (?,?,?,?)",
            (id_hash(rec.id), rec.flow_json, rec.next_url, rec.created_at)))

    async def take_flow(self, flow_id: str) -> AuthFlowRecord | None:
        def take(db: sqlite3.Connection) -> Any:
            key = id_hash(flow_id)
            row = db.execute("SELECT flow, next_url, created_at FROM auth_flows WHERE id_hash=?",
                             (key,)).fetchone()
            db.execute("DELETE FROM auth_flows WHERE id_hash=?", (key,))
            return row
        row = await self._run(take)
        return AuthFlowRecord(flow_id, bytes(row[0]), row[1], row[2]) if row else None

    async def purge_flows(self, created_before: float) -> int:
        return await self._run(lambda db: db.execute(
            "DELETE FROM auth_flows WHERE created_at < ?", (created_before,)).rowcount)

    # -- outbox
    async def put_outbox(self, rec: OutboxRecord) -> None:
        await self._run(lambda db: db.execute(
            "INSERT INTO outbox (id, user_oid, blob, state, created_at, updated_at) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
            "blob=excluded.blob, state=excluded.state, updated_at=excluded.updated_at "
            "WHERE outbox.user_oid=excluded.user_oid",
            (rec.id, rec.user_oid, rec.blob, rec.state, rec.created_at, rec.updated_at)))

    async def get_outbox(self, outbox_id: str, user_oid: str) -> OutboxRecord | None:
        row = await self._run(lambda db: db.execute(
            "SELECT id, user_oid, blob, state, created_at, updated_at FROM outbox "
            "WHERE id=? AND user_oid=?", (outbox_id, user_oid)).fetchone())
        return OutboxRecord(row[0], row[1], bytes(row[2]), row[3], row[4], row[5]) if row else None

    async def claim_outbox(self, outbox_id: str, user_oid: str, now: float,
                           lease_seconds: float) -> OutboxRecord | None:
        """Take the message for sending: exactly one caller gets it until the lease ends.
        The single writer thread makes the check-and-set atomic."""
        def claim(db: sqlite3.Connection) -> Any:
            cur = db.execute(
                "UPDATE outbox SET claimed_until=? WHERE id=? AND user_oid=? AND "
                "(claimed_until IS NULL OR claimed_until <= ?)",
                (now + lease_seconds, outbox_id, user_oid, now))
            if cur.rowcount != 1:
                return None
            return db.execute(
                "SELECT id, user_oid, blob, state, created_at, updated_at FROM outbox "
                "WHERE id=?", (outbox_id,)).fetchone()
        row = await self._run(claim)
        return OutboxRecord(row[0], row[1], bytes(row[2]), row[3], row[4], row[5]) if row else None

    async def release_outbox(self, outbox_id: str, user_oid: str) -> None:
        await self._run(lambda db: db.execute(
            "UPDATE outbox SET claimed_until=NULL WHERE id=? AND user_oid=?",
            (outbox_id, user_oid)))

    async def delete_outbox(self, outbox_id: str, user_oid: str) -> None:
        await self._run(lambda db: db.execute(
            "DELETE FROM outbox WHERE id=? AND user_oid=?", (outbox_id, user_oid)))

    async def purge_outbox(self, updated_before: float, now: float) -> int:
        return await self._run(lambda db: db.execute(
            "DELETE FROM outbox WHERE updated_at < ? AND "
            "(claimed_until IS NULL OR claimed_until <= ?)", (updated_before, now)).rowcount)

    async def list_outbox(self, user_oid: str) -> list[OutboxRecord]:
        rows = await self._run(lambda db: db.execute(
            "SELECT id, user_oid, blob, state, created_at, updated_at FROM outbox "
            "WHERE user_oid=? ORDER BY updated_at DESC", (user_oid,)).fetchall())
        return [OutboxRecord(r[0], r[1], bytes(r[2]), r[3], r[4], r[5]) for r in rows]

    # -- token caches
    async def get_token_cache(self, account_key: str) -> bytes | None:
        # Every Graph call of a page reads the member's cache (Entra.access_token). Read it on
        # the loop through the watch connection, as the session epoch is: one row by its key
        # from a WAL snapshot, which sees every write _run has committed. The hop to the
        # store's thread and back was 7 % of a calendar page's CPU (bench/cpu_per_page.py
        # --profile, 2026-12-07). If the watch cannot read (busy, or no file), the thread does.
        def read(db: sqlite3.Connection) -> Any:
            return db.execute("SELECT blob FROM token_caches WHERE account_key=?",
                              (account_key,)).fetchone()
        if self._watch is not None and self._db is not None:
            try:
                row = read(self._watch)
            except sqlite3.Error:
                row = await self._run(read)
        else:
            row = await self._run(read)
        return bytes(row[0]) if row else None

    async def put_token_cache(self, account_key: str, blob: bytes, updated_at: float) -> None:
        await self._run(lambda db: db.execute(
            "INSERT INTO token_caches VALUES (?,?,?) ON CONFLICT(account_key) DO UPDATE SET "
            "blob=excluded.blob, updated_at=excluded.updated_at",
            (account_key, blob, updated_at)))

    async def delete_token_cache(self, account_key: str) -> None:
        await self._run(lambda db: db.execute(
            "DELETE FROM token_caches WHERE account_key=?", (account_key,)))

    # -- key/value with optimistic concurrency
    async def kv_get(self, key: str) -> KvRecord | None:
        row = await self._run(lambda db: db.execute(
            "SELECT value, version FROM kv WHERE key=?", (key,)).fetchone())
        return KvRecord(key, row[0], row[1]) if row else None

    async def kv_put(self, key: str, value: str, expected_version: int) -> int:
        def put(db: sqlite3.Connection) -> int:
            if expected_version == 0:
                done = db.execute("INSERT OR IGNORE INTO kv VALUES (?,?,1)", (key, value))
            else:
                done = db.execute("UPDATE kv SET value=?, version=version+1 "
                                  "WHERE key=? AND version=?", (value, key, expected_version))
            return -1 if done.rowcount != 1 else expected_version + 1
        version = await self._run(put)
        if version < 0:
            raise Conflict()
        return version

    # -- audit chain
    async def audit_append(self, make_row: Callable[[AuditRow | None], AuditRow]) -> AuditRow:
        def append(db: sqlite3.Connection) -> AuditRow:
            # IMMEDIATE takes the write lock before reading the tail, so another process (the
            # CLI beside the server) cannot append between the read and the insert.
            db.execute("BEGIN IMMEDIATE")
            last = db.execute("SELECT seq, at, body, prev_hash, hash FROM audit "
                              "ORDER BY seq DESC LIMIT 1").fetchone()
            row = make_row(AuditRow(*last) if last else None)
            db.execute("INSERT INTO audit VALUES (?,?,?,?,?)",
                       (row.seq, row.at, row.body, row.prev_hash, row.hash))
            return row
        return await self._run(append)

    async def audit_rows(self, since: float | None = None,
                         until: float | None = None) -> list[AuditRow]:
        rows = await self._run(lambda db: db.execute(
            "SELECT seq, at, body, prev_hash, hash FROM audit WHERE at >= ? AND at < ? "
            "ORDER BY seq", (-1e300 if since is None else since,
                             1e300 if until is None else until)).fetchall())
        return [AuditRow(*r) for r in rows]

    async def audit_rows_after(self, seq: int) -> list[AuditRow]:
        rows = await self._run(lambda db: db.execute(
            "SELECT seq, at, body, prev_hash, hash FROM audit WHERE seq > ? ORDER BY seq",
            (seq,)).fetchall())
        return [AuditRow(*r) for r in rows]

    # -- API keys
    async def create_api_key(self, rec: ApiKeyRecord) -> None:
        def insert(db: sqlite3.Connection) -> bool:
            done = db.execute("INSERT OR IGNORE INTO api_keys VALUES (?,?,?,?,?,?)",
                              (rec.name, rec.key_hash, rec.created_at, rec.created_by,
                               rec.revoked_at, rec.last_used))
            return done.rowcount == 1
        if not await self._run(insert):
            raise Conflict(f"An API key named {rec.name!r} already exists.")

    async def api_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        row = await self._run(lambda db: db.execute(
            "SELECT name, key_hash, created_at, created_by, revoked_at, last_used "
            "FROM api_keys WHERE key_hash=?", (key_hash,)).fetchone())
        return ApiKeyRecord(*row) if row else None

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        rows = await self._run(lambda db: db.execute(
            "SELECT name, key_hash, created_at, created_by, revoked_at, last_used "
            "FROM api_keys ORDER BY name").fetchall())
        return [ApiKeyRecord(*r) for r in rows]

    async def revoke_api_key(self, name: str, at: float) -> bool:
        return bool(await self._run(lambda db: db.execute(
            "UPDATE api_keys SET revoked_at=? WHERE name=? AND revoked_at IS NULL",
            (at, name)).rowcount))

    async def touch_api_key(self, name: str, at: float) -> None:
        await self._run(lambda db: db.execute(
            "UPDATE api_keys SET last_used=? WHERE name=?", (at, name)))
