"""Raw messages to view models: headers, bodies, charsets, attachments, invitations."""

from __future__ import annotations

import base64
import encodings.aliases
import time
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import NotFound
from gateway.mail.mime import (
    Address,
    decode_bytes,
    decode_rfc2047,
    decode_rfc2231_params,
    parse_calendar,
    parse_date,
    parse_message,
    safe_filename,
)
from gateway.mail.mime import attachment_bytes as get_attachment


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


SIMPLE = crlf(
    'From: "Jürgen Example" <juergen@council.example>\n'
    "To: member@council.example, =?utf-8?q?Second_P=C3=A9rson?= <two@council.example>\n"
    "Cc: Clerk <clerk@council.example>\nReply-To: office@council.example\n"
    "Subject: =?utf-8?b?Q2Fmw6kg?= =?utf-8?q?budget?= meeting\n"
    "Date: Mon, 03 Mar 2025 10:04:00 +0100\nMessage-ID: <m1@council.example>\n"
    "In-Reply-To: <m0@council.example>\nReferences: <r1@x> <m0@council.example>\n"
    "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
    "Caf=C3=A9 at ten, see https://council.example/agenda=\n.\n")


def test_headers_and_plain_body_decode() -> None:
    """Addresses, RFC 2047 subject, aware date, ids and a quoted-printable body."""
    view = parse_message(SIMPLE)
    assert view.from_ == [Address("Jürgen Example", "juergen@council.example")]
    assert view.to == [Address("", "member@council.example"),
                       Address("Second Pérson", "two@council.example")]
    assert view.cc == [Address("Clerk", "clerk@council.example")]
    assert view.reply_to == [Address("", "office@council.example")]
    assert view.subject == "Café budget meeting"
    assert view.date == datetime(2025, 3, 3, 9, 4, tzinfo=UTC)
    assert (view.message_id, view.in_reply_to) == ("<m1@council.example>", "<m0@council.example>")
    assert view.references == ["<r1@x>", "<m0@council.example>"]
    assert view.text == "Café at ten, see https://council.example/agenda.\r\n"
    assert (view.html, view.attachments, view.calendar, view.notes) == (None, [], None, [])


def test_alternative_gives_text_and_html_and_base64_decodes() -> None:
    """multipart/alternative fills both text and html; base64 bodies decode."""
    html = base64.b64encode("<p>Grüße</p>".encode()).decode()
    raw = crlf('From: a@x.example\nContent-Type: multipart/alternative; boundary="b"\n\n'
               "--b\nContent-Type: text/plain; charset=iso-8859-1\n"
               "Content-Transfer-Encoding: quoted-printable\n\nGr=FC=DFe\n"
               f"--b\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n"
               f"\n{html}\n--b--\n")
    view = parse_message(raw)
    assert view.text == "Grüße"
    assert view.html == "<p>Grüße</p>"


@pytest.mark.parametrize("charset", ["x-unknown", "zlib", "hex", "base64", "idna", "undefined",
                                     '"utf-8"', ""])
def test_unknown_or_non_text_charsets_fall_back_without_error(charset: str) -> None:
    """An unknown charset, or a bytes-to-bytes codec named as one, falls back to UTF-8."""
    raw = crlf(f"From: a@x.example\nContent-Type: text/plain; charset={charset}\n\nGrüße\n")
    assert parse_message(raw).text == "Grüße\r\n"
    assert decode_bytes("Grüße".encode(), charset) == "Grüße"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(set(encodings.aliases.aliases.values()) | {"idna", "punycode"})),
       st.binary(max_size=64))
def test_decode_bytes_never_raises_for_any_codec(charset: str, data: bytes) -> None:
    """Whatever codec a message names and whatever its bytes, decoding gives text."""
    assert isinstance(decode_bytes(data, charset), str)


def test_decode_bytes_falls_back_to_windows_1252() -> None:
    """Bytes that are not UTF-8 decode as Windows-1252 instead of raising."""
    assert decode_bytes(b"caf\xe9 \x93quoted\x94", "utf-8") == "café “quoted”"


@pytest.mark.parametrize(("raw", "decoded"), [
    ("=?utf-8?q?a?= =?utf-8?q?b?=  c", "ab c"),
    ("=?utf-8?q?=E2=82?= =?utf-8?q?=AC?=", "€"),            # a character split across words
    ("=?iso-8859-1?q?caf=E9?=", "café"),
    ("=?UTF-8?B?w6k?=", "é"),                                # missing padding
    ("=?utf-8?b?!!!?= tail", "=?utf-8?b?!!!?= tail"),        # bad word kept, rest decoded
    ("=?x-unknown?q?abc?=", "abc"),
    ("=?utf-8?q?x=0D=0ABcc:_evil@x?=", "x Bcc: evil@x"),      # no line break survives
    ("a\u202eb\u2066c", "abc"),
])
def test_rfc2047_words(raw: str, decoded: str) -> None:
    """Encoded words decode per word, tolerate bad ones, and come out as one clean line."""
    assert decode_rfc2047(raw) == decoded


