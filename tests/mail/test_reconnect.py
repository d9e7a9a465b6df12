"""A connection the server ended, against Exchange's personality (the proxy in
gateway.devstack.exchange_imap, which ends a session with ``* BYE Session invalidated -
AccessTokenExpired`` when its token expires): the member's next page comes over a new login
and keeps the message summaries already parsed (``imap_pool._Slot.summaries``), asking only
for UIDs and flags and for the messages it has not seen, and still shows what changed while
no connection was open. Signing out (the slot dropped) forgets them."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway.devstack.tokens import OUTLOOK_AUDIENCE
from gateway.devstack.users import user
from gateway.mail import imap_pool, imap_protocol, mailbox
from gateway.mail.imap import ImapConn
from gateway.mail.mailbox import PAGE_ITEMS, Page
from tests.conftest import Gateway
from tests.web.mailhelp import deliver, direct, imap_target, message, unique

WHO = "member"


def _pool(gw: Gateway, lifetimes: list[int]) -> imap_pool.ImapPool:
    """A pool of the test's own whose n-th login gets a token living lifetimes[n] seconds
    (the last one for every login after)."""
    logins = 0

    async def token_for(account_id: str) -> str:
        nonlocal logins
        lifetime = lifetimes[min(logins, len(lifetimes) - 1)]
        logins += 1
        assert gw.stack.entra is not None
        token: str = gw.stack.entra.issue_access_token(
            user(WHO), OUTLOOK_AUDIENCE, ["IMAP.AccessAsUser.All"], lifetime=lifetime)
        return token
    return imap_pool.ImapPool(imap_target(gw), token_for)


class _Sent:
    """Records each command the pool's connections send (unchanged on the wire)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lines: list[str] = []
        original = imap_protocol._Protocol.send

        def send(protocol: Any, line: str, scrub: str | None = None) -> None:
            self.lines.append(line.split(" ", 1)[1])
            original(protocol, line, scrub)
        monkeypatch.setattr(imap_protocol._Protocol, "send", send)

    def take(self) -> list[str]:
        taken, self.lines = self.lines, []
        return taken


def _fetches(commands: list[str]) -> list[str]:
    return [c for c in commands if c.upper().startswith(("FETCH ", "UID FETCH "))]


def _page(gw: Gateway, pool: imap_pool.ImapPool) -> Page:
    page: Page = gw.loop.run(pool.run("acct", user(WHO).email, "acct",
                                      lambda conn: mailbox.fetch_page(conn, "INBOX")))
    return page


def _conn(pool: imap_pool.ImapPool) -> ImapConn | None:
    slot = pool._slots.get("acct")
    return slot.conn if slot is not None else None


def test_page_after_the_server_ended_the_connection_keeps_what_was_parsed(
        exchange_gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    gw = exchange_gateway
    assert gw.stack.mail is not None
    flagged_subject, gone_subject, kept_subject = (unique("Flagged while away"),
                                                   unique("Deleted while away"),
                                                   unique("Unchanged"))
    flagged = deliver(gw, WHO, message(flagged_subject))
    gone = deliver(gw, WHO, message(gone_subject))
    deliver(gw, WHO, message(kept_subject))
    # The first login's token lives 3 s: the proxy then ends the session, as Exchange does.
    pool = _pool(gw, [3, 3600])
    sent = _Sent(monkeypatch)
    try:
        first = _page(gw, pool)
        first_conn = _conn(pool)
        assert first_conn is not None
        assert {flagged, gone} <= {m.uid for m in first.messages}
        assert any(PAGE_ITEMS[1:-1] in f for f in _fetches(sent.take()))   # parsed in full

        # While it has no connection: another app flags one message, deletes another, and
        # new mail comes.
        async def elsewhere(conn: ImapConn) -> None:
            await mailbox.set_flags(conn, "INBOX", [flagged], "\\Flagged", True)
            await mailbox.remove_for_good(conn, "INBOX", [gone])
        direct(gw, WHO, elsewhere)
        new_subject = unique("Came while away")
        new = deliver(gw, WHO, message(new_subject))
        deadline = time.monotonic() + 15
        while first_conn.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not first_conn.alive, "the server did not end the expired session"
        sent.take()                                  # the other app's commands

        logins = gw.stack.mail.imap_logins(user(WHO).email)
        again = _page(gw, pool)
        commands = sent.take()
        assert _conn(pool) is not first_conn
        assert gw.stack.mail.imap_logins(user(WHO).email) == logins + 1
        # UIDs and flags of the range, then in full only the one message not seen before.
        fetches = _fetches(commands)
        assert len(fetches) == 2, fetches
        assert fetches[0].upper().startswith("FETCH ") and fetches[0].endswith("(UID FLAGS)")
        assert fetches[1] == f"UID FETCH {new} {PAGE_ITEMS}", fetches
        # And the page is as it stands on the server now.
        rows = {m.uid: m for m in again.messages}
        assert gone not in rows
        assert rows[flagged].flagged and not _flagged(first, flagged)
        assert rows[new].subject == new_subject
        assert again.total == first.total   # one came, one went
        direct_page: Page = direct(gw, WHO, lambda c: mailbox.fetch_page(c, "INBOX"))
        assert again.messages == direct_page.messages   # same as parsed from scratch

        # Signing out drops the slot, and the summaries with it: the next page parses anew.
        sent.take()                                  # the fresh connection's
        gw.loop.run(pool.drop("acct"))
        _page(gw, pool)
        after_drop = _fetches(sent.take())
        assert len(after_drop) == 1 and PAGE_ITEMS[1:-1] in after_drop[0], after_drop
    finally:
        gw.loop.run(pool.close_all())


def _flagged(page: Page, uid: int) -> bool:
    return next(m.flagged for m in page.messages if m.uid == uid)
