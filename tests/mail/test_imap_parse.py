"""The IMAP response parser: tokens, FETCH items, ENVELOPE, BODYSTRUCTURE, LIST, STATUS,
SEARCH, SELECT; hostile and truncated input; aioimaplib's line shape."""

from __future__ import annotations

import asyncio
import email.utils
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from aioimaplib import aioimaplib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.mail import headers, imap_fetch, imap_tokens, mime
from gateway.mail.imap_fetch import (
    parse_bodystructure,
    parse_fetch,
    parse_fetch_flags,
    parse_fetch_of,
    parse_fetch_response,
    parse_fetch_section,
)
from gateway.mail.imap_mailboxes import parse_list, parse_search, parse_select, parse_status
from gateway.mail.imap_tokens import Atom, ImapParseError, parse_values, split_responses
from gateway.mail.mime import Address

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ENVELOPE = (
    b'("Mon, 03 Mar 2025 10:04:00 +0000" "=?utf-8?q?Caf=C3=A9_budget?=" '
    b'(("=?utf-8?b?SsO8cmdlbg==?=" NIL "juergen" "council.example")) '
    b'(("J" NIL "juergen" "council.example")) NIL '
    b'((NIL NIL "member" "council.example")("Second" NIL "two" "council.example")) '
    b'((NIL NIL "team" NIL)("Alice" NIL "alice" "council.example")(NIL NIL NIL NIL)) NIL '
    b'"<parent@council.example>" "<msg1@council.example>")')
BODYSTRUCTURE = (
    b'((("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 120 4 NIL NIL NIL NIL)'
    b'("text" "html" ("charset" "utf-8") NIL NIL "base64" 400 6 NIL NIL NIL NIL) "alternative" '
    b'("boundary" "b2") NIL NIL NIL)'
    b'("application" "pdf" ("name" "report.pdf") NIL NIL "base64" 5000 NIL ("attachment" '
    b'("filename*0*" "utf-8\'\'R%C3%A9port" "filename*1" " final.pdf")) NIL NIL)'
    b'("image" "png" NIL "<logo@x>" NIL "base64" 300 NIL ("inline" NIL) NIL NIL) "mixed" '
    b'("boundary" "b1") NIL NIL NIL)')
FETCH_LINE = (b"1 FETCH (UID 42 FLAGS (\\Seen $Forwarded) INTERNALDATE \" 3-Mar-2025 10:04:00 "
              b"+0100\" RFC822.SIZE 2048 ENVELOPE " + ENVELOPE + b" BODYSTRUCTURE "
              + BODYSTRUCTURE + b")")


async def through_aioimaplib(command: str, wire: bytes, chunk: int = 0) -> list[bytes]:
    """Feed server bytes through aioimaplib 2.0.3's own protocol and return Response.lines."""
    loop = asyncio.get_running_loop()
    proto = aioimaplib.IMAP4ClientProtocol(loop)
    proto.state = aioimaplib.SELECTED
    cmd = (aioimaplib.FetchCommand("A1", "1:*", "(UID)", loop=loop) if command == "FETCH"
           else aioimaplib.Command(command, "A1", loop=loop))
    if aioimaplib.Commands[command].exec is aioimaplib.Exec.is_sync:
        proto.pending_sync_command = cmd
    else:
        proto.pending_async_commands[cmd.untagged_resp_name] = cmd
    step = chunk or len(wire)
    for start in range(0, len(wire), step):
        proto.data_received(wire[start:start + step])
    await asyncio.wait_for(cmd.wait(), 2)
    return list(cmd.response.lines)


# ---- tokens -------------------------------------------------------------------------------

def test_values_atoms_strings_literals_nil_and_lists() -> None:
    """Atoms, quoted strings with escapes, literals, NIL (not "NIL") and nested lists."""
    values = parse_values(b'A "q \\"x\\" \\\\" {3}\r\nabc NIL "NIL" (1 (2 ()) ~{2}\r\nhi)')
    assert values == [Atom("A"), b'q "x" \\', b"abc", None, b"NIL",
                      [Atom("1"), [Atom("2"), []], b"hi"]]
    assert isinstance(values[0], Atom) and not isinstance(values[1], Atom)


