"""Two gateways sharing one PostgreSQL database, as behind a load balancer: same keys, same
store, each on its own port in the shared test loop."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.crypto import new_key
from tests.conftest import Gateway, start_gateway
from tests.pgserver import PgServer, pg, pg_dsn  # noqa: F401  (fixtures)


@dataclass
class Pair:
    first: Gateway
    second: Gateway
    dsn: str


def start_pair(stack: Any, loop_thread: Any, tmp_path: Any, dsn: str,
               **second: Any) -> Pair:
    common: dict[str, Any] = {"store__backend": "postgres", "store__postgres_dsn": dsn,
              "store__postgres_timeout_seconds": 2.0, "crypto__keys": [new_key()]}
    a = start_gateway(stack, loop_thread, tmp_path / "a", **common)
    b = start_gateway(stack, loop_thread, tmp_path / "b", **{**common, **second})
    return Pair(a, b, dsn)


@pytest.fixture
def pair(stack: Any, loop_thread: Any, tmp_path: Any,
         pg_dsn: str) -> Iterator[Pair]:  # noqa: F811
    """The second instance re-reads the switch only every 30 s on its own, so anything it
    sees sooner came by LISTEN/NOTIFY."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    p = start_pair(stack, loop_thread, tmp_path, pg_dsn, failover__refresh_seconds=30.0)
    yield p
    p.first.stop()
    p.second.stop()


@pytest.fixture
def pg_server(pg: PgServer) -> PgServer:  # noqa: F811
    return pg
