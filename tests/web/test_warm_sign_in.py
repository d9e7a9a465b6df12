"""Sign-in begins the inbox's IMAP work (``ImapPool.warm``, from the callback), against the
Exchange personality: by the time the browser follows the redirect the member's connection
is open and the inbox's first page built, and that page is handed over after one NOOP
(``gateway.mail.warmed``), over the same one login. It is handed over once, while fresh, to
the inbox's first page only, not after a change through the connection nor when the NOOP
brings news. Nothing is opened for a sign-in landing elsewhere, nor for a member the failover
switch would refuse. A take still running when the gateway stops is cancelled; one that fails
is left to the page, with only its kind logged."""

from __future__ import annotations

import asyncio
import re
from html import unescape
from typing import Any

from gateway.devstack.users import user
from gateway.errors import UpstreamUnavailable
from gateway.mail import imap_pool, mailbox, warmed
from tests.conftest import Gateway, LoopThread, found, running_gateway, sign_in
from tests.web.mailhelp import deliver, message, own_pool, unique


def _pool(gw: Gateway) -> imap_pool.ImapPool:
    pool: imap_pool.ImapPool = gw.app.state.gateway.services.imap_pool
    return pool


def _settle(gw: Gateway) -> None:
    """Wait for the takes begun at sign-in to end."""
    async def settle() -> None:
        await asyncio.gather(*list(_pool(gw)._warming), return_exceptions=True)
    gw.loop.run(settle())


def _recording(slot: Any) -> list[str]:
    """The commands written on the slot's connection from now on (tags dropped)."""
    sent: list[str] = []
    protocol = slot.conn.client.protocol
    send = protocol.send

    def sending(line: str, scrub: str | None = None) -> None:
        sent.append(line.split(" ", 1)[1])
        send(line, scrub)
    protocol.send = sending
    return sent


def _row(uid: int) -> re.Pattern[str]:
    return re.compile(r'<li class="row( unread)?">\s*<input[^>]+value="' + str(uid) + '"')


def _signed_in_and_settled(gw: Gateway, subject: str) -> tuple[Any, Any, int]:
    """A client signed in with the callback's take ended, its slot, and a new message's UID."""
    assert gw.stack.mail is not None
    email = user("member").email
    uid = deliver(gw, "member", message(subject))
    logins = gw.stack.mail.imap_logins(email)
    client = sign_in(gw, "member")            # the callback's 303, not yet followed
    _settle(gw)
    [slot] = _pool(gw)._slots.values()
    assert slot.conn is not None and slot.conn.alive
    assert slot.conn.folder_cache is not None and slot.summaries
    assert gw.stack.mail.imap_logins(email) == logins + 1
    return client, slot, uid


def test_the_inbox_after_sign_in_is_handed_the_page_built_at_sign_in(
        exchange_gateway: Gateway) -> None:
    gw = exchange_gateway
    assert gw.stack.mail is not None
    email = user("member").email
    subject = unique("Waiting at sign-in")
    client, slot, uid = _signed_in_and_settled(gw, subject)
    logins = gw.stack.mail.imap_logins(email)
    sent = _recording(slot)
    inbox = client.get("/")
    assert inbox.status_code == 200 and subject in inbox.text
    assert found(_row(uid).search(inbox.text)).group(1) == " unread"
    # Only news asked for: no login, folder list, SELECT, envelopes or flags.
    assert [c.upper() for c in sent] == ["NOOP"], sent
    # Once only: the next page asks for news and flags, as a steady page does.
    sent.clear()
    assert client.get("/").status_code == 200
    assert [c.split(" ")[0].upper() for c in sent] == ["NOOP", "FETCH"], sent
    assert sent[1].endswith("(UID FLAGS)"), sent
    assert gw.stack.mail.imap_logins(email) == logins


