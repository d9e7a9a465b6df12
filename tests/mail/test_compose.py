"""Recipient checking, message building, replies and forwards; no header injection."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest

from gateway.errors import BadRequest, PayloadTooLarge
from gateway.mail.compose import (
    BuiltMessage,
    build_message,
    forward_fields,
    parse_address_list,
    reply_fields,
)
from gateway.mail.mime import Address, MessageView, attachment_bytes, parse_message
from tests.mail.hostile_corpus import hostile_messages

ME = Address("Councillor Me", "me@council.example")
CORPUS = hostile_messages()
ALLOWED_HEADERS = {"from", "to", "cc", "subject", "date", "message-id", "in-reply-to",
                   "references", "mime-version", "content-type", "content-transfer-encoding"}


def header_names(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0].lower() for line in head.split("\r\n") if line[:1] not in " \t"]


def build(**kwargs: object) -> BuiltMessage:
    values: dict[str, object] = {"from_addr": ME, "to": [Address("A", "a@x.example")],
                                 "subject": "Hello", "text_body": "Hi",
                                 "message_id_domain": "council.example"}
    values.update(kwargs)
    return build_message(**values)  # type: ignore[arg-type]


# ---- parse_address_list -----------------------------------------------------------------

def test_address_lists_accept_names_commas_semicolons_and_dedupe() -> None:
    """Quoted names with commas, both separators, IDN domains, case-insensitive dedupe."""
    assert parse_address_list('"Smith, Jo" <jo@Council.Example>; b@x.example,\tJO@council.example,'
                              " c@münchen.example, ") == [
        Address("Smith, Jo", "jo@council.example"), Address("", "b@x.example"),
        Address("", "c@xn--mnchen-3ya.example")]
    assert parse_address_list("  ") == []
    assert parse_address_list('"Q \\"x\\"" <q@x.example>') == [Address('Q "x"', "q@x.example")]


@pytest.mark.parametrize(("text", "named"), [
    ("a@b", '"a@b"'),
    ("nobody", '"nobody"'),
    ("ok@x.example, x <a@@b.example>", '"x <a@@b.example>"'),
    ("a@-bad-.example", '"a@-bad-.example"'),
    ("a@b.123", '"a@b.123"'),
    ('"quoted"@x.example', '""quoted"@x.example"'),
    ("a b@x.example", '"a b@x.example"'),
    ("a@b.example\r\nBcc: evil@x.example", "line break"),
    ("a@b.example\x00", "control character"),
])
def test_bad_addresses_are_named_in_the_error(text: str, named: str) -> None:
    """Each refusal is a BadRequest whose message names the bad address or the reason."""
    with pytest.raises(BadRequest) as caught:
        parse_address_list(text)
    assert named in caught.value.message


def test_too_many_recipients() -> None:
    """More than the recipient bound is refused with a clear message."""
    with pytest.raises(BadRequest, match="at most"):
        parse_address_list(", ".join(f"u{i}@x.example" for i in range(501)))


# ---- build_message ----------------------------------------------------------------------

def test_message_headers_bcc_only_in_envelope() -> None:
    """From/To/Cc/Subject/Date/Message-ID are set; Bcc is in the envelope, not the headers."""
    built = build(cc=[Address("", "c@x.example")], bcc=[Address("Secret", "s@x.example"),
                                                         Address("", "a@x.example")],
                  date=datetime(2025, 3, 3, 10, 4, tzinfo=UTC))
    assert built.recipients == ["a@x.example", "c@x.example", "s@x.example"]
    names = header_names(built.data)
    assert set(names) <= ALLOWED_HEADERS
    assert b"s@x.example" not in built.data and b"Secret" not in built.data
    msg = email.message_from_bytes(built.data, policy=email.policy.default)
    assert (msg["From"], msg["To"], msg["Cc"]) == (
        "Councillor Me <me@council.example>", "A <a@x.example>", "c@x.example")
    assert msg["Date"] == "Mon, 03 Mar 2025 10:04:00 +0000"
    assert msg["Message-ID"] == built.message_id and built.message_id.endswith(
        "@council.example>")
    assert b"\r\n" in built.data and b"\n" not in built.data.replace(b"\r\n", b"")


def test_subject_is_one_line_and_utf8() -> None:
    """CR/LF in a subject never starts a header; non-ASCII survives encoding."""
    built = build(subject="Café\r\nBcc: evil@x.example\n", to=[Address("Jürgen\r\nX: y",
                                                                      "j@x.example")])
    assert "bcc" not in header_names(built.data) and "x" not in header_names(built.data)
    msg = email.message_from_bytes(built.data, policy=email.policy.default)
    assert msg["Subject"] == "Café Bcc: evil@x.example"
    assert msg["To"] == '"Jürgen X: y" <j@x.example>'


def test_bodies_and_attachments_round_trip_byte_for_byte() -> None:
    """Text and HTML alternatives and attachments (every byte value) come back identical."""
    blob = bytes(range(256)) * 40
    built = build(text_body="Grüße\r\nline", html_body="<p>Grüße</p>",
                  attachments=[("report.pdf", "application/pdf", blob),
                                ("../evil\u202egpj.exe", "text/plain", b"\x00\xff\r\n"),
                                ("fwd.eml", "message/rfc822", b"From: x\r\n\r\nhi"),
                                ("odd", "not a type", b"z")])
    view = parse_message(built.data)
    assert view.text == "Grüße\r\nline\r\n" and view.html == "<p>Grüße</p>\r\n"
    assert [(a.filename, a.content_type) for a in view.attachments] == [
        ("report.pdf", "application/pdf"), ("evilgpj.exe", "text/plain"),
        ("fwd.eml", "application/octet-stream"), ("odd", "application/octet-stream")]
    datas = [attachment_bytes(built.data, a.part_id)[1] for a in view.attachments]
    assert datas == [blob, b"\x00\xff\r\n", b"From: x\r\n\r\nhi", b"z"]


def test_threading_headers_only_take_valid_ids() -> None:
    """In-Reply-To and References carry well-formed ids; injected text is dropped."""
    built = build(in_reply_to="<p@x.example>", references=["<r@x.example>", "bad\r\nBcc: e@x",
                                                           "<p@x.example>", "<r@x.example>"])
    msg = email.message_from_bytes(built.data, policy=email.policy.default)
    assert msg["In-Reply-To"] == "<p@x.example>"
    assert msg["References"] == "<r@x.example> <p@x.example>"
    assert "In-Reply-To" not in email.message_from_bytes(build(in_reply_to="x\r\nBcc: y").data)


def test_no_recipients_bad_sender_and_size_limit() -> None:
    """No recipient or an invalid address is a BadRequest; oversized is PayloadTooLarge."""
    with pytest.raises(BadRequest, match="at least one"):
        build(to=[])
    with pytest.raises(BadRequest, match="not a valid"):
        build(bcc=[Address("", "not-an-address")])
    with pytest.raises(PayloadTooLarge):
        build(attachments=[("big.bin", "application/octet-stream", b"x" * 10_000)],
              max_bytes=5_000)


def test_a_draft_may_have_no_recipients() -> None:
    """With require_recipients=False (drafts) a message builds with an empty envelope."""
    built = build(to=[], require_recipients=False)
    assert built.recipients == [] and "to" not in header_names(built.data)


# ---- replies and forwards ---------------------------------------------------------------

ORIGINAL = MessageView(
    from_=[Address("Jo Smith", "jo@x.example")], reply_to=[Address("", "office@x.example")],
    to=[Address("", "me@council.example"), Address("B", "b@x.example")],
    cc=[Address("", "ME@council.example"), Address("", "c@x.example"),
        Address("", "b@x.example"), Address("", "undisclosed-recipients:;")],
    date=datetime(2025, 3, 3, 10, 4, tzinfo=UTC), subject="Budget",
    message_id="<m2@x.example>", references=["<m0@x.example>", "<m1@x.example>"],
    text="Line one\n\nLine three")


def test_reply_uses_reply_to_and_quotes() -> None:
    """A reply goes to Reply-To, prefixes Re: once, threads and quotes with '> '."""
    reply = reply_fields(ORIGINAL, "me@council.example", reply_all=False)
    assert (reply.to, reply.cc) == ([Address("", "office@x.example")], [])
    assert reply.subject == "Re: Budget"
    assert (reply.in_reply_to, reply.references) == (
        "<m2@x.example>", ["<m0@x.example>", "<m1@x.example>", "<m2@x.example>"])
    assert reply.quoted_text == ("On Mon 3 Mar 2025 at 10:04, Jo Smith wrote:\n"
                                 "> Line one\n> \n> Line three\n")
    again = MessageView(subject="RE: Budget", from_=[Address("", "jo@x.example")])
    assert reply_fields(again, "me@council.example", False).subject == "RE: Budget"


def test_reply_all_excludes_me_and_dedupes() -> None:
    """Reply-all copies To and Cc without me, without duplicates, without non-addresses."""
    reply = reply_fields(ORIGINAL, "Me@Council.Example", reply_all=True)
    assert reply.to == [Address("", "office@x.example")]
    assert reply.cc == [Address("B", "b@x.example"), Address("", "c@x.example")]


def test_reply_to_my_own_message_goes_to_its_recipients() -> None:
    """Replying to a message I sent addresses its To, not myself."""
    mine = MessageView(from_=[Address("", "me@council.example")],
                       to=[Address("", "jo@x.example")], subject="Hi", html="<p>hello</p>")
    reply = reply_fields(mine, "me@council.example", reply_all=False)
    assert reply.to == [Address("", "jo@x.example")]
    assert reply.quoted_text == "Unknown sender wrote:\n> hello\n".replace(
        "Unknown sender", "me@council.example")


def test_forward_fields() -> None:
    """Fw: prefix once, and a header block naming From, Date, Subject, To and Cc."""
    forward = forward_fields(ORIGINAL)
    assert forward.subject == "Fw: Budget"
    assert forward.header_block.splitlines()[:3] == [
        "---------- Forwarded message ----------", "From: Jo Smith <jo@x.example>",
        "Date: Mon 3 Mar 2025 at 10:04"]
    assert forward.quoted_text.endswith("Line one\n\nLine three\n")
    assert forward_fields(MessageView(subject="Fwd: x")).subject == "Fwd: x"


def test_forward_of_encoded_crlf_headers_injects_nothing() -> None:
    """Forwarding/replying to headers hiding CR/LF (=?utf-8?q?x=0D=0ABcc:..?=) injects nothing."""
    raw = (b"From: =?utf-8?q?x=0D=0ABcc:_evil@evil.example?= <attacker@evil.example>\r\n"
           b"To: me@council.example\r\nSubject: =?utf-8?q?hi=0D=0ABcc:_evil2@evil.example?=\r\n"
           b"Message-ID: <a@evil.example>\r\n"
           b"References: =?utf-8?q?=0D=0ABcc:_z@e?= <r@e.example>\r\n"
           b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain'
           b'\r\n\r\nsee\r\n--B\r\nContent-Type: application/pdf; '
           b'name="=?utf-8?q?a=0D=0AX:_y.pdf?="\r\n'
           b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK/wAB\r\n--B--\r\n")
    original = parse_message(raw)
    forward = forward_fields(original)
    files = [attachment_bytes(raw, a.part_id) for a in original.attachments]
    built = build(to=[Address("", "b@x.example")], subject=forward.subject,
                  text_body=forward.quoted_text,
                  attachments=[(i.filename, i.content_type, d) for i, d in files])
    assert set(header_names(built.data)) <= ALLOWED_HEADERS
    msg = email.message_from_bytes(built.data, policy=email.policy.default)
    assert "bcc" not in {k.lower() for k in msg.keys()}
    out = parse_message(built.data)
    assert [attachment_bytes(built.data, a.part_id)[1] for a in out.attachments] == [
        b"%PDF-1.4\n\xff\x00\x01"]
    reply = reply_fields(original, "me@council.example", reply_all=True)
    built = build(to=reply.to, cc=reply.cc, subject=reply.subject, text_body=reply.quoted_text,
                  in_reply_to=reply.in_reply_to, references=reply.references)
    assert set(header_names(built.data)) <= ALLOWED_HEADERS
    assert built.recipients == ["attacker@evil.example"]


@pytest.mark.parametrize(("name", "raw"), CORPUS, ids=[name for name, _ in CORPUS])
def test_replies_and_forwards_of_the_corpus_inject_nothing(name: str, raw: bytes) -> None:
    """Reply-all and forward (with attachments) of every hostile message build cleanly."""
    original = parse_message(raw)
    reply = reply_fields(original, "member@council.example", reply_all=True)
    built = build(to=reply.to or [Address("", "b@x.example")], cc=reply.cc,
                  subject=reply.subject, text_body=reply.quoted_text,
                  in_reply_to=reply.in_reply_to, references=reply.references)
    assert set(header_names(built.data)) <= ALLOWED_HEADERS
    forward = forward_fields(original)
    files = [attachment_bytes(raw, a.part_id) for a in original.attachments]
    built = build(to=[Address("", "b@x.example")], subject=forward.subject,
                  text_body=forward.quoted_text,
                  attachments=[(i.filename, i.content_type, d) for i, d in files])
    assert set(header_names(built.data)) <= ALLOWED_HEADERS
    sent = parse_message(built.data)
    assert [attachment_bytes(built.data, a.part_id)[1] for a in sent.attachments] == [
        d for _, d in files]
