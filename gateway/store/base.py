"""The store interface: everything the gateway keeps between requests. It keeps no mail.

Records are typed dataclasses. Implementations: ``sqlite.SqliteStore`` (embedded, one
instance) and, later, a PostgreSQL store for several instances. Session ids and flow ids are
stored only as SHA-256 hashes, so a copy of the database gives nobody a live cookie. Token
caches arrive here already encrypted (``gateway.crypto``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol


def id_hash(raw_id: str) -> str:
    return hashlib.sha256(raw_id.encode()).hexdigest()


@dataclass
class SessionRecord:
    """A signed-in member's session. ``id`` is the raw cookie value: it lives only in memory
    and in the cookie; the store keys the row by its hash."""

    id: str
    user_oid: str
    user_name: str
    email: str
    roles: tuple[str, ...]
    groups: tuple[str, ...]
    account_id: str          # msal home_account_id, to find the user's tokens
    csrf_token: str
    created_at: float
    last_seen: float
    auth_time: float         # when the member last signed in with Entra
    is_admin: bool = False
    data: dict[str, str] = field(default_factory=dict)   # small typed extras (e.g. flash)


@dataclass
class AuthFlowRecord:
    """A sign-in in progress: msal's auth-code flow (state, nonce, PKCE verifier), kept
    server-side between the redirect to Entra and the form_post callback."""

    id: str
    flow_json: bytes         # encrypted by the caller
    next_url: str
    created_at: float


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...

    # sessions
    async def create_session(self, rec: SessionRecord) -> None: ...
    async def get_session(self, session_id: str) -> SessionRecord | None: ...
    async def touch_session(self, session_id: str, last_seen: float) -> None: ...
    async def delete_session(self, session_id: str) -> None: ...
    async def delete_sessions_of(self, user_oid: str) -> int: ...
    async def purge_sessions(self, idle_before: float, created_before: float) -> int: ...
    async def list_sessions(self) -> list[SessionRecord]: ...

    # sign-in flows
    async def put_flow(self, rec: AuthFlowRecord) -> None: ...
    async def take_flow(self, flow_id: str) -> AuthFlowRecord | None: ...
    async def purge_flows(self, created_before: float) -> int: ...

    # token caches (already encrypted)
    async def get_token_cache(self, account_key: str) -> bytes | None: ...
    async def put_token_cache(self, account_key: str, blob: bytes, updated_at: float) -> None: ...
    async def delete_token_cache(self, account_key: str) -> None: ...
