"""The sample council mail: what the seeder puts in each mailbox, seen both as MIME (parsed by
Python's email package) and over IMAP from the real Dovecot."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import aioimaplib
import pytest
import pytest_asyncio

from gateway.devstack.mailserver import MailServer, imap_utf7_encode, outlook_access_token
from gateway.devstack.seed import (
    SEED_FOLDERS,
    WARD_FOLDER,
    PlannedMessage,
    SeedSummary,
    plan_mailbox,
    seed,
)
from gateway.devstack.tokens import TokenSigner
from gateway.devstack.users import USERS, user
from gateway.server.certs import make_dev_certs

pytestmark = pytest.mark.asyncio(loop_scope="module")

NOW = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
MEMBER = user("member")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def seeded(tmp_path_factory: pytest.TempPathFactory
                 ) -> AsyncIterator[tuple[MailServer, SeedSummary]]:
    base = tmp_path_factory.mktemp("seed")
    mail = MailServer(base / "mail", make_dev_certs(base / "certs"), TokenSigner())
    await mail.start()
    summary = seed(mail, now=NOW)
    yield mail, summary
    await mail.stop()


@pytest.fixture(scope="module")
def planned() -> list[PlannedMessage]:
    return plan_mailbox(MEMBER, now=NOW, messages=300, rng_seed=7)[0]


def highlight(planned: list[PlannedMessage], key: str) -> tuple[PlannedMessage, EmailMessage]:
    item = next(p for p in planned if p.key == key)
    msg = message_from_bytes(item.data, policy=default_policy)
    assert isinstance(msg, EmailMessage)
    return item, msg


async def login(mail: MailServer, who: str = "member") -> aioimaplib.IMAP4_SSL:
    u = user(who)
    imap = aioimaplib.IMAP4_SSL(mail.host, mail.imap_port, ssl_context=mail.client_ssl_context(),
                                timeout=10)
    await imap.wait_hello_from_server()
    assert (await imap.xoauth2(u.email, outlook_access_token(mail.signer, u))).result == "OK"
    await imap.protocol.capability()
    return imap


async def test_summary_counts_every_mailbox(seeded: tuple[MailServer, SeedSummary]) -> None:
    """Each sample mailbox but the canary gets exactly messages_per_user messages over every
    seeded folder (non-mail folders empty); the canary's folders are all empty. How long
    seeding took (summary.seconds) is not asserted: tests do not time things."""
    _, summary = seeded
    for u in USERS:
        assert summary.folders(u.email) == list(SEED_FOLDERS)
        expected = 300 if u.key != "canary" and u.seed_mail else 0
        assert summary.total(u.email) == expected
    member = summary.counts[MEMBER.email]
    assert all(member[f] == 0 for f in ("Calendar", "Contacts", "Tasks"))
    assert all(member[f] > 0 for f in SEED_FOLDERS if f not in ("Calendar", "Contacts", "Tasks"))
    assert member["INBOX"] > member["Sent Items"] > member["Drafts"]
    assert len(summary.banner_lines()) == len(USERS)


async def test_imap_counts_match_summary(seeded: tuple[MailServer, SeedSummary]) -> None:
    """Over IMAP, LIST shows every seeded folder (the ward folder in modified UTF-7) and
    STATUS counts equal the summary's."""
    mail, summary = seeded
    imap = await login(mail)
    listing = await imap.list('""', "*")
    names = {re.sub(rb'^\([^)]*\) "/" ', b"", line).decode().strip('"')
             for line in listing.lines[:-1]}
    wire = {f: imap_utf7_encode(f) for f in SEED_FOLDERS}
    assert set(wire.values()) <= names
    assert wire[WARD_FOLDER] == "Ward &IBM- Llanfair Caf&AOk-"
    for folder, on_wire in wire.items():
        status = await imap.status(f'"{on_wire}"', "(MESSAGES)")
        count = int(re.search(rb"MESSAGES (\d+)", status.lines[0]).group(1))  # type: ignore[union-attr]
        assert count == summary.count(MEMBER.email, folder), folder
    await imap.logout()
    canary = await login(mail, "canary")
    assert b"0 EXISTS" in (await canary.select("INBOX")).lines
    await canary.logout()


async def test_imap_flags_dates_and_order(seeded: tuple[MailServer, SeedSummary]) -> None:
    """The INBOX mixes seen, unseen and flagged mail; INTERNALDATEs run over ~6 months up to
    today, in UID order; Drafts carry \\Draft."""
    mail, _ = seeded
    imap = await login(mail)
    await imap.select("INBOX")
    fetched = await imap.fetch("1:*", "(FLAGS INTERNALDATE)")
    rows = re.findall(rb'FLAGS \(([^)]*)\) INTERNALDATE "([^"]+)"',
                      b"\n".join(bytes(x) for x in fetched.lines))
    flags = [set(f.split()) for f, _ in rows]
    dates = [datetime.strptime(d.decode(), "%d-%b-%Y %H:%M:%S %z") for _, d in rows]
    assert any(b"\\Seen" not in f for f in flags)
    assert sum(b"\\Seen" in f for f in flags) > len(flags) // 2
    assert any(b"\\Flagged" in f for f in flags)
    assert any(b"\\Answered" in f for f in flags)
    assert dates == sorted(dates)
    assert dates[-1].date() == NOW.date()
    assert sum(d.date() == NOW.date() for d in dates) >= 4
    assert NOW - dates[0] > timedelta(days=120)
    assert all(NOW - timedelta(days=183) <= d <= NOW for d in dates)
    await imap.select("Drafts")
    drafts = await imap.fetch("1:*", "(FLAGS)")
    assert all(b"\\Draft" in line for line in drafts.lines[:-1])
    await imap.logout()