def test_section_atoms_keep_their_spaces_and_parens() -> None:
    """BODY[HEADER.FIELDS (FROM TO)]<0> is one atom; [Gmail]/Sent is an atom too."""
    assert parse_values(b"BODY[HEADER.FIELDS (FROM TO)]<0> {1}\r\nx [Gmail]/Sent") == [
        Atom("BODY[HEADER.FIELDS (FROM TO)]<0>"), b"x", Atom("[Gmail]/Sent")]


@pytest.mark.parametrize("bad", [
    b"(a", b"a)", b'"unterminated', b'"bad \\', b'"line\r\nbreak"', b"{5}\r\nabc",
    b"{3}abc", b"{99999999999999}\r\n", b"BODY[HEADER", b"a\x00b", b"(" * 101 + b")" * 101,
    b"~{x}\r\n", b"{3",
])
def test_malformed_tokens_raise_imap_parse_error(bad: bytes) -> None:
    """Unbalanced lists, broken strings and literals, controls, over-deep nesting."""
    with pytest.raises(ImapParseError):
        parse_values(bad)


def test_nesting_up_to_the_bound_is_accepted() -> None:
    """100 nested lists parse; the bound only stops pathological input."""
    values = parse_values(b"(" * 100 + b")" * 100)
    for _ in range(99):
        values = values[0]  # type: ignore[assignment]
    assert values == [[]]


# ---- aioimaplib's line shape ----------------------------------------------------------------

async def test_fetch_lines_from_aioimaplib_parse_with_literals() -> None:
    """Real aioimaplib lines (literals as separate items, chunked arrival) parse in order."""
    wire = (b"* 1 FETCH (UID 5 RFC822.SIZE 123 BODY[HEADER.FIELDS (SUBJECT)] {13}\r\n"
            b"Subject: hi\r\n FLAGS (\\Seen))\r\n"
            b"* 2 FETCH (UID 6 BODY[] {3}\r\nabc BODY[TEXT] {0}\r\n)\r\n"
            b"* 3 EXISTS\r\nA1 OK Fetch completed.\r\n")
    for chunk in (0, 7, 1):
        lines = await through_aioimaplib("FETCH", wire, chunk)
        first, second = parse_fetch(lines)
        assert (first.seq, first.uid, first.size, first.flags) == (1, 5, 123, ("\\Seen",))
        assert first.section("BODY.PEEK[HEADER.FIELDS (SUBJECT)]") == b"Subject: hi\r\n"
        assert (second.uid, second.section("BODY[]"), second.section("BODY[TEXT]")) == (
            6, b"abc", b"")


async def test_list_status_search_lines_from_aioimaplib() -> None:
    """LIST/STATUS/SEARCH parse in the keyword-stripped form aioimaplib returns."""
    lines = await through_aioimaplib("LIST", b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
                                     b'* LIST (\\Sent) "/" {10}\r\nSent Items\r\n'
                                     b'* LIST () "/" "Entw&APw-rfe"\r\nA1 OK LIST completed.\r\n')
    assert [m.name for m in parse_list(lines)] == ["INBOX", "Sent Items", "Entwürfe"]
    lines = await through_aioimaplib("STATUS", b'* STATUS "Sent Items" (MESSAGES 3 UNSEEN 1 '
                                     b"UIDNEXT 9 UIDVALIDITY 77)\r\nA1 OK done\r\n")
    status, = parse_status(lines)
    assert (status.name, status.messages, status.unseen, status.uidnext, status.uidvalidity) == (
        "Sent Items", 3, 1, 9, 77)
    lines = await through_aioimaplib("SEARCH", b"* SEARCH 1 2 3\r\n* SEARCH\r\n"
                                     b"A1 OK SEARCH completed.\r\n")
    assert parse_search(lines) == [1, 2, 3]


