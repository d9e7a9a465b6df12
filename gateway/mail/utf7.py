"""IMAP modified UTF-7 mailbox names (RFC 3501 section 5.1.3), and quoting of names and
strings for IMAP commands.

Exchange and Dovecot send non-ASCII folder names in modified UTF-7 ("Entw&APw-rfe"), and
expect them back in that form: the gateway decodes for display and encodes for commands.
Decoding is strict, because a name that does not round-trip would address another folder.
"""

from __future__ import annotations

import base64
import binascii
import re


class Utf7Error(ValueError):
    """The text is not valid modified UTF-7 (or cannot be encoded as such)."""


# Printable US-ASCII other than "&" stands for itself; everything else is shifted.
_DIRECT = frozenset(range(0x20, 0x7F)) - {0x26}
_SHIFTED_RUN = re.compile(r"&([A-Za-z0-9+,]*)-")


def encode_mailbox(name: str) -> str:
    """Encode a Unicode mailbox name to modified UTF-7 (always printable ASCII)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            try:
                raw = "".join(pending).encode("utf-16-be")
            except UnicodeEncodeError as exc:  # lone surrogates have no UTF-16 form
                raise Utf7Error("mailbox name contains an unpaired surrogate") from exc
            b64 = base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")
            out.append("&" + b64 + "-")
            pending.clear()

    for ch in name:
        if ord(ch) in _DIRECT:
            flush()
            out.append(ch)
        elif ch == "&":
            flush()
            out.append("&-")
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode_mailbox(encoded: str | bytes) -> str:
    """Decode a modified UTF-7 mailbox name; raise Utf7Error for anything not canonical."""
    if isinstance(encoded, bytes):
        try:
            encoded = encoded.decode("ascii")
        except UnicodeDecodeError as exc:
            raise Utf7Error("8-bit octets are not allowed in modified UTF-7") from exc
    out: list[str] = []
    pos = 0
    while pos < len(encoded):
        amp = encoded.find("&", pos)
        direct = encoded[pos:] if amp < 0 else encoded[pos:amp]
        if any(ord(ch) not in _DIRECT for ch in direct):
            raise Utf7Error("control or non-ASCII character outside a shifted run")
        out.append(direct)
        if amp < 0:
            break
        match = _SHIFTED_RUN.match(encoded, amp)
        if match is None:
            raise Utf7Error("unterminated or malformed shifted run after '&'")
        out.append("&" if match.group(1) == "" else _decode_run(match.group(1)))
        pos = match.end()
    return "".join(out)


def _decode_run(b64: str) -> str:
    # Base64 of UTF-16BE: the length must leave no partial code unit, and the padding bits
    # must be zero, or two different encodings would name the same folder.
    if len(b64) % 4 == 1:
        raise Utf7Error("truncated base64 in shifted run")
    padded = b64.replace(",", "/") + "=" * (-len(b64) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except binascii.Error as exc:
        raise Utf7Error("invalid base64 in shifted run") from exc
    if len(raw) % 2 or not raw:
        raise Utf7Error("shifted run is not whole UTF-16 code units")
    if base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") != b64:
        raise Utf7Error("non-canonical base64 in shifted run")
    try:
        text = raw.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise Utf7Error("unpaired surrogate in shifted run") from exc
    if any(ord(ch) in _DIRECT or ch == "&" for ch in text):
        raise Utf7Error("printable ASCII must not be shifted")
    return text


def quote_astring(raw: bytes, *, non_sync: bool = False) -> bytes:
    """Wire form of a string argument: a quoted string with escapes when it is printable
    ASCII, else a literal ({n} CRLF data, or {n+} for LITERAL+ servers).

    aioimaplib refuses CR, LF and NUL in command arguments, so a literal can only be sent
    by code that writes the command itself (APPEND-style); prefer names that quote.
    """
    if any(b < 0x20 or b > 0x7E for b in raw):
        return b"{%d%s}\r\n" % (len(raw), b"+" if non_sync else b"") + raw
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def quote_mailbox(name: str) -> str:
    """The argument to put in an IMAP command for a Unicode mailbox name.

    After modified UTF-7 encoding a name is printable ASCII (controls and 8-bit are
    shifted), so it always travels as a quoted string: "Sent Items", "Entw&APw-rfe".
    """
    return quote_astring(encode_mailbox(name).encode("ascii")).decode("ascii")