async def test_imap_sees_the_structures(seeded: tuple[MailServer, SeedSummary]) -> None:
    """Dovecot's BODYSTRUCTURE shows the invitation's text/calendar with method=REQUEST, the
    PDF attachments and the related inline image."""
    mail, _ = seeded
    imap = await login(mail)
    await imap.select("INBOX")
    for criteria, needles in {
        ("HEADER", "Thread-Topic", '"Planning Committee"'):
            [b'"text" "calendar"', b'"method" "REQUEST"'],
        ("SUBJECT", '"agenda and papers"'): [b'"application" "pdf"', b"filename*"],
        ("SUBJECT", '"charity evening"'): [b'"related"', b"<crest@council.example>"],
    }.items():
        found = await imap.search(*criteria)
        assert found.result == "OK", found
        numbers = found.lines[0].split()
        assert numbers, criteria
        structure = await imap.fetch(numbers[-1].decode(), "(BODYSTRUCTURE)")
        text = b" ".join(bytes(x) for x in structure.lines)
        for needle in needles:
            assert needle.lower() in text.lower(), (criteria, needle, text)
    await imap.logout()


async def test_committee_papers_have_real_documents(planned: list[PlannedMessage]) -> None:
    """Committee papers carry valid PDFs (one with an RFC 2231 non-ASCII, continued name); the
    officer's note carries a .docx and an .xlsx that are real OOXML packages."""
    _, msg = highlight(planned, "pdf")
    pdfs = [p for p in msg.iter_attachments() if p.get_content_type() == "application/pdf"]
    assert len(pdfs) == 2
    names = [p.get_filename() for p in pdfs]
    assert "Adroddiad – Cynllunio (Café site).pdf" in names
    # Long enough that RFC 2231 splits it into continuations (filename*0*, filename*1*).
    assert "filename*0*=utf-8''" in bytes(pdfs[1]).decode()
    for part in pdfs:
        data = part.get_content()
        assert data.startswith(b"%PDF-1.4") and data.rstrip().endswith(b"%%EOF")
        xref = int(re.search(rb"startxref\n(\d+)", data).group(1))  # type: ignore[union-attr]
        assert data[xref:xref + 4] == b"xref"
    assert b"Planning Committee agenda" in pdfs[0].get_content()

    _, office = highlight(planned, "office")
    parts = {p.get_filename(): p.get_content() for p in office.iter_attachments()}
    docx = zipfile.ZipFile(io.BytesIO(parts["Budget consultation – draft response.docx"]))
    assert "word/document.xml" in docx.namelist()
    assert b"Budget consultation" in docx.read("word/document.xml")
    xlsx = zipfile.ZipFile(io.BytesIO(parts["Ward budget 2026-27.xlsx"]))
    assert {"xl/workbook.xml", "xl/worksheets/sheet1.xml"} <= set(xlsx.namelist())


async def test_newsletter_and_junk_html(planned: list[PlannedMessage]) -> None:
    """The newsletter's HTML loads remote images and a tracking pixel; the junk mail carries
    script and an event handler for the sanitiser to remove."""
    _, news = highlight(planned, "newsletter")
    html = news.get_body(preferencelist=("html",))
    assert html is not None
    body = html.get_content()
    assert re.search(r'<img src="https://newsletter\.example/track\.gif\?u=\w+" width="1"', body)
    assert "https://cdn.newsletter.example/photos/hall.jpg" in body
    assert news.get_body(preferencelist=("plain",)) is not None
    item, junk = highlight(planned, "junk")
    assert item.folder == "Junk Email"
    junk_html = junk.get_body(preferencelist=("html",))
    assert junk_html is not None
    assert "<script>" in junk_html.get_content()
    assert "onerror=" in junk_html.get_content()


async def test_invitation_is_outlook_shaped(planned: list[PlannedMessage]) -> None:
    """The meeting invitation is multipart/alternative with a text/calendar REQUEST: a
    VTIMEZONE, ORGANIZER, ATTENDEE, DTSTART with TZID=Europe/London, UID; lines folded."""
    item, msg = highlight(planned, "invitation")
    assert msg.get_content_type() == "multipart/alternative"
    cal = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    assert cal.get_param("method") == "REQUEST"
    ics = cal.get_content().replace("\r\n", "\n")  # the store keeps LF; IMAP serves CRLF
    unfolded = ics.replace("\n ", "")
    for needle in ("METHOD:REQUEST", "BEGIN:VTIMEZONE", "TZID:Europe/London", "BEGIN:VEVENT",
                   "ORGANIZER;CN=Democratic Services:mailto:democratic.services@",
                   f"mailto:{MEMBER.email}", "DTSTART;TZID=Europe/London:", "UID:0400000082"):
        assert needle in unfolded, needle
    assert all(len(line.encode()) <= 75 for line in ics.split("\n"))
    assert "\n " in ics  # the long ATTENDEE lines were folded
    assert item.date.date() == NOW.date()