def test_split_responses_rejects_a_missing_or_wrong_sized_literal() -> None:
    """A literal announced but absent, or of another size, is an ImapParseError."""
    with pytest.raises(ImapParseError):
        split_responses([b"1 FETCH (BODY[] {5}"], tail=False)
    with pytest.raises(ImapParseError):
        split_responses([b"1 FETCH (BODY[] {5}", bytearray(b"abc"), b")"], tail=False)


# ---- FETCH, ENVELOPE, BODYSTRUCTURE ---------------------------------------------------------

def test_fetch_items_uid_flags_date_size_envelope() -> None:
    """A full FETCH line yields typed UID, FLAGS, INTERNALDATE, size and ENVELOPE."""
    data = parse_fetch_response(b"* " + FETCH_LINE)
    assert (data.seq, data.uid, data.size) == (1, 42, 2048)
    assert data.flags == ("\\Seen", "$Forwarded")
    assert data.internaldate == datetime(2025, 3, 3, 10, 4, tzinfo=timezone(timedelta(hours=1)))
    assert set(data.items) == {"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE",
                               "BODYSTRUCTURE"}
    env = data.envelope
    assert env is not None
    assert env.subject == "Café budget"
    assert env.date == datetime(2025, 3, 3, 10, 4, tzinfo=UTC)
    assert env.from_ == [Address("Jürgen", "juergen@council.example")]
    assert env.reply_to == []
    assert env.to == [Address("", "member@council.example"),
                      Address("Second", "two@council.example")]
    assert env.cc == [Address("Alice", "alice@council.example")]   # group markers skipped
    assert (env.in_reply_to, env.message_id) == ("<parent@council.example>",
                                                 "<msg1@council.example>")


def test_bodystructure_part_numbers_filenames_and_attachments() -> None:
    """Parts are numbered as RFC 3501 says; RFC 2231 filenames are joined and decoded."""
    data = parse_fetch_response(FETCH_LINE)
    root = data.bodystructure
    assert root is not None
    assert [(p.part_id, p.content_type) for p in root.walk()] == [
        ("", "multipart/mixed"), ("1", "multipart/alternative"), ("1.1", "text/plain"),
        ("1.2", "text/html"), ("2", "application/pdf"), ("3", "image/png")]
    pdf = root.find("2")
    assert pdf is not None and pdf.filename == "Réport final.pdf"
    assert (pdf.disposition, pdf.encoding, pdf.size, pdf.is_attachment) == (
        "attachment", "base64", 5000, True)
    text = root.find("1.1")
    assert text is not None and (text.params, text.lines) == ({"charset": "utf-8"}, 4)
    png = root.find("3")
    assert png is not None and png.id == "<logo@x>" and not png.is_attachment
    assert root.has_attachments


