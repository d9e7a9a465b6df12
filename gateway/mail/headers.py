"""Reading mail headers, which are hostile input: RFC 2047 encoded words, RFC 2231
parameters, charsets with fallback, dates, and filenames made safe to offer
for download. Shared by the message parser (``gateway.mail.mime``) and the IMAP response
parsers (``gateway.mail.imap_fetch``, ``gateway.mail.imap_mailboxes``). Everything degrades
instead of raising.
Address lists are read by ``gateway.mail.addresses``.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.header
import email.parser
import email.policy
import email.utils
import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

MAX_HEADER_CHARS = 16_384      # decoding cost of RFC 2047 words grows fast on hostile input


_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
# Embedding, override and isolate controls reorder what the reader sees (U+202E turns
# "invoice\u202efdp.exe" into "invoiceexe.pdf"); marks are harmless but go too.
_BIDI = re.compile(r"[\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")
# What either of the two takes out: text without any is only collapsed.
_UNCLEAN = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")


@dataclass(frozen=True, slots=True)
class Address:
    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email



def clean_text(value: str) -> str:
    """One line of display text: controls and bidi overrides out, whitespace collapsed."""
    if (value.isascii() and value.isprintable()) or not _UNCLEAN.search(value):
        return " ".join(value.split())   # the common case: nothing to take out
    return " ".join(_BIDI.sub("", _CONTROLS.sub(" ", value)).split())


def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    # Looked up for every string of every message: cached, but only for names short enough
    # to be real charsets, so hostile input cannot fill the cache with large keys.
    return _codec_cached(charset) if len(charset) <= 64 else _codec_lookup(charset)


@functools.lru_cache(maxsize=256)
def _codec_cached(charset: str) -> str | None:
    return _codec_lookup(charset)


def _codec_lookup(charset: str) -> str | None:
    name = charset.strip().strip("\"'").lower()
    name = {"iso-8859-8-i": "iso-8859-8", "gb2312": "gb18030", "x-gbk": "gb18030"}.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    # "base64", "zlib", "hex" are codecs too, but bytes-to-bytes ones: not a charset.
    return info.name if getattr(info, "_is_text_encoding", True) else None


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset; fall back to UTF-8, then Windows-1252, never raise."""
    codec = _codec(charset)
    for name in (codec, "utf-8"):
        if name:
            try:
                return data.decode(name)
            except (ValueError, LookupError):  # UnicodeError is a ValueError
                continue
    return data.decode("cp1252", errors="replace")


def unsurrogate(value: str) -> str:
    # compat32 keeps 8-bit header octets as surrogate escapes. Decode each run on its own:
    # one header may mix UTF-8 and Latin-1 names.
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    return re.sub("[\udc80-\udcff]+", lambda m: decode_bytes(
        m.group().encode("utf-8", "surrogateescape"), "utf-8"), value)


# An RFC 2047 encoded word. Charset may carry a language ("utf-8*en"); the text holds no
# spaces or "?". Matching is linear: no part can overlap the next.
_EWORD = ENCODED_WORD = re.compile(r"=\?([^?\s]{1,64})\?([qQbB])\?([^?\s]*)\?=")


def decode_rfc2047(value: str) -> str:
    """Decode RFC 2047 encoded words and return clean one-line text (never raises).

    Our own loop rather than email.header.decode_header, which gives up on the whole header
    when one word is bad base64. Adjacent words of one charset are joined before decoding,
    since mailers split multi-byte characters across words."""
    value = value[:MAX_HEADER_CHARS]
    if not value.isascii():
        value = unsurrogate(value)
    if "=?" not in value:   # no encoded word: nothing to decode
        return clean_text(value)
    out: list[str] = []
    pending: tuple[str, bytearray] | None = None
    pos = 0
    for match in _EWORD.finditer(value):
        between = value[pos:match.start()]
        charset = match.group(1).split("*", 1)[0].lower()
        data = _word_bytes(match.group(2).lower(), match.group(3))
        if data is None:   # undecodable: keep the word as it was written
            between, data, charset = between + match.group(), bytearray(), ""
        if pending and (between.strip() or charset != pending[0]):
            out.append(decode_bytes(bytes(pending[1]), pending[0]))
            pending = None
        if pending is None or between.strip():
            out.append(between)
        if pending is None:
            pending = (charset, bytearray())
        pending[1].extend(data)
        pos = match.end()
    if pending:
        out.append(decode_bytes(bytes(pending[1]), pending[0]))
    out.append(value[pos:])
    return clean_text("".join(out))


