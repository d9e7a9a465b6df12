"""Server-side sessions. The cookie holds only a random id (``__Host-`` prefixed, Secure,
HttpOnly, SameSite=Lax); everything else lives in the store as a typed ``SessionRecord``.

A session ends when idle for ``session.idle_minutes`` or ``session.absolute_hours`` after
sign-in, whichever comes first. Sign-in always makes a new id, so an id planted before
sign-in is worthless (no fixation).

Records read from the store are kept in memory for up to ``CACHE_SECONDS``, so a page costs
no store round trip. They are kept only while the store's ``sessions_epoch`` stays the same:
it changes when any instance or worker ends a session (PostgreSQL: ``NOTIFY`` heard on the
LISTEN connection, milliseconds after the commit; SQLite: a counter row in the shared file,
read on each request without leaving the event loop), and a store that cannot tell (its
LISTEN connection down) turns the cache off. So a session signed out on one instance is
refused by every other at its next request (PostgreSQL: once the notice has arrived)."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from http.cookies import SimpleCookie

from gateway.config import Settings
from gateway.errors import StoreUnavailable
from gateway.store.base import SessionRecord, Store

log = logging.getLogger(__name__)
SESSION_COOKIE = "__Host-gw_session"
FLOW_COOKIE = "__Host-gw_flow"
# Writing last_seen on every request would make every page view a store write; a minute's
# precision is plenty for a 30-minute idle timeout.
TOUCH_INTERVAL = 60.0
MAX_COOKIE_ID = 128
# The bound on how stale a kept record may be (its last_seen, for the idle rule, comes from
# the store again after this); sign-outs do not wait for it (see the module docstring).
CACHE_SECONDS = 30.0
CACHE_MAX = 10_000


def new_id() -> str:
    return secrets.token_urlsafe(32)


def read_cookie(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    """The named cookie from raw ASGI headers, or None. Oversized or malformed cookie
    headers are treated as absent rather than failing the request."""
    for key, value in headers:
        if key != b"cookie" or len(value) > 8192:
            continue
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(value.decode("latin-1"))
        except Exception:  # noqa: BLE001, S112 - http.cookies raises assorted errors on junk
            continue
        morsel = jar.get(name)
        if morsel is not None and 0 < len(morsel.value) <= MAX_COOKIE_ID:
            return morsel.value
    return None


def cookie_header(name: str, value: str, *, max_age: int | None, same_site: str = "Lax") -> str:
    parts = [f"{name}={value}", "Path=/", "Secure", "HttpOnly", f"SameSite={same_site}"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


def clear_cookie_header(name: str, same_site: str = "Lax") -> str:
    return cookie_header(name, "", max_age=0, same_site=same_site)


class SessionManager:
    def __init__(self, store: Store, settings: Settings, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self.idle = settings.session.idle_minutes * 60.0
        self.absolute = settings.session.absolute_hours * 3600.0
        self._cache: dict[str, tuple[SessionRecord, float]] = {}
        self._epoch: int | None = None

    async def _get(self, session_id: str) -> SessionRecord | None:
        """The record, from memory while the store says no session ended since it was read."""
        # Read before the store call: a session ended meanwhile changes the epoch, and the
        # next request drops what is kept here.
        epoch = self.store.sessions_epoch()
        if epoch is None or epoch != self._epoch:
            self._cache.clear()
            self._epoch = epoch
        now = time.monotonic()
        if epoch is not None:
            hit = self._cache.get(session_id)
            if hit is not None and now - hit[1] < CACHE_SECONDS:
                return hit[0]
        rec = await self.store.get_session(session_id)
        if rec is not None and epoch is not None:
            if len(self._cache) >= CACHE_MAX:
                self._cache.pop(next(iter(self._cache)))
            self._cache[session_id] = (rec, now)
        return rec

    def _ended(self, rec: SessionRecord, now: float) -> bool:
        return now - rec.last_seen > self.idle or now - rec.created_at > self.absolute

    def forget(self, session_id: str) -> None:
        self._cache.pop(session_id, None)

    async def load(self, session_id: str | None) -> SessionRecord | None:
        """The live session for a cookie value, or None (unknown, idle or too old: deleted)."""
        return (await self.load_or_expired(session_id))[0]

    async def load_or_expired(self, session_id: str | None
                              ) -> tuple[SessionRecord | None, SessionRecord | None]:
        """(the live session, None), or (None, the session that just ended by idling or
        age: deleted now, but its record lets a message being sent be kept for its member)."""
        if not session_id:
            return None, None
        rec = await self._get(session_id)
        if rec is None:
            return None, None
        now = self.clock()
        if self._ended(rec, now) and session_id in self._cache:
            # Another instance may have seen the member since this copy was read.
            self.forget(session_id)
            rec = await self._get(session_id)
            if rec is None:
                return None, None
        if self._ended(rec, now):
            self.forget(session_id)
            try:
                await self.store.delete_session(session_id)
            except StoreUnavailable:
                log.warning("ended session could not be deleted: store unavailable")
            return None, rec
        if now - rec.last_seen > TOUCH_INTERVAL:
            rec.last_seen = now
            try:
                await self.store.touch_session(session_id, now)
            except StoreUnavailable:
                # Rule: reading mail does not depend on a store write succeeding (a full
                # disk shows on /health, not as every page failing).
                log.warning("session time could not be written: store unavailable")
        return rec, None

    async def create(self, *, user_oid: str, user_name: str, email: str, roles: tuple[str, ...],
                     groups: tuple[str, ...], account_id: str, is_admin: bool) -> SessionRecord:
        now = self.clock()
        rec = SessionRecord(
            id=new_id(), user_oid=user_oid, user_name=user_name, email=email, roles=roles,
            groups=groups, account_id=account_id, csrf_token=secrets.token_urlsafe(32),
            created_at=now, last_seen=now, auth_time=now, is_admin=is_admin)
        await self.store.create_session(rec)
        return rec

    def cookie(self, rec: SessionRecord) -> str:
        return cookie_header(SESSION_COOKIE, rec.id, max_age=int(self.absolute))

    async def end(self, rec: SessionRecord) -> None:
        self.forget(rec.id)
        await self.store.delete_session(rec.id)

    async def purge(self) -> int:
        now = self.clock()
        return await self.store.purge_sessions(now - self.idle, now - self.absolute)