def test_bodystructure_single_part_and_attached_message() -> None:
    """A single-part message is part 1; an attached message's parts are 2.1, 2.2."""
    single = parse_bodystructure(parse_values(
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 10 1 NIL NIL NIL NIL)')[0])
    assert (single.part_id, single.content_type, single.has_attachments) == ("1", "text/plain",
                                                                             False)
    nested = parse_bodystructure(parse_values(
        b'(("text" "plain" NIL NIL NIL "7bit" 5 1)("message" "rfc822" NIL NIL NIL "7bit" 500 '
        b'("Mon, 3 Mar 2025 10:00:00 +0000" "inner" NIL NIL NIL NIL NIL NIL NIL NIL) '
        b'(("text" "plain" NIL NIL NIL "7bit" 10 1)("application" "pdf" NIL NIL NIL "base64" '
        b'100 NIL) "mixed") 20) "mixed")')[0])
    assert [p.part_id for p in nested.walk()] == ["", "1", "2", "2.TEXT", "2.1", "2.2"]
    attached = nested.find("2")
    assert attached is not None and attached.envelope is not None
    assert attached.envelope.subject == "inner" and attached.is_attachment


def test_bodystructure_tolerates_bad_numbers_but_not_bad_shapes() -> None:
    """NIL sizes read as 0; a part with too few fields is an ImapParseError."""
    part = parse_bodystructure(parse_values(b'("text" "plain" NIL NIL NIL "7bit" NIL NIL)')[0])
    assert part.size == 0 and part.lines is None
    with pytest.raises(ImapParseError):
        parse_bodystructure(parse_values(b'("text" "plain")')[0])


def test_fetch_odd_but_valid_forms() -> None:
    """Lower-case keywords parse; impossible dates and zones read as None, not an error."""
    data = parse_fetch_response(b'* 7 fetch (uid 9 internaldate "01-Jan-2025 00:00:00 +9999" '
                                b"rfc822 NIL X-GM-LABELS (\\Inbox) MODSEQ (12))")
    assert (data.seq, data.uid, data.internaldate) == (7, 9, None)
    assert data.sections == {"RFC822": None} and data.items["MODSEQ"] == [Atom("12")]
    assert parse_fetch_response(b'1 FETCH (INTERNALDATE "31-Feb-2025 00:00:00 +0000")'
                                ).internaldate is None


def test_fetch_skips_other_responses_and_marks_a_bad_fetch_unreadable() -> None:
    """Unsolicited responses are skipped; a FETCH that cannot be read costs only itself
    (issue 14, case 11): it comes back marked unreadable, with its UID when one is there,
    and the responses beside it are read as usual. One response alone still raises."""
    assert parse_fetch([b"* 3 EXISTS", b"* OK [ALERT] hi", b"done"]) == []
    [bad] = parse_fetch([b"* 1 FETCH (UID x)", b"done"])
    assert bad.unreadable and bad.seq == 1 and bad.uid is None
    good, worse = parse_fetch([b"* 1 FETCH (UID 7 FLAGS (\\Seen))",
                               b"* 2 FETCH (UID 8 FLAGS (\\Seen) RFC822.SIZE x)", b"done"])
    assert (good.uid, good.unreadable) == (7, False)
    assert (worse.uid, worse.seq, worse.unreadable) == (8, 2, True)
    with pytest.raises(ImapParseError):
        parse_fetch_response(b"* 1 FETCH (UID)")


# ---- LIST, STATUS, SEARCH, SELECT ----------------------------------------------------------

def test_list_flags_special_use_delimiter_and_names() -> None:
    """Flags are lower-cased; special-use, Noselect and children are read; NIL delimiter."""
    lines = [b'* LIST (\\HasNoChildren \\Trash) "/" "Deleted Items"',
             b"* LIST (\\Noselect \\HasChildren) NIL Public",
             b'* LSUB () "." "bad&utf7"', b"* XLIST (\\Junk) \"/\" \"Junk Email\"", b"OK"]
    trash, public, bad, junk = parse_list(lines)
    assert (trash.name, trash.special_use, trash.selectable) == ("Deleted Items", "\\trash", True)
    assert (public.delimiter, public.selectable, public.has_children) == (None, False, True)
    assert (bad.name, bad.raw_name) == ("bad&utf7", b"bad&utf7")   # shown as sent
    assert junk.special_use == "\\junk"


def test_status_and_search() -> None:
    """STATUS counts, SEARCH numbers (with MODSEQ), foreign lines skipped."""
    assert parse_status([b"* STATUS INBOX (MESSAGES 10 UNSEEN 2)", b"OK"])[0].unseen == 2
    assert parse_status([b"STATUS (MESSAGES 1)", b"OK"])[0].name == "STATUS"
    assert parse_search([b"* SEARCH 2 84 882 (MODSEQ 917162500)", b"* 5 EXISTS", b"OK"]) == [
        2, 84, 882]
    with pytest.raises(ImapParseError):
        parse_search([b"* SEARCH 1 two", b"OK"])


def test_select_counts_flags_and_codes() -> None:
    """EXISTS, UIDVALIDITY, UIDNEXT, FLAGS, PERMANENTFLAGS and READ-ONLY from SELECT."""
    info = parse_select([b"FLAGS (\\Answered \\Seen)", b"OK [PERMANENTFLAGS (\\Seen)] ok",
                         b"12 EXISTS", b"0 RECENT", b"OK [UIDVALIDITY 3] ok",
                         b"OK [UIDNEXT 90] ok", b"[READ-ONLY] done"])
    assert (info.exists, info.recent, info.uidvalidity, info.uidnext) == (12, 0, 3, 90)
    assert info.flags == ("\\Answered", "\\Seen") and info.permanent_flags == ("\\Seen",)
    assert info.read_only


# ---- fuzzing: only ImapParseError, and quickly ----------------------------------------------

PIECES = [b"(", b")", b" ", b'"', b"\\", b"{3}\r\n", b"{99999999999}\r\n", b"{2+}\r\n",
          b"~{1}\r\n", b"NIL", b"UID", b"1", b"FETCH", b"BODY[", b"]", b"ENVELOPE",
          b"BODYSTRUCTURE", b"FLAGS", b"\r\n", b"abc", b"\x00", b"\xff", b"INTERNALDATE",
          b'"text"', b'"plain"', b"RFC822.SIZE", b"*", b"LIST", b"STATUS", b"SEARCH",
          b"ESEARCH", b"ALL", b"1:3,5", b"<0>", b"=?utf-8?q?=0D=0A?="]
imapish = st.lists(st.sampled_from(PIECES), max_size=60).map(b"".join)
lines_strategy = st.lists(st.one_of(st.binary(max_size=80), imapish,
                                    imapish.map(bytearray)), max_size=8)


def _only_parse_errors(call: object, *args: object) -> None:
    started = time.perf_counter()
    try:
        call(*args)  # type: ignore[operator]
    except ImapParseError:
        pass
    assert time.perf_counter() - started < 1.0


PARSERS = [parse_fetch, parse_list, parse_status, parse_search, parse_select]


@FUZZ
@given(st.one_of(st.binary(max_size=300), imapish))
def test_fuzz_tokenizer_and_fetch_response(data: bytes) -> None:
    """Random and IMAP-ish bytes: only ImapParseError, well under a second."""
    _only_parse_errors(parse_values, data)
    _only_parse_errors(parse_fetch_response, b"1 FETCH (" + data)
    _only_parse_errors(parse_fetch_response, b"1 FETCH (BODYSTRUCTURE (" + data + b"))")
    _only_parse_errors(parse_fetch_response, b"1 FETCH (ENVELOPE (" + data + b"))")


@FUZZ
@given(lines_strategy)
def test_fuzz_every_response_parser(lines: list[bytes]) -> None:
    """Any list of lines/literals through every parse_* function: only ImapParseError."""
    for parser in PARSERS:
        _only_parse_errors(parser, lines)


@FUZZ
@given(st.integers(min_value=0, max_value=len(FETCH_LINE)), st.binary(max_size=3),
       st.integers(min_value=0, max_value=len(FETCH_LINE)))
def test_fuzz_truncated_and_mutated_fetch(cut: int, insert: bytes, where: int) -> None:
    """A valid FETCH truncated anywhere, or with bytes inserted, never escapes as another error."""
    _only_parse_errors(parse_fetch_response, FETCH_LINE[:cut])
    _only_parse_errors(parse_fetch_response, FETCH_LINE[:where] + insert + FETCH_LINE[where:])


@FUZZ
@given(st.integers(min_value=90, max_value=50_000))
def test_fuzz_deep_nesting_and_huge_literal_counts(depth: int) -> None:
    """Deep nesting stops at the bound; absurd literal sizes are refused, not awaited."""
    _only_parse_errors(parse_values, b"(" * depth + b")" * depth)
    _only_parse_errors(parse_values, b"(" * depth)
    _only_parse_errors(parse_values, b"{%d}\r\nabc" % (depth ** 3))
    _only_parse_errors(split_responses, [b"1 FETCH (BODY[] {%d}" % depth, b"x", b")"])


@FUZZ
@given(st.text(max_size=40))
def test_fuzz_odd_quoting(text: str) -> None:
    """Quoted strings with any escapes and quotes inside: parsed or refused, nothing else."""
    raw = text.encode("utf-8", "surrogatepass")
    _only_parse_errors(parse_values, b'"' + raw + b'"')
    _only_parse_errors(parse_values, b'"' + raw.replace(b'"', b'\\"') + b'" x')


# ---- the fast paths: same answers as the general tokenizer and the stdlib ---------------------

def _outcome(call: object, *args: object) -> tuple[str, str]:
    try:
        return "ok", repr(call(*args))  # type: ignore[operator]
    except ImapParseError:
        return "error", ""


MORE_PIECES = [*PIECES, b'"a b"', b'""', b'"(x)"', b"~", b"~{1}\r\n", b"nil", b"n\xc4\xb1l",
               b"\\Seen", b"[", b"]", b"BODY[1]<0>", b"[1.2]", b"x[]", b"[\x01]", b"[{]"]


@FUZZ
@given(st.one_of(st.binary(max_size=200), imapish,
                 st.lists(st.sampled_from(MORE_PIECES), max_size=60).map(b"".join)))
def test_plain_and_literal_fast_paths_read_as_the_general_tokenizer(data: bytes) -> None:
    """Split-based tokenizing (and literals rewritten as strings) never differs from the
    regex tokenizer: same values, or an ImapParseError from both."""
    general = _outcome(imap_tokens._parse_general, data, imap_tokens._Memo())
    assert _outcome(parse_values, data) == general
    plain = _outcome(imap_tokens._parse_plain, data, {}, imap_tokens._Memo())
    assert plain in (("ok", "None"), general)


@pytest.mark.parametrize(("data", "expected"), [
    (b"a~{1}\r\nx", [Atom("a~"), b"x"]),                 # "~" inside an atom, then a literal
    (b'("a"{3}\r\nb"c)', [[b"a", b'b"c']]),              # a quote inside a literal
    (b"(x {0}\r\n)", [[Atom("x"), b""]]),
    (b"{3}\r\n{1}z", [b"{1}", Atom("z")]),              # a literal's content is not re-read
    (b"{5}\r\n{1}\r\n z", [b"{1}\r\n", Atom("z")]),
    (b"~{3}\r\nNIL NIL", [b"NIL", None]),
])
def test_literals_inline_only_where_they_read_the_same(data: bytes, expected: list[object]) -> None:
    """Literals keep their exact bytes, wherever they sit and whatever they hold."""
    assert parse_values(data) == expected


@pytest.mark.parametrize("bad", [b'"a{1}\r\nb"', b'"a {1}\r\nb', b"(a {5}\r\nab)"])
def test_literals_inside_strings_or_short_still_raise(bad: bytes) -> None:
    with pytest.raises(ImapParseError):
        parse_values(bad)


def test_a_page_shares_only_immutable_results() -> None:
    """parse_fetch reuses what one page repeats (atoms, addresses, flags, parameters), but
    each message still gets its own lists and dicts, and the same answer as alone."""
    lines = [b"%d FETCH (UID %d " % (n, n) + FETCH_LINE.split(b"(UID 42 ", 1)[1]
             for n in (1, 2)] + [b"done"]
    first, second = parse_fetch(lines)
    assert [repr(f) for f in (first, second)] == [
        repr(parse_fetch_response(r)) for r in split_responses(lines)]
    assert first.bodystructure is not None and second.bodystructure is not None
    one, two = first.bodystructure.find("1.1"), second.bodystructure.find("1.1")
    assert one is not None and two is not None and one.params == two.params
    assert one.params is not two.params
    one.params["charset"] = "changed"
    assert two.params == {"charset": "utf-8"}
    assert first.items["FLAGS"] is not second.items["FLAGS"]
    assert first.envelope is not None and second.envelope is not None
    assert first.envelope.to is not second.envelope.to


@pytest.mark.parametrize("value", [
    "Wed, 04 Nov 2026 03:30:04 +0000", "4 Nov 2026 03:30:04 -0000",
    "Mon, 31 Feb 2025 10:00:00 +0100", "Mon, 03 Mar 2025 10:04:00 +0160",
    "Mon, 03 Mar 2025 10:04:00 -2359", "Mon, 03 Mar 2025 24:00:00 +0000",
    "Mon, 03 Mar 2025 10:04:00 +2400", "Sun, 1 Jan 1000 00:00:00 +0030",
    "Mon, 03 Mar 2025 10:04 +0000",
])
def test_date_fast_path_reads_as_parsedate_to_datetime(value: str) -> None:
    """The fast path for the usual RFC 5322 date gives what email.utils gives (None where
    that raises; -0000 as UTC)."""
    expected: datetime | None
    try:
        expected = email.utils.parsedate_to_datetime(value)
        expected = expected if expected.tzinfo else expected.replace(tzinfo=UTC)
    except ValueError:
        expected = None
    got = mime.parse_date(value)
    assert got == expected
    assert (got and got.utcoffset()) == (expected and expected.utcoffset())


@FUZZ
@given(st.text(max_size=40))
def test_clean_text_fast_path(value: str) -> None:
    """Nothing to take out: the fast path; otherwise the same as the full clean-up."""
    slow = " ".join(headers._BIDI.sub("", headers._CONTROLS.sub(" ", value)).split())
    assert mime.clean_text(value) == slow


# ---- the (UID FLAGS) fast path (issue 16) ------------------------------------------------

FLAG_LINES = [
    [b"* 1 FETCH (UID 7 FLAGS (\\Seen))", b"* 2 FETCH (UID 9 FLAGS ())", b"A1 OK done"],
    [b"* 3 FETCH (FLAGS (\\Answered $Forwarded Junk) UID 12)", b"A2 OK done"],
    [b"* 5 EXISTS", b"* 4 FETCH (UID 4294967295 FLAGS (\\Flagged \\Seen))", b"* 1 EXPUNGE",
     b"A3 OK done"],
    [b"* 1 FETCH (UID 7 FLAGS (\\Seen))", b'* 2 FETCH (UID 8 FLAGS ("quoted"))', b"A OK"],
    [b"* 1 FETCH (UID 7 FLAGS (\\Seen) RFC822.SIZE 10)", b"A OK"],
    [b"* 1 FETCH (UID 7 FLAGS (NIL))", b"A OK"],
    [b"* 1 FETCH (UID 7 FLAGS ({3}", b"abc", b"))", b"A OK"],
    [b"* 1 FETCH (UID 7 FLAGS (\\Seen \xc3\xa9t\xc3\xa9))", b"A OK"],
    [b"* 1 fetch (uid 7 flags (\\seen))", b"A OK"],
    [b"* 1 FETCH (UID x FLAGS ())", b"A OK"],
]


@pytest.mark.parametrize("lines", FLAG_LINES)
def test_uid_flags_fast_path_reads_as_the_general_parser(lines: list[bytes]) -> None:
    """parse_fetch_flags gives what parse_fetch gives, on the lines it reads itself and on
    those it hands over (quoted, NIL, literal or non-ASCII flags, other items)."""
    assert parse_fetch_flags(lines) == parse_fetch(lines)


@given(st.lists(st.tuples(st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1),
                          st.lists(st.sampled_from(["\\Seen", "\\Flagged", "\\Answered",
                                                    "$Label1", "Junk", "\\Draft", "a]b"]),
                                   max_size=4), st.booleans()), max_size=20))
