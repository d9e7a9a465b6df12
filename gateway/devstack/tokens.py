"""Entra-shaped RS256 tokens for the dev stack: the stand-in signs them, and Dovecot (through
its local key directory) and the SMTP stand-in check them. The key pair is made at run time
and never written anywhere but the stack's temporary directory."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.devstack.users import TENANT_ID

OUTLOOK_AUDIENCE = "https://outlook.office.com"
# Exchange Online's resource for app-only IMAP/SMTP: Microsoft documents the client-credentials
# scope https://outlook.office365.com/.default ("Authenticate an IMAP, POP or SMTP connection
# using OAuth", learn.microsoft.com); the token's aud is that resource.
EXCHANGE_APP_AUDIENCE = "https://outlook.office365.com"
GRAPH_AUDIENCE = "https://graph.microsoft.com"
# Entra issues v1-shaped access tokens for these resources, with this issuer.
ACCESS_ISSUER = f"https://sts.windows.net/{TENANT_ID}/"
# Entra dates a token's iat and nbf five minutes before it issues it, in access and ID tokens
# alike; exp is counted from the real time of issue, so exp - iat is the lifetime plus five
# minutes (a new tenant's tokens decoded in keycloakify/oidc-spa issue 162; openid/AppAuth-iOS
# issue 264; psignoret/aad-sso-wordpress issue 34). A token dated "now" is refused by Dovecot
# as "not valid yet" in the few milliseconds after a second turns, when its clock (C's time(),
# which Linux serves from a coarse clock) still reads the second before Python's time.time():
# one login in 150-250 here, and aioimaplib, which does not answer the error challenge, then
# waits out its timeout (the failed CI run of 2026-12-07).
ISSUED_BACKDATE_SECONDS = 300


def _b64url_uint(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class TokenSigner:
    """An RSA key pair with a key id; issues and checks RS256 JWTs."""

    def __init__(self, kid: str | None = None) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub = self._key.public_key()
        self.public_pem = pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = kid or hashlib.sha256(self.public_pem).hexdigest()[:16]
        # Every token signed, so tests can prove none of them ever reaches a log.
        self.issued: list[str] = []

    def jwk(self) -> dict[str, Any]:
        nums = self._key.public_key().public_numbers()
        return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                "n": _b64url_uint(nums.n), "e": _b64url_uint(nums.e)}

    def sign(self, claims: dict[str, Any]) -> str:
        token = jwt.encode(claims, self._key, algorithm="RS256",
                           headers={"kid": self.kid, "typ": "JWT"})
        self.issued.append(token)
        return token

    def verify(self, token: str, audience: str,
               issuer: str | None = ACCESS_ISSUER) -> dict[str, Any]:
        """Check signature, audience, issuer and expiry; raise jwt.InvalidTokenError."""
        claims: dict[str, Any] = jwt.decode(
            token, self._key.public_key(), algorithms=["RS256"], audience=audience,
            issuer=issuer, options={"require": ["exp", "aud"]})
        return claims

    def write_dovecot_key(self, key_dir: Path, azp: str) -> None:
        """Lay the public key out where Dovecot's oauth2 local validation looks for it:
        ``<dir>/<azp>/RS256/<kid>`` (and under ``default`` for tokens with no azp)."""
        for sub in (azp, "default"):
            for kid in (self.kid, "default"):
                d = key_dir / sub / "RS256"
                d.mkdir(parents=True, exist_ok=True)
                (d / kid).write_bytes(self.public_pem)
