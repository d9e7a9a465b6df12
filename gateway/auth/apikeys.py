"""Named bearer keys for the ICT automation API (``gateway.web.api``).

A key is ``gwk_`` plus 32 random bytes (URL-safe base64); it is shown once, when made, and
the store keeps only its SHA-256 (a copy of the database gives nobody a working key). Keys
are made, listed and revoked with ``gateway apikey create|list|revoke``; a revoked key stays
listed, with when it was revoked, so the audit trail's ``api:<name>`` actors stay explained.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from gateway.errors import BadApiKey, BadRequest
from gateway.store.base import ApiKeyRecord, Store

PREFIX = "gwk_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_KEY = 200


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create(store: Store, name: str, by: str, now: float) -> str:
    """Make a key named ``name``; returns the secret (the only time it is seen)."""
    if not NAME.match(name):
        raise BadRequest("A key name is 1-64 letters, digits, dots, dashes or underscores.")
    secret = PREFIX + secrets.token_urlsafe(32)
    await store.create_api_key(ApiKeyRecord(name=name, key_hash=key_hash(secret),
                                            created_at=now, created_by=by))
    return secret


async def authenticate(store: Store, authorization: str | None, now: float) -> ApiKeyRecord:
    """The key record behind an ``Authorization: Bearer`` header, or ``BadApiKey``."""
    scheme, _, secret = (authorization or "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret.startswith(PREFIX) or len(secret) > MAX_KEY:
        raise BadApiKey()
    rec = await store.api_key_by_hash(key_hash(secret))
    if rec is None:
        raise BadApiKey("This API key is not known.")
    if rec.revoked_at is not None:
        raise BadApiKey("This API key has been revoked.")
    await store.touch_api_key(rec.name, now)
    return rec


async def revoke(store: Store, name: str, now: float) -> bool:
    return await store.revoke_api_key(name, now)
