"""The mail session against real Dovecot: a page that opens a message takes the member's
connection lock once (counted by the pool itself), and a session used outside its ``with``
block, or entered twice, still runs each call on the one pooled connection."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.devstack.users import user
from gateway.mail import imap_pool, imap_protocol, mailbox, reader
from gateway.mail.session import MailSession
from tests.conftest import Gateway, sign_in
from tests.web.mailhelp import (
    PDF,
    PNG,
    deliver,
    direct,
    message,
    own_pool,
    unique,
    with_inline_image,
)


def _locks(gateway: Any) -> int:
    count: int = gateway.app.state.gateway.services.imap_pool.lock_acquisitions
    return count


def test_reading_a_message_with_attachments_takes_the_lock_once(gateway: Gateway) -> None:
    """The read page opens the message, checks the part numbers against the server's
    structure and lists the folders: one take of the connection lock for all of it."""
    client = sign_in(gateway, "member")
    subject = unique("Locked once")
    uid = deliver(gateway, "member", message(subject, attachments=[
        ("Agenda.pdf", "application/pdf", PDF)]))
    client.get("/mail", params={"f": "INBOX"})          # the connection is open already
    before = _locks(gateway)
    page = client.get("/mail/read", params={"f": "INBOX", "uid": uid})
    assert page.status_code == 200
    assert subject in page.text and "Agenda.pdf" in page.text
    assert _locks(gateway) - before == 1


def test_html_message_with_inline_image_takes_the_lock_once(gateway: Gateway) -> None:
    """Sanitising the body fetches its inline image inside the same held session; the
    frame then comes from the frame cache without touching the mailbox."""
    client = sign_in(gateway, "member")
    subject = unique("Inline once")
    uid = deliver(gateway, "member", with_inline_image(
        subject, "text", '<p>Logo <img src="cid:logo1"></p>', "logo1",
        attachments=[("Agenda.pdf", "application/pdf", PDF)]))
    client.get("/mail", params={"f": "INBOX"})
    before = _locks(gateway)
    page = client.get("/mail/read", params={"f": "INBOX", "uid": uid})
    assert page.status_code == 200 and "/mail/frame?" in page.text
    assert _locks(gateway) - before == 1
    frame = client.get("/mail/frame", params={"f": "INBOX", "uid": uid})
    assert frame.status_code == 200 and "data:image/png;base64," in frame.text
    assert _locks(gateway) - before == 1


def _pool(gateway: Any) -> tuple[imap_pool.ImapPool, str]:
    return own_pool(gateway, "member"), user("member").email


def test_session_holds_once_nests_and_runs_outside_its_block(gateway: Gateway) -> None:
    pool, email = _pool(gateway)
    subject = unique("Session")
    uid = deliver(gateway, "member", message(subject, attachments=[
        ("Agenda.pdf", "application/pdf", PDF), ("Logo.png", "image/png", PNG)]))

    async def run() -> tuple[int, int, bytes | None, int]:
        ms = MailSession(pool, "k", email, "acct")
        async with ms:
            async with ms:                     # entering again does not take it twice
                opened = await reader.open_message(ms, "INBOX", uid, mark_read=False)
            folders = await ms.run(lambda conn: mailbox.list_folders(conn, counts=False))
        held = pool.lock_acquisitions
        # After the block each call takes the lock for itself (the part is fetched later).
        logo = next(a for a in opened.view.attachments if a.filename == "Logo.png")
        data = await opened.part(logo.part_id, 10_000_000)
        await ms.run(lambda conn: mailbox.list_folders(conn, counts=False))
        after = pool.lock_acquisitions
        assert reader.named(folders, "INBOX") is not None
        assert reader.special(folders, "sent") is not None
        conns = pool.open_connections
        await pool.close_all()
        return held, after, data, conns
    held, after, data, conns = gateway.loop.run(run())
    assert held == 1
    assert data == PNG
    # A small message's parts come from the bytes fetched; the call after the block takes
    # the lock for itself.
    assert after == 2
    assert conns == 1


def test_forward_form_opens_the_original_once_with_one_lock(gateway: Gateway) -> None:
    """The forward form needs the original for its fields and for the attachments it keeps:
    opened once, under one take of the lock."""
    client = sign_in(gateway, "member")
    subject = unique("Forward once")
    uid = deliver(gateway, "member", message(subject, attachments=[
        ("Agenda.pdf", "application/pdf", PDF)]))
    client.get("/mail", params={"f": "INBOX"})
    before = _locks(gateway)
    page = client.get("/mail/compose", params={"mode": "forward", "f": "INBOX", "uid": uid})
    assert page.status_code == 200
    assert "Fw: " + subject in page.text or "Fwd: " + subject in page.text
    assert 'name="keep_part"' in page.text and "Agenda.pdf" in page.text
    assert _locks(gateway) - before == 1


def test_a_page_asks_for_news_once_per_take(gateway: Gateway) -> None:
    """Opening a message, finding its page and fetching that page each look at the
    selected folder; under one take only the first asks the server for news (a NOOP), and
    the message's size is asked for once. The next take asks for news again, and sees a
    message delivered in between."""
    pool, email = _pool(gateway)
    uid = deliver(gateway, "member", message(unique("News once")))
    sent: list[str] = []

    def verbs(conn: Any) -> None:
        # Records the verb of each command the connection sends; sends it unchanged.
        protocol = conn.client.protocol
        original = protocol.send

        def send(line: str, scrub: str | None = None) -> None:
            sent.append(line.split(" ", 1)[1])
            original(line, scrub)
        protocol.send = send

    ms = MailSession(pool, "k", email, "acct")

    async def one_page() -> tuple[list[str], int]:
        await ms.run(lambda conn: mailbox.fetch_page(conn, "INBOX"))   # selected, open
        conn = pool._slots["k"].conn
        verbs(conn)
        async with ms:
            await reader.open_message(ms, "INBOX", uid, mark_read=False)
            page_no = await ms.run(lambda c: mailbox.page_of(c, "INBOX", uid))
            first = await ms.run(lambda c: mailbox.fetch_page(c, "INBOX", page_no))
        one_take = list(sent)
        sent.clear()
        return one_take, first.total

    async def next_page() -> int:
        again = await ms.run(lambda c: mailbox.fetch_page(c, "INBOX"))
        await pool.close_all()
        return again.total
    one_take, total = gateway.loop.run(one_page())
    deliver(gateway, "member", message(unique("Arrived between")))
    total_after = gateway.loop.run(next_page())
    verbs_of = [c.split(" ")[0].upper() for c in one_take]
    assert verbs_of.count("NOOP") == 1 and "SELECT" not in verbs_of, verbs_of
    assert verbs_of[0] == "NOOP"
    # The size is asked for once (it decides between the whole message and its parts).
    assert sum("RFC822.SIZE" in c for c in one_take) == 1, one_take
    assert [c.split(" ")[0].upper() for c in sent].count("NOOP") == 1, sent
    assert total_after == total + 1


def test_a_new_connection_asks_for_its_first_page_in_full_once(
        gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new connection knows no message: its first page asks for the whole range in full
    in one FETCH (not UID and FLAGS first), and the page is the same as the summaries asked
    for one by one. The capabilities the server sent with its greeting and its answer to
    the login are not asked for again, and are what asking gives; none are asked for before
    login."""
    deliver(gateway, "member", message(unique("Cold page")))
    sent: list[str] = []
    original = imap_protocol._Protocol.send

    def send(self: Any, line: str, scrub: str | None = None) -> None:
        # Records the verb and arguments of each command; sends it unchanged.
        sent.append(line.split(" ", 1)[1])
        original(self, line, scrub)
    monkeypatch.setattr(imap_protocol._Protocol, "send", send)

    async def run(conn: Any) -> tuple[Any, list[str], frozenset[str], set[str], Any]:
        page = await mailbox.fetch_page(conn, "INBOX")
        cold = list(sent)
        protocol = conn.client.protocol
        caps = conn.caps
        await conn.call(protocol.capability())
        asked = {c.upper() for c in protocol.capabilities}
        one_by_one = await mailbox.fetch_uids(conn, "INBOX", [m.uid for m in page.messages])
        return page, cold, caps, asked, one_by_one
    page, cold, caps, asked, one_by_one = direct(gateway, "member", run)
    verbs = [c.split(" ")[0].upper() for c in cold]
    if gateway.stack.exchange_proxy:
        # Exchange sends its capabilities neither in its greeting nor with its login's OK
        # (gateway.devstack.exchange_imap): asked for after login only.
        assert verbs[:3] == ["AUTHENTICATE", "CAPABILITY", "SELECT"], verbs
    else:
        # Dovecot sends them in both: not asked for, before or after login.
        assert verbs[:2] == ["AUTHENTICATE", "SELECT"], verbs
    fetches = [c for c in cold if c.upper().startswith("FETCH ")]
    assert len(fetches) == 1 and "ENVELOPE" in fetches[0], cold
    assert not any("(UID FLAGS)" in c for c in cold), cold
    assert caps == asked and "IDLE" in caps
    assert page.messages and page.messages == one_by_one