def test_rfc2231_parameters_join_and_decode() -> None:
    """Continuations join in order, percent-decode with the declared charset, win over plain."""
    assert decode_rfc2231_params([
        ("name", "plain.pdf"), ("NAME*1*", "%C3%A9.pdf"), ("name*0*", "utf-8'en'R"),
        ("size", "5")]) == {"name": "Ré.pdf", "size": "5"}
    assert decode_rfc2231_params([("filename*", "bogus''x%FF")])["filename"] == "xÿ"


def test_8bit_headers_and_encoded_crlf_in_addresses_do_not_raise() -> None:
    """Raw 8-bit headers decode; an encoded CR/LF in a name neither raises nor splits."""
    raw = (b"From: =?utf-8?q?x=0D=0ABcc:_evil@evil.example?= <attacker@evil.example>\r\n"
           b"To: J\xc3\xbcrgen <j@x.example>, \xe9t\xe9 <e@x.example>\r\n"
           b"Cc: a@b.example,\r\n\tnext@b.example\r\nSubject: caf\xc3\xa9\r\n\r\nbody\r\n")
    view = parse_message(raw)
    assert view.from_ == [Address("x Bcc: evil@evil.example", "attacker@evil.example")]
    assert view.to == [Address("Jürgen", "j@x.example"), Address("été", "e@x.example")]
    assert [a.email for a in view.cc] == ["a@b.example", "next@b.example"]
    assert view.subject == "café"


def test_missing_content_type_and_malformed_date() -> None:
    """No Content-Type means text/plain; a bad Date reads as None, a zone-less one as UTC."""
    view = parse_message(b"From: a@x.example\r\nDate: Mon, 99 Foo 99999\r\n\r\n<b>hi</b>\r\n")
    assert (view.text, view.html, view.date) == ("<b>hi</b>\r\n", None, None)
    assert parse_date("Mon, 3 Mar 2025 10:00:00 -0000") == datetime(2025, 3, 3, 10, tzinfo=UTC)


def test_huge_headers_are_bounded_and_quick() -> None:
    """300 KB headers full of encoded words parse in well under a second."""
    raw = crlf("Subject: " + "=?utf-8?q?a?= " * 30_000 + "\nTo: " + ", ".join(
        f"u{i}@x.example" for i in range(5000)) + "\n\nbody\n")
    started = time.perf_counter()
    view = parse_message(raw)
    assert time.perf_counter() - started < 1.0
    assert len(view.subject) < 20_000 and 0 < len(view.to) <= 1000


def nested(depth: int) -> bytes:
    opening = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n'
                      for i in range(depth))
    closing = "".join(f"--b{i}--\n" for i in reversed(range(depth)))
    return crlf("From: a@x.example\nSubject: deep\n" + opening
                + "Content-Type: text/plain\n\nbottom\n" + closing)


def test_deep_multipart_degrades_to_headers_with_a_note() -> None:
    """Nesting past Python's recursion limit shows headers and a note, not an error."""
    view = parse_message(nested(1200))
    assert view.subject == "deep" and view.text is None
    assert view.notes == ["This message is nested too deeply to show its contents."]


def test_nesting_beyond_the_walk_bound_is_not_shown() -> None:
    """Parts deeper than MAX_DEPTH are left out with a note; shallower ones still show."""
    assert parse_message(nested(10)).text == "bottom"   # the last CRLF belongs to the boundary
    view = parse_message(nested(60))
    assert view.text is None and "Parts nested too deeply are not shown." in view.notes


MIXED = crlf(
    'From: a@x.example\nContent-Type: multipart/mixed; boundary="m"\n\n'
    '--m\nContent-Type: multipart/related; boundary="r"\n\n'
    '--r\nContent-Type: text/html; charset=utf-8\n\n<img src="cid:logo@x">\n'
    "--r\nContent-Type: image/png\nContent-ID: <logo@x>\nContent-Transfer-Encoding: base64\n\n"
    "iVBORw0KGgo=\n--r--\n"
    "--m\nContent-Type: application/pdf; name=\"ignored.pdf\"\nContent-Disposition: attachment;"
    " filename*0*=utf-8''R%C3%A9port; filename*1=\" final.pdf\"\n"
    "Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK/wA=\n"
    "--m\nContent-Type: application/octet-stream\nContent-Disposition: attachment; "
    "filename=\"=?utf-8?q?invoice=E2=80=AEfdp.exe?=\"\n\nMZ\n"
    "--m\nContent-Type: message/rfc822\n\nFrom: inner@x.example\nSubject: Inner mail\n\nhello\n"
    "--m--\n")


