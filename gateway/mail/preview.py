"""The preview line under a message in the list (issue 13 item 8): which body part to read
a little of (found from BODYSTRUCTURE, so the whole message is never fetched), how many
bytes of it, and how to turn those bytes into one short line of plain text.

The bytes are a cut-off prefix of the part, so every decoding step copes with a cut in the
middle: base64 is decoded up to the last whole 4-character group, a quoted-printable escape
cut short is dropped, a multi-byte character cut short is held back, and HTML is reduced to
its text with unfinished tags left out. The result is plain text; templates escape it.
"""

from __future__ import annotations

import binascii
import codecs
import re
from html.parser import HTMLParser

from gateway.mail.headers import _codec, clean_text, decode_bytes
from gateway.mail.imap_fetch import BodyPart, FetchData

PREVIEW_CHARS = 100
# Enough bytes for ~100 characters of text after base64 (4/3) and UTF-8 (up to 3 bytes for
# a Welsh or accented letter); HTML needs more, since markup and styles come first.
TEXT_BYTES = 512
HTML_BYTES = 2048
_B64 = re.compile(rb"[^A-Za-z0-9+/]")
# A quoted line ("> ...") or an attribution line is not what the message says.
_QUOTED = re.compile(r"^\s*>")


def preview_part(root: BodyPart | None) -> BodyPart | None:
    """The first plain-text body part, else the first HTML one; never an attachment and
    never inside an attached message."""
    if root is None:
        return None
    found: dict[str, BodyPart] = {}
    stack = [root]
    while stack:
        part = stack.pop()
        if part.type == "multipart":
            stack.extend(reversed(part.children))
            continue
        if part.type != "text" or part.is_attachment or part.filename:
            continue
        if part.subtype in ("plain", "html") and part.subtype not in found:
            found[part.subtype] = part
    return found.get("plain") or found.get("html")


def fetch_size(part: BodyPart) -> int:
    """How many bytes of ``part`` to fetch (``BODY.PEEK[id]<0.n>``)."""
    return HTML_BYTES if part.subtype == "html" else TEXT_BYTES


# Asked together with a page's summaries (mailbox.PAGE_ITEMS), before the BODYSTRUCTURE
# that says which part to preview is known: part 1 is the plain text of a text/plain
# message and of a multipart/alternative one whose plain part comes first, which is most
# council mail, so most pages need no second round trip for their preview lines. Part 1 of
# any other shape is the wrong part or an attachment's start: 512 bytes wasted, and its
# preview part is fetched on its own as before.
ASKED_FIRST = f"BODY.PEEK[1]<0.{TEXT_BYTES}>"
# How servers name it in the answer: RFC 3501 6.4.5 gives "BODY[1]<0>", with the origin;
# "BODY[1]" is accepted too, from a server that leaves it out.
_ANSWERED_FIRST = ("BODY[1]<0>", "BODY[1]")
# spec ("BODY.PEEK[1.1]<0.512>") -> [(uid, part)]: one FETCH each.
PartFetches = dict[str, list[tuple[int, BodyPart]]]


def plan(items: list[FetchData]) -> tuple[dict[int, str], PartFetches]:
    """The preview lines these FETCH answers already give (UID -> line), and the partial
    fetches still needed for the rest, grouped by part and size: mail from one source
    shares a shape, so a page of fifty needs none to three."""
    done: dict[int, str] = {}
    fetches: PartFetches = {}
    for item in items:
        part = None if item.unreadable else preview_part(item.bodystructure)
        if part is None or not item.uid:
            continue
        if part.part_id == "1" and fetch_size(part) == TEXT_BYTES:
            data = next((item.sections[k] for k in _ANSWERED_FIRST
                         if item.sections.get(k) is not None), None)
            if data is not None:
                done[item.uid] = line_of(data, part)
                continue
        spec = f"BODY.PEEK[{part.part_id}]<0.{fetch_size(part)}>"
        fetches.setdefault(spec, []).append((item.uid, part))
    return done, fetches


def line_of(data: bytes | None, part: BodyPart) -> str:
    """preview_text, or "" when the part's bytes defeat it: one odd message costs only its
    preview line, never the page."""
    try:
        return preview_text(data, part)
    except Exception:  # noqa: BLE001 - see above
        return ""


def _transfer_decode(data: bytes, encoding: str | None) -> bytes:
    enc = (encoding or "").lower()
    if enc == "base64":
        head, padded, _ = data.partition(b"=")
        clean = _B64.sub(b"", head)
        if padded and len(clean) % 4 > 1:
            # "=" ends the encoded text: its last group is whole, with its padding put
            # back (dropping it, as for a cut group, lost the part's last one or two bytes).
            clean += b"=" * (-len(clean) % 4)
        else:
            clean = clean[: len(clean) // 4 * 4]
        try:
            return binascii.a2b_base64(clean)
        except binascii.Error:
            return b""
    if enc == "quoted-printable":
        # An escape cut by the byte limit ("=" or "=4") at the very end: drop it.
        tail = data[-2:]
        if tail.endswith(b"="):
            data = data[:-1]
        elif len(tail) == 2 and tail[0:1] == b"=":
            data = data[:-2]
        try:
            return binascii.a2b_qp(data)
        except (binascii.Error, ValueError):
            return data
    return data


def _charset_decode(data: bytes, charset: str | None) -> str:
    # An incremental decoder that is not told the input has ended holds back a character
    # cut in two, instead of turning it into a replacement mark.
    # Only real text encodings: "zlib", "base64" or "rot13" are codecs too, and a hostile
    # message may name one (see headers._codec_lookup).
    name = _codec(charset) or "utf-8"
    try:
        decoder = codecs.getincrementaldecoder(name)(errors="strict")
        text = decoder.decode(data, final=False)
    except Exception:  # noqa: BLE001 - any codec failure: the forgiving decoder below
        return decode_bytes(data, charset)
    return text if isinstance(text, str) else decode_bytes(data, charset)


class _TextOf(HTMLParser):
    """Text of an HTML prefix: no head, style, script or comments; block ends as spaces."""

    SKIP = {"head", "style", "script", "title", "template", "noscript", "svg"}
    BREAKS = {"p", "div", "br", "li", "tr", "td", "h1", "h2", "h3", "h4", "h5", "h6",
              "blockquote", "table", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BREAKS:
            self.out.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1
        elif tag in self.BREAKS:
            self.out.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(data)


def html_text(markup: str) -> str:
    parser = _TextOf()
    try:
        parser.feed(markup)
    except (AssertionError, ValueError):  # malformed markup: keep what was read
        pass
    # close() is not called: an unfinished tag at the cut stays out of the text.
    return "".join(parser.out)


def preview_text(data: bytes | None, part: BodyPart, limit: int = PREVIEW_CHARS) -> str:
    """One line of at most ``limit`` characters (plus "…") from the start of ``part``."""
    if not data:
        return ""
    text = _charset_decode(_transfer_decode(data, part.encoding), part.params.get("charset"))
    if part.subtype == "html":
        text = html_text(text)
    lines = [ln for ln in text.splitlines() if ln.strip() and not _QUOTED.match(ln)]
    line = clean_text(" ".join(lines))
    if len(line) <= limit:
        return line
    cut = line[:limit]
    space = cut.rfind(" ")
    if space > limit * 2 // 3:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + "…"
