"""The ``store`` fixture runs each evidence test twice: on SQLite and on PostgreSQL (a private
server, a fresh database per test; tests/pgserver.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.store.base import Store
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.pgserver import pg, pg_dsn  # noqa: F401  (fixtures)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Store]:
    s: Store
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "g.db")
    else:
        s = PostgresStore(request.getfixturevalue("pg_dsn"), timeout=5.0, listen=False)
    await s.open()
    yield s
    await s.close()
