"""The store interface: everything the gateway keeps between requests. It keeps no mail.

Records are typed dataclasses: sessions, sign-in flows, token caches, the outbox, the
switch's key/value records, the audit trail, API keys and the evidence
(``evidence.EvidenceStore``). Implementations: ``sqlite.SqliteStore`` (embedded, one
instance) and ``postgres.PostgresStore`` (several instances), chosen by ``store.backend``
in ``factory.build_store``. Session ids and flow ids are
stored only as SHA-256 hashes, so a copy of the database gives nobody a live cookie. Token
caches arrive here already encrypted (``gateway.crypto``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.store.evidence import EvidenceStore


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


@dataclass(frozen=True)
class KvRecord:
    """A value under optimistic concurrency: a write names the version it was based on."""

    key: str
    value: str
    version: int


@dataclass(frozen=True)
class AuditRow:
    """One link of the hash chain (``gateway.switch.audit`` makes and checks them)."""

    seq: int
    at: float
    body: str            # canonical JSON of the event
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ApiKeyRecord:
    """A named bearer key for the HTTP API; only the SHA-256 of the secret is kept."""

    name: str
    key_hash: str
    created_at: float
    created_by: str
    revoked_at: float | None = None
    last_used: float | None = None


@dataclass(frozen=True)
class OutboxRecord:
    """A message being written or sent, kept (encrypted by the caller) until it is sent, so
    that a refused send, a dropped connection or a bad address loses nothing."""

    id: str
    user_oid: str
    blob: bytes
    state: str            # compose | sending | failed | unknown | held | parked | sent
    created_at: float
    updated_at: float


def session_to_json(rec: SessionRecord) -> str:
    """A session's fields (all but its id and times) as the JSON both stores keep."""
    return json.dumps({
        "user_oid": rec.user_oid, "user_name": rec.user_name, "email": rec.email,
        "roles": list(rec.roles), "groups": list(rec.groups), "account_id": rec.account_id,
        "csrf_token": rec.csrf_token, "auth_time": rec.auth_time, "is_admin": rec.is_admin,
        "data": rec.data,
    })


def session_from_row(session_id: str, body: str, created: float, seen: float) -> SessionRecord:
    d = json.loads(body)
    return SessionRecord(
        id=session_id, user_oid=d["user_oid"], user_name=d["user_name"], email=d["email"],
        roles=tuple(d["roles"]), groups=tuple(d["groups"]), account_id=d["account_id"],
        csrf_token=d["csrf_token"], created_at=created, last_seen=seen,
        auth_time=d["auth_time"], is_admin=d.get("is_admin", False), data=d.get("data", {}))


class Store(EvidenceStore, Protocol):
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
    def sessions_epoch(self) -> int | None:
        """A number that changes whenever any process sharing this store ends a session
        (``delete_session``, ``delete_sessions_of``), read without waiting on the event
        loop; None when that cannot be known now (then nothing may be cached). The session
        layer keeps records in memory only while it stays the same."""
        ...

    # sign-in flows
    async def put_flow(self, rec: AuthFlowRecord) -> None: ...
    async def take_flow(self, flow_id: str) -> AuthFlowRecord | None: ...
    async def purge_flows(self, created_before: float) -> int: ...

    # token caches (already encrypted)
    async def get_token_cache(self, account_key: str) -> bytes | None: ...
    async def put_token_cache(self, account_key: str, blob: bytes, updated_at: float) -> None: ...
    async def delete_token_cache(self, account_key: str) -> None: ...

    # outbox (already encrypted)
    async def put_outbox(self, rec: OutboxRecord) -> None: ...
    async def get_outbox(self, outbox_id: str, user_oid: str) -> OutboxRecord | None: ...
    async def delete_outbox(self, outbox_id: str, user_oid: str) -> None: ...
    async def list_outbox(self, user_oid: str) -> list[OutboxRecord]: ...
    async def claim_outbox(self, outbox_id: str, user_oid: str, now: float,
                           lease_seconds: float) -> OutboxRecord | None:
        """Exactly one caller (across instances) gets the message until the lease ends."""
        ...
    async def release_outbox(self, outbox_id: str, user_oid: str) -> None: ...
    async def purge_outbox(self, updated_before: float, now: float) -> int:
        """Delete records last changed before ``updated_before`` that nobody is sending."""
        ...

    # key/value with optimistic concurrency (the failover switch)
    async def kv_get(self, key: str) -> KvRecord | None: ...
    async def kv_put(self, key: str, value: str, expected_version: int) -> int:
        """Write if the stored version is ``expected_version`` (0: absent); returns the new
        version, or raises ``Conflict``."""
        ...

    # audit chain (append-only)
    async def audit_append(self, make_row: Callable[[AuditRow | None], AuditRow]) -> AuditRow:
        """In one transaction, exclusive of other writers: read the last row, build the next
        with ``make_row(last)`` (pure: it links and hashes), append it and return it."""
        ...
    async def audit_rows(self, since: float | None = None,
                         until: float | None = None) -> list[AuditRow]: ...
    async def audit_rows_after(self, seq: int) -> list[AuditRow]:
        """Rows with a sequence number above ``seq``, in order: what an incremental check
        of the chain reads (``gateway.evidence.checkpoint.ChainWatch``)."""
        ...

    # API keys
    async def create_api_key(self, rec: ApiKeyRecord) -> None: ...
    async def api_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None: ...
    async def list_api_keys(self) -> list[ApiKeyRecord]: ...
    async def revoke_api_key(self, name: str, at: float) -> bool: ...
    async def touch_api_key(self, name: str, at: float) -> None: ...
