"""Sign-in begins the inbox's IMAP work (``ImapPool.warm``, from the callback), against the
Exchange personality: by the time the browser follows the redirect the member's connection
is open and the page's summaries parsed, so the inbox asks only for news and flags, over the
same one login. Nothing is opened for a sign-in landing elsewhere, nor for a member the
failover switch would refuse. A take still running when the gateway stops is cancelled; one
that fails is left to the page, with only its kind logged."""

from __future__ import annotations

import asyncio
from html import unescape
from typing import Any

from gateway.devstack.users import user
from gateway.errors import UpstreamUnavailable
from gateway.mail import imap_pool
from tests.conftest import Gateway, LoopThread, running_gateway, sign_in
from tests.web.mailhelp import deliver, message, own_pool, unique


def _pool(gw: Gateway) -> imap_pool.ImapPool:
    pool: imap_pool.ImapPool = gw.app.state.gateway.services.imap_pool
    return pool


def _settle(gw: Gateway) -> None:
    """Wait for the takes begun at sign-in to end."""
    async def settle() -> None:
        await asyncio.gather(*list(_pool(gw)._warming), return_exceptions=True)
    gw.loop.run(settle())


def test_the_inbox_after_sign_in_finds_its_work_done(exchange_gateway: Gateway) -> None:
    gw = exchange_gateway
    assert gw.stack.mail is not None
    email = user("member").email
    subject = unique("Waiting at sign-in")
    deliver(gw, "member", message(subject))
    logins = gw.stack.mail.imap_logins(email)
    client = sign_in(gw, "member")            # the callback's 303, not yet followed
    pool = _pool(gw)
    _settle(gw)
    [slot] = pool._slots.values()
    assert slot.conn is not None and slot.conn.alive
    assert slot.conn.folder_cache is not None and slot.summaries
    assert gw.stack.mail.imap_logins(email) == logins + 1

    sent: list[str] = []
    protocol = slot.conn.client.protocol
    send = protocol.send

    def sending(line: str, scrub: str | None = None) -> None:
        sent.append(line.split(" ", 1)[1])
        send(line, scrub)
    protocol.send = sending
    inbox = client.get("/")
    assert inbox.status_code == 200 and subject in inbox.text
    # News and flags only: no login, folder list, SELECT or envelopes again.
    assert [c.split(" ")[0].upper() for c in sent] == ["NOOP", "FETCH"], sent
    assert sent[1].endswith("(UID FLAGS)"), sent
    assert gw.stack.mail.imap_logins(email) == logins + 1


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
