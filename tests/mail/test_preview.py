"""The preview line (issue 13 item 8): the part chosen from BODYSTRUCTURE, and bytes cut at
a fixed length decoded properly whatever the transfer encoding, charset or markup."""

from __future__ import annotations

import base64
import quopri

from gateway.mail.imap_fetch import BodyPart
from gateway.mail.preview import (
    HTML_BYTES,
    TEXT_BYTES,
    fetch_size,
    html_text,
    preview_part,
    preview_text,
)


def text(part_id: str, subtype: str = "plain", **kw: object) -> BodyPart:
    return BodyPart(part_id, "text", subtype, **kw)  # type: ignore[arg-type]


def test_plain_part_is_chosen_over_html_and_never_an_attachment() -> None:
    root = BodyPart("", "multipart", "mixed", children=[
        BodyPart("1", "multipart", "alternative", children=[text("1.1", "html"),
                                                            text("1.2")]),
        text("2", filename="notes.txt", disposition="attachment"),
    ])
    chosen = preview_part(root)
    assert chosen is not None and chosen.part_id == "1.2"
    assert fetch_size(chosen) == TEXT_BYTES


def test_html_only_message_uses_its_html_part_with_a_larger_bound() -> None:
    root = BodyPart("", "multipart", "related", children=[
        text("1", "html"), BodyPart("2", "image", "png", id="<logo>")])
    chosen = preview_part(root)
    assert chosen is not None and chosen.part_id == "1"
    assert fetch_size(chosen) == HTML_BYTES


def test_attached_message_text_is_not_the_preview() -> None:
    inner = BodyPart("2", "message", "rfc822", children=[text("2.1")])
    root = BodyPart("", "multipart", "mixed", children=[
        BodyPart("1", "image", "jpeg", filename="a.jpg"), inner])
    assert preview_part(root) is None
    assert preview_part(None) is None


def test_base64_cut_mid_group_and_mid_character_decodes_cleanly() -> None:
    body = ("Cyfarfod y pwyllgor ddydd Iau — agenda ynghlwm. " * 20).encode("utf-8")
    encoded = base64.encodebytes(body)
    for cut in range(200, 240):  # every cut position within a few 4-byte groups
        line = preview_text(encoded[:cut], text("1", encoding="base64",
                                                params={"charset": "utf-8"}))
        assert line.startswith("Cyfarfod y pwyllgor ddydd Iau — agenda ynghlwm.")
        assert "\ufffd" not in line and "â€" not in line


def test_base64_part_shorter_than_the_cut_keeps_its_last_characters() -> None:
    """A whole part whose encoding ends in "=" or "==" padding: its last group is
    decoded too, so the line ends with the message's own last characters."""
    part = text("1", encoding="base64", params={"charset": "utf-8"})
    for body in ("Ward surgery at the library, 10am.\n", "Surgery at 10am.\n",
                 "Surgery at 10am!\n", "Diolch yn fawr — Siân\n", "Surgery at 10am..\n"):
        for encoded in (base64.encodebytes(body.encode()), base64.b64encode(body.encode())):
            assert preview_text(encoded, part) == body.strip()


def test_quoted_printable_cut_inside_an_escape() -> None:
    body = "Café meeting moved to Thursday, 14:00 in the Siambr. " * 4
    encoded = quopri.encodestring(body.encode("latin-1"))
    part = text("1", encoding="quoted-printable", params={"charset": "iso-8859-1"})
    for cut in range(1, 60):
        line = preview_text(encoded[:cut], part)
        assert "=" not in line and "\ufffd" not in line
    assert preview_text(encoded, part).startswith("Café meeting moved to Thursday, 14:00")


def test_long_text_is_cut_near_100_characters_on_a_word() -> None:
    line = preview_text(("word " * 60).encode(), text("1"))
    assert line.endswith("…") and len(line) <= 101
    assert not line[:-1].endswith(" ")


def test_quoted_lines_and_blank_lines_are_left_out() -> None:
    raw = b"\r\n\r\nSee you there.\r\n\r\n> On Monday the clerk wrote:\r\n> old text\r\n"
    assert preview_text(raw, text("1")) == "See you there."


def test_html_reduced_to_text_without_head_style_or_script() -> None:
    html = ("<html><head><title>T</title><style>p{color:red}</style></head><body>"
            "<script>alert(1)</script><p>Dear&nbsp;Alex,</p><p>The <b>agenda</b> is "
            "attached.</p><img src=x onerror=alert(2)><p>Unfinished <a href=\"http://ev")
    line = preview_text(html.encode(), text("1", "html"))
    assert line == "Dear Alex, The agenda is attached. Unfinished"
    assert "alert" not in line and "<" not in line and "color" not in line


def test_hostile_text_stays_text_for_the_template_to_escape() -> None:
    raw = "<script>alert(1)</script>\u202eevil\x07".encode()
    line = preview_text(raw, text("1"))
    assert "\u202e" not in line and "\x07" not in line
    assert line.startswith("<script>")  # escaped by the template, shown as typed


def test_unknown_charset_falls_back_without_raising() -> None:
    assert preview_text("Helô".encode(), text("1", params={"charset": "x-nonsense"})) == "Helô"
    assert preview_text(b"", text("1")) == ""
    assert html_text("<p>a<p>b") == " a b"


def test_a_hostile_charset_naming_a_bytes_codec_is_not_used() -> None:
    for charset in ("zlib", "base64", "rot13", "hex", "bz2", "x" * 500):
        line = preview_text(b"Plain words here.", text("1", params={"charset": charset}))
        assert line == "Plain words here.", charset
