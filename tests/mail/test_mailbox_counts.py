"""The connection's view of the selected folder stays true (against real Dovecot): the
EXPUNGEs that come with MOVE and EXPUNGE are counted, and message text that looks like an
untagged response is not. And the folder list's counts, asked in batches of STATUS commands
written at once, are those a STATUS of each folder alone gives."""

from __future__ import annotations

from gateway.mail import imap, mailbox
from gateway.mail.imap_mailboxes import parse_status
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


def _status_writes(conn: imap.ImapConn) -> list[int]:
    """From now on, the number of STATUS commands in each write to the server."""
    writes: list[int] = []
    transport = conn.client.protocol.transport
    write = transport.write

    def counting(data: bytes) -> None:
        if b" STATUS " in data:
            writes.append(data.count(b" STATUS "))
        write(data)
    transport.write = counting
    return writes


def test_folder_counts_are_those_of_one_status_each(gateway: Gateway) -> None:
    """The sidebar's counts, asked in one batch, are what a STATUS of each folder alone says
    (INBOX's unread count included), and the batch went out in one write."""
    deliver(gateway, "member", message(unique("Counted")))

    async def run(conn: imap.ImapConn) -> tuple[dict[str, tuple[int, int]],
                                                 dict[str, tuple[int | None, int | None]],
                                                 list[int]]:
        writes = _status_writes(conn)
        folders = await mailbox.list_folders(conn)
        batched = {f.name: (f.total, f.unseen) for f in folders if f.selectable}
        alone: dict[str, tuple[int | None, int | None]] = {}
        for name in batched:
            resp = await conn.call(conn.client.status(mailbox.mailbox_arg(name),
                                                      "(MESSAGES UNSEEN)"))
            (st,) = parse_status(resp.lines)
            alone["INBOX" if st.name.upper() == "INBOX" else st.name] = (st.messages,
                                                                        st.unseen)
        return batched, alone, writes[:1]

    batched, alone, first = direct(gateway, "member", run)
    assert len(batched) > 3 and batched["INBOX"][0] > 0
    assert batched == alone
    assert first == [len(batched)]


def test_a_folder_gone_since_list_loses_only_its_own_counts(gateway: Gateway) -> None:
    """A folder deleted between LIST and STATUS (elsewhere, by the member's other device):
    the server refuses its STATUS; the folders around it in the same batch keep their
    counts, and the connection goes on working."""
    async def run(conn: imap.ImapConn) -> tuple[set[str], int]:
        found = await conn.statuses(['"INBOX"', '"Deleted elsewhere 9f2c"', '"Archive"'])
        page = await mailbox.fetch_page(conn, "INBOX")
        return set(found), page.total

    found, total = direct(gateway, "member", run)
    assert found == {"INBOX", "Archive"}
    assert total > 0


def test_more_folders_than_one_batch_are_all_counted(gateway: Gateway) -> None:
    """A mailbox with more folders than ``STATUS_BATCH`` is asked in batches, each one write,
    and every folder gets its counts (a message put in the last one is counted)."""
    parent = unique("Batch")
    names = [f"{parent}/F{i:02d}" for i in range(imap.STATUS_BATCH + 3)]

    async def run(conn: imap.ImapConn) -> tuple[dict[str, int], list[int]]:
        try:
            for name in names:
                await conn.ok(conn.client.create(mailbox.mailbox_arg(name)), "create")
            await conn.ok(conn.client.append(message("In the last folder"),
                                             mailbox=mailbox.mailbox_arg(names[-1])), "append")
            writes = _status_writes(conn)
            folders = await mailbox.list_folders(conn)
            return {f.name: f.total for f in folders if f.name.startswith(parent)}, writes
        finally:
            for name in reversed([*names, parent]):
                await conn.call(conn.client.delete(mailbox.mailbox_arg(name)))

    counts, writes = direct(gateway, "member2", run)
    assert set(names) <= set(counts)
    assert counts[names[-1]] == 1 and sum(counts.values()) == 1
    assert len(writes) == 2 and writes[0] == imap.STATUS_BATCH
