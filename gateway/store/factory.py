"""Builds the store the settings name (``store.backend``) and connects its change notices
to the failover switch. The one place that knows which store classes exist."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.store.base import Store

log = logging.getLogger(__name__)


@runtime_checkable
class ChangeFeed(Protocol):
    """A store that tells when another instance changed a key (PostgreSQL LISTEN/NOTIFY)."""

    def add_change_listener(self, callback: Callable[[str], None]) -> None: ...


class SwitchLike(Protocol):
    def invalidate(self) -> None: ...
    async def current(self) -> object: ...


def build_store(settings: Settings, *, listen: bool = True) -> Store:
    """The configured store, not yet opened. ``listen=False`` (one-shot commands) skips the
    PostgreSQL change-notice connection."""
    if settings.store.backend == "postgres":
        from gateway.store.postgres import PostgresStore

        return PostgresStore(settings.store.postgres_dsn,
                             timeout=settings.store.postgres_timeout_seconds,
                             pool_size=settings.store.postgres_pool_size,
                             migrate_on_start=settings.store.migrate_on_start,
                             listen=listen)
    from gateway.store.sqlite import SqliteStore

    return SqliteStore(settings.store.sqlite_path)


def follow_switch(store: Store, switch: SwitchLike, key: str) -> None:
    """When the store reports that ``key`` (or, with ``""``, anything) changed, the switch
    re-reads it at once, so a flip on one instance is in force on all within a second."""
    if not isinstance(store, ChangeFeed):
        return
    pending: set[asyncio.Task[None]] = set()

    async def refresh() -> None:
        with contextlib.suppress(GatewayError):
            await switch.current()

    def changed(changed_key: str) -> None:
        if changed_key not in ("", key):
            return
        switch.invalidate()
        task = asyncio.get_running_loop().create_task(refresh())
        pending.add(task)
        task.add_done_callback(pending.discard)

    store.add_change_listener(changed)