def test_a_change_since_sign_in_means_the_page_is_asked_for_again(
        exchange_gateway: Gateway) -> None:
    """Marked read through the member's connection after the callback's take (as another
    tab's action would be): the page shows it read, asked for afresh."""
    gw = exchange_gateway
    client, slot, uid = _signed_in_and_settled(gw, unique("Read before the page"))
    pool, key = _pool(gw), next(iter(_pool(gw)._slots))

    async def mark_read(conn: Any) -> None:
        await mailbox.set_flags(conn, "INBOX", [uid], "\\Seen", True)
    gw.loop.run(pool.run(key, user("member").email, key, mark_read))
    sent = _recording(slot)
    inbox = client.get("/")
    assert found(_row(uid).search(inbox.text)).group(1) is None
    assert any(c.upper().startswith("FETCH") or c.upper().startswith("UID FETCH")
               for c in sent), sent


def test_mail_come_since_sign_in_means_the_page_is_asked_for_again(
        exchange_gateway: Gateway) -> None:
    """Delivered after the callback's take, before the page: the page's NOOP hears of it."""
    gw = exchange_gateway
    client, slot, _ = _signed_in_and_settled(gw, unique("Before the newcomer"))
    newcomer = unique("Came in while the browser followed the redirect")
    uid = deliver(gw, "member", message(newcomer))
    sent = _recording(slot)
    inbox = client.get("/")
    assert found(_row(uid).search(inbox.text)).group(1) == " unread"
    assert len(sent) > 1 and sent[0].upper() == "NOOP", sent


def test_a_page_built_at_sign_in_too_long_ago_is_asked_for_again(
        exchange_gateway: Gateway, monkeypatch: Any) -> None:
    gw = exchange_gateway
    client, slot, _ = _signed_in_and_settled(gw, unique("Signed in and looked away"))
    monkeypatch.setattr(warmed, "FRESH_SECONDS", 0.0)
    sent = _recording(slot)
    assert client.get("/").status_code == 200
    assert [c.split(" ")[0].upper() for c in sent] == ["NOOP", "FETCH"], sent


def test_only_the_inboxs_first_page_takes_the_hand_over(exchange_gateway: Gateway) -> None:
    gw = exchange_gateway
    client, slot, _ = _signed_in_and_settled(gw, unique("Another folder first"))
    sent = _recording(slot)
    page = client.get("/mail", params={"f": "Sent Items"})
    assert page.status_code == 200 and "Sent Items" in unescape(page.text)
    assert sent, "Sent Items was not asked for"
    assert slot.conn.warmed is None           # not kept for a later inbox page either


def test_a_sign_in_landing_elsewhere_opens_no_mailbox(gateway: Gateway) -> None:
    sign_in(gateway, "member", next_path="/calendar")
    pool = _pool(gateway)
    assert not pool._warming and not pool._slots


def test_a_member_the_switch_refuses_has_no_mailbox_opened(
        stack: Any, loop_thread: LoopThread, tmp_path: Any) -> None:
    with running_gateway(stack, loop_thread, tmp_path,
                         failover__initial_mode="standby") as gw:
        client = sign_in(gw, "member")
        pool = _pool(gw)
        assert not pool._warming and not pool._slots
        # And the member is shown the standby page, as before.
        page = client.get("/")
        assert "this standby route is closed" in unescape(page.text), page.status_code
        assert not pool._slots


def test_a_warm_take_still_running_is_cancelled_on_close_and_failures_stay_quiet(
        gateway: Gateway, caplog: Any) -> None:
    pool = own_pool(gateway)
    email = user("member").email

    async def forever(conn: Any) -> None:
        await asyncio.Event().wait()

    async def refused(conn: Any) -> None:
        raise UpstreamUnavailable("The mail server is not answering just now.")

    async def run() -> tuple[bool, int]:
        pool.warm("a", email, "a", forever)
        pool.warm("b", email, "b", refused)
        await asyncio.sleep(0.5)          # both logged in; "b" has failed
        running = len(pool._warming)
        await pool.close_all()            # would hang if "a" were not cancelled
        return not pool._warming and not pool._slots, running
    with caplog.at_level("INFO", logger="gateway.mail.imap_pool"):
        closed, running = gateway.loop.run(run())
    assert running == 1 and closed
    notes = [r.getMessage() for r in caplog.records if "not warmed" in r.getMessage()]
    assert notes == ["mail connection not warmed at sign-in: UpstreamUnavailable"]
