"""Streaming an attachment: decoding that accepts arbitrary chunk boundaries."""

import base64
import quopri

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mail.parts import _Decoder


def feed_in_pieces(enc: str, data: bytes, cuts: list[int]) -> bytes:
    d = _Decoder(enc)
    out, last = b"", 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        out += d.feed(data[last:cut])
        last = cut
    return out + d.finish()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0), max_size=8))
def test_base64_any_chunking(payload: bytes, cuts: list[int]) -> None:
    """Base64 with line breaks decodes the same however the stream is cut."""
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    assert feed_in_pieces("base64", encoded, cuts) == payload


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0), max_size=8))
def test_quoted_printable_any_chunking(payload: bytes, cuts: list[int]) -> None:
    """Quoted-printable decodes the same however the stream is cut."""
    encoded = quopri.encodestring(payload)
    assert feed_in_pieces("quoted-printable", encoded, cuts) == quopri.decodestring(encoded)


def test_binary_passes_through() -> None:
    """7bit/8bit/binary parts are passed on unchanged."""
    assert feed_in_pieces("8bit", b"abc\x00\xff", [2]) == b"abc\x00\xff"
