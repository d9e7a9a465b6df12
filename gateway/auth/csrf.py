"""CSRF tokens as pages carry them: masked afresh for every response, so that a compressed
page never repeats the same secret bytes (BREACH), while the session keeps one token.

A masked token is ``base64url(pad || pad XOR token)``; ``unmask`` gives back the token, or
None for anything malformed. The raw token is accepted too (scripts that read it once)."""

from __future__ import annotations

import base64
import binascii
import os


def mask(token: str) -> str:
    raw = token.encode()
    pad = os.urandom(len(raw))
    return base64.urlsafe_b64encode(pad + bytes(a ^ b for a, b in zip(pad, raw, strict=True))
                                    ).decode().rstrip("=")


def unmask(value: str, expected_length: int) -> str | None:
    """The token inside a masked value; the value itself if it is already a raw token."""
    if len(value) == expected_length:
        return value
    try:
        data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None
    half = len(data) // 2
    if len(data) % 2 or half != expected_length:
        return None
    try:
        return bytes(a ^ b for a, b in zip(data[:half], data[half:], strict=True)).decode()
    except UnicodeDecodeError:
        return None
