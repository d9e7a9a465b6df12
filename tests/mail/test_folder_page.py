"""A folder page's IMAP work (``mailbox.folders_and_page``) against real Dovecot, and through
the Exchange proxy when the suite runs with it: when the folder list must be asked for,
SELECT and LIST are written together, the page's FETCH after SELECT's answer and the STATUS
batch after LIST's, and the result is what asking one after the other gives. A connection
lost in the middle is one plain UpstreamUnavailable, which the pool's one reconnect then
answers. The read page asks for the folder list beside the message's flags the same way
(``mailbox.together``)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.devstack.users import user
from gateway.errors import NotFound, UpstreamUnavailable
from gateway.mail import mailbox
from gateway.mail.imap import ImapConn
from tests.conftest import Gateway, sign_in
from tests.web.mailhelp import deliver, direct, message, own_pool, unique


def _watch(conn: ImapConn) -> list[tuple[str, int]]:
    """Each command the connection writes, as (verb, tagged answers read before it)."""
    protocol = conn.client.protocol
    events: list[tuple[str, int]] = []
    answered = [0]
    send, done, status_many = protocol.send, protocol._response_done, protocol.status_many

    def sending(line: str, scrub: str | None = None) -> None:
        words = line.split(" ", 3)
        events.append((words[2] if words[1].upper() == "UID" else words[1], answered[0]))
        send(line, scrub)

    def answer(line: bytes) -> None:
        answered[0] += 1
        done(line)

    async def statuses(mailboxes: Any, items: str, timeout: float | None = None) -> Any:
        # status_many writes its batch itself, at once when no SELECT is pending (the case
        # here: this runs after SELECT's answer); each of its answers counts as one.
        events.extend(("STATUS", answered[0]) for _ in mailboxes)
        return await status_many(mailboxes, items, timeout)

    protocol.send, protocol._response_done, protocol.status_many = sending, answer, statuses
    return events


def test_a_cold_folder_page_writes_select_and_list_together(gateway: Gateway) -> None:
    subject = unique("Folder page")
    deliver(gateway, "member", message(subject))

    async def together(conn: ImapConn) -> tuple[Any, Any, list[tuple[str, int]]]:
        events = _watch(conn)
        folders, page = await mailbox.folders_and_page(conn, "INBOX")
        return folders, page, list(events)   # before the LOGOUT on leaving

    async def one_by_one(conn: ImapConn) -> tuple[Any, Any]:
        folders = await mailbox.list_folders(conn)
        return folders, await mailbox.fetch_page(conn, "INBOX")

    folders, page, events = direct(gateway, "member", together)
    verbs = [verb.upper() for verb, _ in events]
    assert verbs[:2] == ["SELECT", "LIST"], events
    select, listing = events[:2]
    # SELECT and LIST went out together, before any answer came.
    assert select[1] == listing[1] == 0, events
    fetch = next(at for verb, at in events if verb.upper() == "FETCH")
    statuses = [at for verb, at in events if verb == "STATUS"]
    assert len(statuses) == sum(f.selectable for f in folders) and statuses, events
    # FETCH after SELECT's answer (it needs the folder's size) and STATUS after LIST's (it
    # needs the names); Dovecot answers in turn, SELECT first. Neither waited for the other:
    # both went before any of their own answers came.
    assert 1 <= fetch <= 2 and min(statuses) == 2 and max(statuses) <= 2, events
    assert set(verbs) == {"SELECT", "LIST", "FETCH", "STATUS"}, events   # nothing else asked
    assert subject in [m.subject for m in page.messages]
    assert (folders, page) == direct(gateway, "member", one_by_one)

    async def cached(conn: ImapConn) -> list[tuple[str, int]]:
        await mailbox.folders_and_page(conn, "INBOX")
        events = _watch(conn)
        await mailbox.folders_and_page(conn, "INBOX")
        return list(events)
    # The folder list is kept for FOLDER_CACHE_SECONDS: the next page asks only for the
    # page's UIDs and flags (and for news, a NOOP, once per take of the pool's lock, which
    # this bare connection has none of: gateway.mail.imap.ImapConn.select).
    assert [v.upper() for v, _ in direct(gateway, "member", cached)] == ["FETCH"]


def test_a_connection_lost_between_list_and_fetch_is_one_plain_error(
        gateway: Gateway) -> None:
    pool = own_pool(gateway)
    subject = unique("After the drop")
    deliver(gateway, "member", message(subject))
    seen: list[type[BaseException]] = []

    async def work(conn: ImapConn) -> Any:
        if not seen:
            protocol = conn.client.protocol
            send = protocol.send

            def sending(line: str, scrub: str | None = None) -> None:
                send(line, scrub)
                if " FETCH " in line:       # LIST and FETCH both written, neither answered
                    protocol.transport.abort()
            protocol.send = sending
        try:
            return await mailbox.folders_and_page(conn, "INBOX")
        except BaseException as exc:
            seen.append(type(exc))
            raise

    async def run() -> Any:
        try:
            return await pool.run("k", user("member").email, "acct", work)
        finally:
            await pool.close_all()
    folders, page = gateway.loop.run(run())
    # One plain error (not an ExceptionGroup, which the pool would not retry), then the
    # second attempt, on a new connection, gave the page.
    assert seen == [UpstreamUnavailable]
    assert any(f.name == "INBOX" and f.total >= 1 for f in folders)
    assert subject in [m.subject for m in page.messages]


def test_a_missing_folder_is_not_found(gateway: Gateway) -> None:
    async def missing(conn: ImapConn) -> Any:
        return await mailbox.folders_and_page(conn, unique("No such folder"))
    with pytest.raises(NotFound):
        direct(gateway, "member", missing)


def test_the_read_page_asks_for_the_folder_list_beside_the_message_flags(
        gateway: Gateway) -> None:
    """Opening a message once the folder list is no longer kept: LIST and the FETCH of the
    message's UID and flags (its page and its Flag button) are written together."""
    client = sign_in(gateway, "member")
    subject = unique("Read beside")
    uid = deliver(gateway, "member", message(subject))
    assert client.get("/mail", params={"f": "INBOX"}).status_code == 200
    pool = gateway.app.state.gateway.services.imap_pool
    conn = next(s.conn for s in pool._slots.values() if s.conn is not None)
    conn.folder_cache = None          # as when FOLDER_CACHE_SECONDS have passed
    events = _watch(conn)
    page = client.get("/mail/read", params={"f": "INBOX", "uid": uid})
    assert page.status_code == 200 and subject in page.text
    listing = next(i for i, (verb, _) in enumerate(events) if verb.upper() == "LIST")
    after = events[listing + 1]
    assert after[0].upper() == "FETCH" and after[1] == events[listing][1], events
    assert [v.upper() for v, _ in events].count("LIST") == 1, events