async def test_threads_chain_across_folders(planned: list[PlannedMessage]) -> None:
    """A resident's thread runs INBOX -> Sent Items -> INBOX with In-Reply-To/References and
    "Re:"; the reply-all thread has Cc and "RE:"."""
    start_item, start = highlight(planned, "thread-start")
    reply_item, reply = highlight(planned, "thread-reply")
    latest_item, latest = highlight(planned, "thread-latest")
    assert (start_item.folder, reply_item.folder, latest_item.folder) == (
        "INBOX", "Sent Items", "INBOX")
    assert reply["In-Reply-To"] == start["Message-ID"]
    assert latest["References"].split() == [start["Message-ID"], reply["Message-ID"]]
    assert latest["Subject"] == "Re: " + start["Subject"]
    assert "\\Answered" in start_item.flags
    assert latest_item.date.date() == NOW.date()
    _, ra = highlight(planned, "reply-all")
    assert ra["Subject"].startswith("RE: ") and ra["Cc"] and len(ra["References"].split()) == 2


async def test_encodings_and_charsets(planned: list[PlannedMessage]) -> None:
    """RFC 2047 subjects and names, quoted-printable and base64 bodies, ISO-8859-1 and
    windows-1252 bodies, and one unknown charset are all there and decode as meant."""
    item, msg = highlight(planned, "rfc2047")
    assert b"Subject: =?utf-8?" in item.data
    assert msg["Subject"] == "Café opening hours – Llanfair square ☕"
    assert msg["From"].addresses[0].display_name == "Zoë Clarke"
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert "Caffi’r Sgwâr" in msg.get_content()

    _, latin1 = highlight(planned, "latin1")
    assert latin1.get_content_charset() == "iso-8859-1"
    assert latin1["Subject"] == "Réunion du jumelage - Llanfair & Plouézec"
    assert "réunion du comité" in latin1.get_content()

    _, cp1252 = highlight(planned, "cp1252")
    assert cp1252.get_content_charset() == "windows-1252"
    assert cp1252["Content-Transfer-Encoding"] == "quoted-printable"
    assert "“community rate” is £25 per hour – or €30" in cp1252.get_content()
    assert cp1252["Subject"] == "Hall hire – “community rate” query"

    item, unknown = highlight(planned, "unknown-charset")
    assert unknown.get_content_charset() == "x-council-legacy-1"
    assert b"Ll\xfdr" in item.data

    _, b64 = highlight(planned, "base64")
    assert b64["Content-Transfer-Encoding"] == "base64"
    assert "Cyngor Llawn" in b64.get_content()

    _, inline = highlight(planned, "inline-image")
    html = inline.get_body(preferencelist=("html",))
    assert html is not None and 'src="cid:crest@council.example"' in html.get_content()
    image = next(p for p in inline.walk() if p.get_content_type() == "image/png")
    assert image["Content-ID"] == "<crest@council.example>"
    assert image.get_content().startswith(b"\x89PNG\r\n\x1a\n")


async def test_seed_is_deterministic() -> None:
    """The same rng_seed and now give the same bytes; another seed gives other mail; few
    messages still start with the highlights."""
    a, marks_a = plan_mailbox(MEMBER, now=NOW, messages=120, rng_seed=7)
    b, marks_b = plan_mailbox(MEMBER, now=NOW, messages=120, rng_seed=7)
    c, _ = plan_mailbox(MEMBER, now=NOW, messages=120, rng_seed=8)
    assert [(p.folder, p.flags, p.date, p.data) for p in a] == [
        (p.folder, p.flags, p.date, p.data) for p in b]
    assert marks_a == marks_b
    assert [p.data for p in a] != [p.data for p in c]
    small, marks = plan_mailbox(MEMBER, now=NOW, messages=5, rng_seed=7)
    assert len(small) == 5 and "pdf" in marks


async def test_seed_into_fresh_server_without_start(tmp_path: Path) -> None:
    """seed() writes into the store before Dovecot has ever started (the mail is there when
    it does), with a small count."""
    mail = MailServer(tmp_path / "m", make_dev_certs(tmp_path / "c"), TokenSigner())
    summary = seed(mail, now=NOW, messages_per_user=25)
    assert summary.total() == 25 * sum(1 for u in USERS if u.key != "canary" and u.seed_mail)
    cur = mail.maildir(MEMBER.email) / "cur"
    assert len(list(cur.iterdir())) == summary.count(MEMBER.email, "INBOX")
