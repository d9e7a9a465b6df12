"""``gateway migrate``: bring the store's schema up to date, then exit.

With PostgreSQL, run it once per release before the instances start (or leave
``store.migrate_on_start`` on and let the first instance do it; an advisory lock keeps
instances starting together from racing). SQLite creates its schema itself when opened.
Exit codes: 0 up to date, 1 the store could not be reached or a setting is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from gateway.cli.config import command_settings
from gateway.cli.output import error
from gateway.config import Settings
from gateway.errors import GatewayError


async def run_migrate(settings: Settings) -> str:
    if settings.store.backend != "postgres":
        from gateway.store.sqlite import SqliteStore

        store = SqliteStore(settings.store.sqlite_path)
        await store.open()
        await store.close()
        return f"SQLite store {settings.store.sqlite_path} is up to date."

    import asyncpg

    from gateway.store.postgres_schema import SCHEMA_VERSION, migrate

    timeout = settings.store.postgres_timeout_seconds
    try:
        conn = await asyncpg.connect(settings.store.postgres_dsn, timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise GatewayError(f"Cannot reach PostgreSQL ({type(exc).__name__}): check "
                           "store.postgres_dsn and that the database is up.") from None
    try:
        applied = await migrate(conn)
    except asyncpg.PostgresError as exc:
        raise GatewayError(f"Migration failed, nothing was changed: {exc}") from None
    finally:
        await conn.close()
    done = ", ".join(map(str, applied)) if applied else "none needed"
    return f"PostgreSQL schema at version {SCHEMA_VERSION} (migrations applied: {done})."


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = command_settings(args)
    try:
        print(asyncio.run(run_migrate(settings)))
    except GatewayError as exc:
        return error("migrate", exc.message)
    return 0


def register(sub: Any) -> None:
    sub.add_parser("migrate", help="apply pending store schema migrations"
                   ).set_defaults(fn=cmd_migrate)
