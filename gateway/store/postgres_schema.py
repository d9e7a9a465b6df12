"""The PostgreSQL store's schema: the numbered migrations (``MIGRATIONS``, append only,
``SCHEMA_VERSION`` the newest), which of them a database still lacks (recorded in its
``schema_migrations`` table), and applying them in one transaction under an advisory lock so
that instances starting together do not race. Used by ``gateway.store.postgres`` at start
and by ``gateway migrate``; the queries are in ``gateway.store.postgres``.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.store.postgres_evidence import MIGRATION as EVIDENCE_MIGRATION

log = logging.getLogger(__name__)

MIGRATION_LOCK = 7_311_001     # pg_advisory_xact_lock key: one migrator at a time

# Append only: a released migration is never edited, a change is a new number.
MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "initial schema", """
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_oid TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_oid);
CREATE TABLE auth_flows (
    id_hash TEXT PRIMARY KEY,
    flow BYTEA NOT NULL,
    next_url TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE token_caches (
    account_key TEXT PRIMARY KEY,
    blob BYTEA NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1
);
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE api_keys (
    name TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    created_at DOUBLE PRECISION NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at DOUBLE PRECISION,
    last_used DOUBLE PRECISION
);
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    user_oid TEXT NOT NULL,
    blob BYTEA NOT NULL,
    state TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
"""),
    (2, "indexes for purges and the audit export; outbox claims", """
CREATE INDEX sessions_last_seen ON sessions(last_seen);
CREATE INDEX auth_flows_created ON auth_flows(created_at);
CREATE INDEX audit_at ON audit(at);
ALTER TABLE outbox ADD COLUMN claimed_until DOUBLE PRECISION;
"""),
    (3, "evidence: health history, canary rounds, usage, notifications, checkpoints",
     EVIDENCE_MIGRATION),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


async def pending_migrations(conn: Any) -> list[tuple[int, str, str]]:
    await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY "
                       "KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
    done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [m for m in MIGRATIONS if m[0] not in done]


async def migrate(conn: Any) -> list[int]:
    """Apply the pending migrations in one transaction; returns their numbers."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        todo = await pending_migrations(conn)
        for version, name, sql in todo:
            log.info("store: applying migration %d (%s)", version, name)
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                               version, name)
    return [m[0] for m in todo]