def test_attachments_have_imap_part_numbers_safe_names_and_sizes() -> None:
    """Leaf parts are numbered as in BODYSTRUCTURE; names are decoded and made safe."""
    view = parse_message(MIXED)
    assert view.html == '<img src="cid:logo@x">'
    assert [(a.part_id, a.filename, a.content_type, a.size, a.content_id, a.inline)
            for a in view.attachments] == [
        ("1.2", "attachment.bin", "image/png", 8, "logo@x", True),
        ("2", "Réport final.pdf", "application/pdf", 11, None, False),
        ("3", "invoicefdp.exe", "application/octet-stream", 2, None, False),
        ("4", "Inner mail.eml", "message/rfc822", 51, None, False)]


def test_attachment_bytes_by_part_id() -> None:
    """One attachment's decoded bytes come back exactly; unknown or container ids are NotFound."""
    info, data = get_attachment(MIXED, "2")
    assert data == b"%PDF-1.4\n\xff\x00" and info.filename == "Réport final.pdf"
    inner = b"From: inner@x.example\r\nSubject: Inner mail\r\n\r\nhello"
    assert get_attachment(MIXED, "4")[1] == inner
    for missing in ("9", "1", "", "1.2.3"):
        with pytest.raises(NotFound):
            get_attachment(MIXED, missing)


@pytest.mark.parametrize(("name", "safe"), [
    ("../../etc/passwd", "passwd"),
    ("..\\..\\win.ini", "win.ini"),
    ("invoice\u202efdp.exe", "invoicefdp.exe"),
    ("\u200fa\u2066b\u200b.pdf", "ab.pdf"),
    (".bashrc", "bashrc"),
    ("...", "attachment.bin"),
    ("a\x00b\r\nc.txt", "abc.txt"),
    ('what?<x>|"y".doc', "what__x___y_.doc"),
    ("", "attachment.bin"),
    (None, "attachment.bin"),
])
def test_safe_filename(name: str | None, safe: str) -> None:
    """Paths, controls, bidi and zero-width characters, leading dots and reserved characters go."""
    assert safe_filename(name) == safe


def test_safe_filename_keeps_the_extension_when_shortening() -> None:
    """Long names are cut to the limit with their extension kept."""
    safe = safe_filename("A" * 1000 + ".pdf")
    assert len(safe) <= 120 and safe.endswith("A.pdf")


INVITE = (
    "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VTIMEZONE\r\nTZID:GMT Standard Time\r\n"
    "END:VTIMEZONE\r\nBEGIN:VEVENT\r\nUID:abc-123\r\nSUMMARY;LANGUAGE=en-GB:Budget\\, final\r\n"
    " ised\r\nDTSTART;TZID=GMT Standard Time:20250310T100000\r\nDTEND;TZID=\"Europe/London\":"
    "20250310T113000\r\nLOCATION:Room 2\\; Town Hall\r\nORGANIZER;CN=\"Clerk, The\":mailto:"
    "clerk@council.example\r\nATTENDEE;CN=Member;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:"
    "member@council.example\r\nATTENDEE:MAILTO:two@council.example\r\nBEGIN:VALARM\r\n"
    "SUMMARY:alarm\r\nEND:VALARM\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def test_calendar_invitation_summary() -> None:
    """Method, unfolded and unescaped text, zoned times, organizer and attendees."""
    invite = parse_calendar(INVITE)
    assert invite is not None
    assert (invite.method, invite.uid, invite.summary, invite.location) == (
        "REQUEST", "abc-123", "Budget, finalised", "Room 2; Town Hall")
    london = ZoneInfo("Europe/London")
    assert invite.start == datetime(2025, 3, 10, 10, 0, tzinfo=london)
    assert invite.end == datetime(2025, 3, 10, 11, 30, tzinfo=london)
    assert invite.organizer == Address("Clerk, The", "clerk@council.example")
    assert [(a.name, a.email, a.status) for a in invite.attendees] == [
        ("Member", "member@council.example", "needs-action"),
        ("", "two@council.example", None)]


def test_calendar_all_day_unknown_zone_and_no_event() -> None:
    """All-day dates, unknown zones (naive) and calendars without an event."""
    invite = parse_calendar("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20250310\n"
                            "DTEND;TZID=Mars/Olympus:20250311T090000\nDTSTAMP:bad\n"
                            "END:VEVENT\nEND:VCALENDAR\n")
    assert invite is not None
    assert invite.start == date(2025, 3, 10)
    assert invite.end == datetime(2025, 3, 11, 9)
    assert parse_calendar("BEGIN:VCALENDAR\nEND:VCALENDAR\n") is None
    assert parse_calendar("garbage" * 1000) is None


def test_calendar_part_in_a_message() -> None:
    """A text/calendar alternative becomes view.calendar and is not listed as an attachment."""
    raw = crlf('From: a@x.example\nContent-Type: multipart/alternative; boundary="b"\n\n'
               "--b\nContent-Type: text/plain\n\nInvite\n--b\nContent-Type: text/calendar; "
               "method=REQUEST\n\n") + INVITE.encode() + b"--b--\r\n"
    view = parse_message(raw)
    assert view.calendar is not None and view.calendar.uid == "abc-123"
    assert view.attachments == [] and view.text == "Invite"