def test_uid_flags_fast_path_matches_on_any_page(
    rows: list[tuple[int, int, list[str], bool]],
) -> None:
    """Any page of UID/FLAGS answers, in either item order, reads the same both ways."""
    lines = [f"* {seq} FETCH (UID {uid} FLAGS ({' '.join(f)}))".encode() if first else
             f"* {seq} FETCH (FLAGS ({' '.join(f)}) UID {uid})".encode()
             for seq, uid, f, first in rows] + [b"A OK done"]
    assert parse_fetch_flags(lines) == parse_fetch(lines)


SECTION_LINES: list[list[bytes | bytearray]] = [
    # The shape it reads itself (Dovecot's).
    [b"* 3 FETCH (UID 10 BODY[1]<0> {5}", bytearray(b"Hello"), b")",
     b"4 FETCH (UID 11 BODY[1.2]<0> {0}", bytearray(b""), b")", b"A OK done"],
    # What it hands over: NIL or a quoted section, items the other way round, more items,
    # another untagged response, a literal whose size does not match, lower case.
    [b"* 3 FETCH (UID 10 BODY[1]<0> NIL)", b"A OK"],
    [b'* 3 FETCH (UID 10 BODY[1]<0> "hi")', b"A OK"],
    [b"* 3 FETCH (BODY[1]<0> {2}", bytearray(b"hi"), b" UID 10)", b"A OK"],
    [b"* 3 FETCH (UID 10 BODY[1]<0> {2}", bytearray(b"hi"), b" FLAGS (\\Seen))", b"A OK"],
    [b"* 9 EXISTS", b"* 3 FETCH (UID 10 BODY[1]<0> {2}", bytearray(b"hi"), b")", b"A OK"],
    [b"* 3 FETCH (UID 10 BODY[1]<0> {3}", bytearray(b"hi"), b")", b"A OK"],
    [b"* 3 fetch (uid 10 body[1]<0> {2}", bytearray(b"hi"), b")", b"A OK"],
]


