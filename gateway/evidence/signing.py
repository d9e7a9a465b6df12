"""Ed25519 signatures for evidence reports and audit checkpoints (``cryptography``).

The private key lives in its own file (``evidence.signing_key_file``, PEM PKCS#8, mode 0600),
never in the store: whoever can rewrite the database still cannot sign. A missing key file
is made on first use. A report ``FILE`` gets a detached raw 64-byte signature ``FILE.sig``,
the form ``openssl pkeyutl -verify -rawin`` reads, so a third party needs only OpenSSL and
the public key ICT publishes (``gateway evidence public-key``; docs/evidence.md).
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIG_SUFFIX = ".sig"


def key_path(settings: Any) -> Path:
    configured = settings.evidence.signing_key_file
    if configured:
        return Path(configured)
    return Path(settings.store.sqlite_path).parent / "evidence-signing.key"


def store_id(settings: Any) -> str:
    """Names the store (never its password) in the checkpoint file, so that one file beside
    several test or staging stores mixes nothing up."""
    from gateway.cli.config import describe_store

    return hashlib.sha256(describe_store(settings).encode()).hexdigest()[:16]


def checkpoint_path(settings: Any) -> Path:
    configured = settings.evidence.checkpoint_file
    return Path(configured) if configured else key_path(settings).parent / \
        "audit-checkpoints.jsonl"


class Signer:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = key.public_key()

    @classmethod
    def from_file(cls, path: str | Path, create: bool = True) -> Signer:
        p = Path(path)
        if not p.exists():
            if not create:
                raise FileNotFoundError(f"no signing key at {p}")
            p.parent.mkdir(parents=True, exist_ok=True)
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            try:
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:      # another worker made it just now
                return cls.from_file(p, create=False)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            return cls(key)
        loaded = serialization.load_pem_private_key(p.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError(f"{p} does not hold an Ed25519 private key")
        return cls(loaded)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def sign_b64(self, data: bytes) -> str:
        return base64.b64encode(self.sign(data)).decode()

    def public_pem(self) -> str:
        return public_pem(self.public)

    def fingerprint(self) -> str:
        return fingerprint(self.public)


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the DER public key, as ``openssl pkey -pubin -outform DER | sha256sum``."""
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def load_public(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("that is not an Ed25519 public key")
    return key


def verify(key: Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def verify_b64(key: Ed25519PublicKey, data: bytes, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        return False
    return verify(key, data, raw)