def _word_bytes(encoding: str, text: str) -> bytearray | None:
    if encoding == "q":
        raw = text.replace("_", " ").encode("ascii", "replace")
        return bytearray(re.sub(rb"=([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw))
    try:
        return bytearray(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
    except (binascii.Error, ValueError):
        return None


def decode_rfc2231_params(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Join RFC 2231 continuations (name*0*=utf-8''a%20b; name*1*=...) into one value each.

    Keys come back lower-case. An encoded value wins over a plain one of the same name.
    """
    plain: dict[str, str] = {}
    pieces: dict[str, dict[int, tuple[str, bool]]] = {}
    for key, value in pairs:
        key = key.strip().lower()
        match = re.fullmatch(r"([^*]+)\*(\d{1,3})?(\*?)", key)
        if match is None:
            plain.setdefault(key, value)
        elif match.group(2) is None:
            pieces.setdefault(match.group(1), {})[0] = (value, True)
        else:
            index = int(match.group(2))
            pieces.setdefault(match.group(1), {})[index] = (value, bool(match.group(3)))
    for base, segments in pieces.items():
        charset = None
        buf = bytearray()
        index = 0
        while index in segments:
            text, encoded = segments[index]
            if encoded:
                if index == 0 and text.count("'") >= 2:
                    charset, _lang, text = text.split("'", 2)
                buf += _percent_decode(text)
            else:
                buf += text.encode("utf-8", "surrogateescape")
            index += 1
        if index:
            plain[base] = decode_bytes(bytes(buf), charset or "utf-8")
    return plain


def _percent_decode(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogateescape")
    return re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw)


_ZONES: dict[str, timezone] = {}   # "+0100" -> its zone; few exist, bounded all the same
_MONTH_NUMBERS = {m: i for i, m in enumerate(
    "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
_RFC5322_DATE = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?(\d{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|"
    r"Nov|Dec) ([1-9]\d{3}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})")


def parse_date(value: str | None) -> datetime | None:
    """RFC 5322 date -> aware datetime (UTC when the zone is unknown), or None."""
    if not value:
        return None
    if match := _RFC5322_DATE.fullmatch(value):
        # The usual "Wed, 04 Nov 2026 03:30:04 +0000", read as parsedate_to_datetime reads
        # it (-0000 means "zone unknown": UTC; an odd offset such as +0160 is 1 h + 60 min
        # there too), and None where that raises. Anything else takes the general path.
        day, month, year, hour, minute, second, sign, tzh, tzm = match.groups()
        try:
            zone = _ZONES.get(sign + tzh + tzm)
            if zone is None:
                seconds = int(tzh) * 3600 + int(tzm) * 60
                zone = UTC if sign == "-" and not seconds else timezone(
                    timedelta(seconds=-seconds if sign == "-" else seconds))
                if len(_ZONES) < 512:
                    _ZONES[sign + tzh + tzm] = zone
            return datetime(int(year), _MONTH_NUMBERS[month], int(day), int(hour), int(minute),
                            int(second), tzinfo=zone)
        except (ValueError, OverflowError):
            return None
    try:
        parsed = email.utils.parsedate_to_datetime(clean_text(value[:200]))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def safe_filename(name: str | None, fallback: str = "attachment.bin", limit: int = 120) -> str:
    """A filename fit to offer for download: no path, controls, bidi tricks or leading dots;
    the extension kept when the name must be shortened."""
    if not name:
        return fallback
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")  # Cc Cf Cs Co Cn
    name = re.sub(r'[<>:"|?*]', "_", name)
    # No ".." anywhere: some unpackers and download managers still read it as "go up".
    name = re.sub(r"\.{2,}", ".", name).strip(" .")
    if not name:
        return fallback
    if len(name) > limit:
        _stem, dot, ext = name.rpartition(".")
        ext = ext if dot and 0 < len(ext) <= 16 else ""
        name = name[: limit - len(ext) - 1].rstrip(" .") + ("." + ext if ext else "")
    return name or fallback
