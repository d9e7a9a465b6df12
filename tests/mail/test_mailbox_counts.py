"""The connection's view of the selected folder stays true (against real Dovecot): the
EXPUNGEs that come with MOVE and EXPUNGE are counted, and message text that looks like an
untagged response is not."""

from __future__ import annotations

from gateway.mail import imap, mailbox
from tests.conftest import Gateway
from tests.web.mailhelp import deliver, direct, message, unique


async def _fresh_count(conn: imap.ImapConn, folder: str) -> int:
    conn.selected = None
    await conn.select(mailbox.mailbox_arg(folder))
    return conn.exists


def test_move_and_expunge_keep_the_count_and_the_next_page_works(gateway: Gateway) -> None:
    """After MOVE (and permanent delete) on the selected folder, the count matches a fresh
    SELECT and the next page of the folder opens."""
    a, b = unique("Count move"), unique("Count expunge")
    uid_a = deliver(gateway, "member", message(a))
    uid_b = deliver(gateway, "member", message(b))

    async def run(conn: imap.ImapConn) -> tuple[int, int, int, int, int]:
        first = await mailbox.fetch_page(conn, "INBOX")
        await mailbox.move(conn, "INBOX", [uid_a], "Archive")
        after_move = conn.exists
        await mailbox.remove_for_good(conn, "INBOX", [uid_b])
        after_expunge = conn.exists
        page = await mailbox.fetch_page(conn, "INBOX")
        return first.total, after_move, after_expunge, page.total, await _fresh_count(
            conn, "INBOX")

    before, after_move, after_expunge, page_total, fresh = direct(gateway, "member", run)
    assert after_move == before - 1
    assert after_expunge == before - 2
    assert page_total == fresh == before - 2


def test_message_text_that_looks_like_a_response_does_not_change_the_count(
    gateway: Gateway,
) -> None:
    """A body whose first line is "99999 EXISTS" is data: fetching it leaves the count."""
    subject = unique("Looks like IMAP")
    uid = deliver(gateway, "member", message(subject, text="99999 EXISTS\r\n3 EXPUNGE\r\n"))

    async def run(conn: imap.ImapConn) -> tuple[int, int]:
        await mailbox.fetch_page(conn, "INBOX")
        before = conn.exists
        await mailbox.uid_fetch(conn, uid, "(BODY.PEEK[1])", "open the message")
        await mailbox.fetch_page(conn, "INBOX")
        return before, conn.exists

    before, after = direct(gateway, "member", run)
    assert after == before < 99999


def test_page_of_names_the_page_that_holds_the_message(gateway: Gateway) -> None:
    """page_of (the list beside an open message, and Back) finds the page of fetch_page
    that lists the message, newest first; a message gone is page 1."""
    uids = [deliver(gateway, "member", message(unique(f"Page of {i}"))) for i in range(3)]

    async def run(conn: imap.ImapConn) -> list[tuple[int, bool]]:
        out = []
        for uid in uids:
            n = await mailbox.page_of(conn, "INBOX", uid, per_page=2)
            page = await mailbox.fetch_page(conn, "INBOX", n, per_page=2)
            out.append((n, uid in [m.uid for m in page.messages]))
        out.append((await mailbox.page_of(conn, "INBOX", 2**32 - 1, per_page=2), True))
        return out

    found = direct(gateway, "member", run)
    assert [n for n, _ in found] == [2, 1, 1, 1]
    assert all(listed for _, listed in found)
