"""Modified UTF-7 mailbox names and IMAP quoting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mail.utf7 import (
    Utf7Error,
    decode_mailbox,
    encode_mailbox,
    quote_astring,
    quote_mailbox,
)

FUZZ = settings(max_examples=300, deadline=None)


@pytest.mark.parametrize(("name", "encoded"), [
    ("INBOX", "INBOX"),
    ("Sent Items", "Sent Items"),
    ("Entwürfe", "Entw&APw-rfe"),
    ("~peter/mail/日本語/台北", "~peter/mail/&ZeVnLIqe-/&U,BTFw-"),   # RFC 3501 5.1.3
    ("a&b", "a&-b"),
    ("&", "&-"),
    ("😀", "&2D3eAA-"),
    ("tab\there", "tab&AAk-here"),
])
def test_known_names_encode_and_decode(name: str, encoded: str) -> None:
    """Names encode to the RFC 3501 form and decode back, including & and non-BMP."""
    assert encode_mailbox(name) == encoded
    assert decode_mailbox(encoded) == name
    assert decode_mailbox(encoded.encode("ascii")) == name


@FUZZ
@given(st.text())
def test_round_trip_any_unicode(name: str) -> None:
    """Any Unicode name survives encode then decode, and encodes to printable ASCII."""
    encoded = encode_mailbox(name)
    assert all(0x20 <= ord(ch) <= 0x7E for ch in encoded)
    assert decode_mailbox(encoded) == name


@FUZZ
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_decoding_printable_ascii_never_returns_garbage(text: str) -> None:
    """Decoding fails with Utf7Error or gives a name that re-encodes to the same input."""
    try:
        name = decode_mailbox(text)
    except Utf7Error:
        return
    assert decode_mailbox(encode_mailbox(name)) == name
    if "-&" not in text:
        assert encode_mailbox(name) == text


@pytest.mark.parametrize("bad", [
    "&", "&AGE-", "&Jjo", "&Jj!-", "&2D3-", "&2D0-", "é", "a\x01b", "&AAk", "&A-",
    b"\xff".decode("latin-1"), "&ZeVnLIqe", "&,,,,-",
])
def test_invalid_input_raises_utf7_error(bad: str) -> None:
    """Unterminated runs, bad base64, shifted ASCII, lone surrogates and raw 8-bit are refused."""
    with pytest.raises(Utf7Error):
        decode_mailbox(bad)


def test_utf7_error_is_a_value_error_and_bytes_must_be_ascii() -> None:
    """Utf7Error subclasses ValueError; 8-bit bytes are refused rather than guessed."""
    assert issubclass(Utf7Error, ValueError)
    with pytest.raises(Utf7Error):
        decode_mailbox("Entwürfe".encode())


def test_lone_surrogate_cannot_be_encoded() -> None:
    """A name with an unpaired surrogate raises Utf7Error instead of UnicodeEncodeError."""
    with pytest.raises(Utf7Error):
        encode_mailbox("a\ud800b")


@pytest.mark.parametrize(("name", "quoted"), [
    ("INBOX", '"INBOX"'),
    ("Sent Items", '"Sent Items"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("Entwürfe", '"Entw&APw-rfe"'),
    ("line\r\nbreak", '"line&AA0ACg-break"'),
])
def test_quote_mailbox_gives_a_safe_quoted_string(name: str, quoted: str) -> None:
    """Mailbox arguments are quoted with escapes; CR/LF are shifted, never sent raw."""
    assert quote_mailbox(name) == quoted


@FUZZ
@given(st.text())
def test_quote_mailbox_never_contains_controls(name: str) -> None:
    """Whatever the name, the command argument is one printable quoted string."""
    quoted = quote_mailbox(name)
    assert quoted.startswith('"') and quoted.endswith('"')
    assert all(0x20 <= ord(ch) <= 0x7E for ch in quoted)


def test_quote_astring_uses_a_literal_for_8bit_or_line_breaks() -> None:
    """Values that cannot be quoted become literals ({n} or LITERAL+ {n+})."""
    assert quote_astring(b"plain") == b'"plain"'
    assert quote_astring(b"a\r\nb") == b"{4}\r\na\r\nb"
    assert quote_astring("é".encode(), non_sync=True) == b"{2+}\r\n\xc3\xa9"