@pytest.mark.parametrize("lines", SECTION_LINES)
def test_section_fast_path_reads_as_the_general_parser(
        lines: list[bytes | bytearray]) -> None:
    """parse_fetch_section gives what parse_fetch gives (or raises as it does) on the lines
    it reads itself and on those it hands over."""
    try:
        expected = parse_fetch(lines)
    except ImapParseError:
        with pytest.raises(ImapParseError):
            parse_fetch_section(lines)
        return
    assert parse_fetch_section(lines) == expected
    assert parse_fetch_of("(UID BODY.PEEK[1]<0.512>)", lines) == expected


def test_the_fast_path_gives_the_section_bytes_and_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    """It reads Dovecot's shape itself: the general parser is not asked."""
    def not_asked(*args: object, **kwargs: object) -> None:
        raise AssertionError("handed over to parse_fetch")
    monkeypatch.setattr(imap_fetch, "parse_fetch", not_asked)
    [one, two] = parse_fetch_section(SECTION_LINES[0])
    assert (one.seq, one.uid, one.section("BODY.PEEK[1]<0>")) == (3, 10, b"Hello")
    assert (two.uid, two.sections) == (11, {"BODY[1.2]<0>": b""})


@given(st.lists(st.tuples(st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1),
                          st.sampled_from(["1", "1.1", "2", "1.2.3"]),
                          st.binary(max_size=600)), max_size=20))
def test_section_fast_path_matches_on_any_page(
    rows: list[tuple[int, int, str, bytes]],
) -> None:
    """Any page of partial-body answers, any bytes in the literal, reads the same both ways."""
    lines: list[bytes | bytearray] = []
    for seq, uid, part, data in rows:
        lines += [f"* {seq} FETCH (UID {uid} BODY[{part}]<0> {{{len(data)}}}".encode(),
                  bytearray(data), b")"]
    lines.append(b"A OK done")
    assert parse_fetch_section(lines) == parse_fetch(lines)
