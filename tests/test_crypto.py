"""The key ring: AES-GCM at rest, rotation, tamper and context binding."""

import base64

import pytest

from gateway.crypto import DecryptError, KeyRing, new_key


def ring(*keys: str) -> KeyRing:
    return KeyRing([base64.b64decode(k) for k in keys])


def test_round_trip_and_ciphertext_hides_plaintext() -> None:
    """Encrypted data decrypts, and the blob does not contain the plaintext."""
    r = ring(new_key())
    blob = r.encrypt(b"refresh-token-abc", b"ctx")
    assert b"refresh-token-abc" not in blob
    assert r.decrypt(blob, b"ctx") == b"refresh-token-abc"


def test_rotation_old_blobs_still_decrypt_and_new_use_new_key() -> None:
    """After putting a new key first, old blobs decrypt and new blobs use the new key."""
    old, new = new_key(), new_key()
    blob = ring(old).encrypt(b"x", b"c")
    rotated = ring(new, old)
    assert rotated.decrypt(blob, b"c") == b"x"
    assert rotated.needs_reencrypt(blob)
    assert not rotated.needs_reencrypt(rotated.encrypt(b"x", b"c"))
    with pytest.raises(DecryptError):
        ring(new).decrypt(blob, b"c")


def test_tampering_and_wrong_context_fail() -> None:
    """A flipped bit or a blob moved to another row (context) does not decrypt."""
    r = ring(new_key())
    blob = bytearray(r.encrypt(b"payload", b"account-1"))
    with pytest.raises(DecryptError):
        r.decrypt(bytes(blob), b"account-2")
    blob[-1] ^= 1
    with pytest.raises(DecryptError):
        r.decrypt(bytes(blob), b"account-1")
    with pytest.raises(DecryptError):
        r.decrypt(b"short", b"account-1")
