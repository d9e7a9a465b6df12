"""Encryption at rest: AES-256-GCM with a key ring. The first key encrypts; every key
decrypts, so keys can be rotated (put the new key first, keep the old until data has been
rewritten). Each blob is ``version(1) | key id(4) | nonce(12) | ciphertext+tag`` and carries
associated data naming what it is (e.g. the account it belongs to), so a blob copied to
another row does not decrypt."""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"


class DecryptError(Exception):
    """The blob was not made by any key in the ring, or was altered."""


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


class KeyRing:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self._keys = [(hashlib.sha256(k).digest()[:4], AESGCM(k)) for k in keys]

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes:
        kid, aead = self._keys[0]
        nonce = os.urandom(12)
        return _VERSION + kid + nonce + aead.encrypt(nonce, plaintext, context)

    def decrypt(self, blob: bytes, context: bytes) -> bytes:
        if len(blob) < 1 + 4 + 12 + 16 or blob[:1] != _VERSION:
            raise DecryptError("not an encrypted blob")
        kid, nonce, body = blob[1:5], blob[5:17], blob[17:]
        for key_id, aead in self._keys:
            if key_id == kid:
                try:
                    return aead.decrypt(nonce, body, context)
                except InvalidTag:
                    raise DecryptError("blob altered or context mismatch") from None
        raise DecryptError("no key in the ring matches")

    def needs_reencrypt(self, blob: bytes) -> bool:
        return blob[1:5] != self._keys[0][0]
