"""The sender and the outbox: a reply reads its outbox record once and makes five store
calls in all (it made nine), the send rule (claim once, check Sent Items on a later try,
"Send anyway"), and the request-scoped outbox's memory. Against real Dovecot, aiosmtpd and
SQLite; the store is counted by a subclass given to ``create_app`` (its store seam)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from gateway.crypto import KeyRing
from gateway.devstack.stack import DevStack
from gateway.devstack.users import user
from gateway.errors import Conflict
from gateway.mail import imap_pool
from gateway.mail.outbox import Draft, Outbox
from gateway.mail.sender import Sender
from gateway.mail.session import MailSession
from gateway.store.sqlite import SqliteStore
from tests.conftest import Gateway, LoopThread, running_gateway, sign_in
from tests.web.mailhelp import deliver, find_uid, flags_of, message, own_pool, unique
from tests.web.test_mail import compose_form


class CountingStore(SqliteStore):
    """The real SQLite store, noting each outbox call it answers."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.calls: list[str] = []

    async def get_outbox(self, outbox_id: str, user_oid: str) -> Any:
        self.calls.append("get")
        return await super().get_outbox(outbox_id, user_oid)

    async def put_outbox(self, rec: Any) -> None:
        self.calls.append("put")
        await super().put_outbox(rec)

    async def claim_outbox(self, outbox_id: str, user_oid: str, now: float,
                           lease_seconds: float) -> Any:
        self.calls.append("claim")
        return await super().claim_outbox(outbox_id, user_oid, now, lease_seconds)

    async def release_outbox(self, outbox_id: str, user_oid: str) -> None:
        self.calls.append("release")
        await super().release_outbox(outbox_id, user_oid)


@pytest.fixture
def counted(stack: DevStack, loop_thread: LoopThread,
            tmp_path: Path) -> Iterator[tuple[Gateway, CountingStore]]:
    store = CountingStore(str(tmp_path / "gw.db"))
    with running_gateway(stack, loop_thread, tmp_path, store=store) as gw:
        yield gw, store


def test_a_reply_reads_its_outbox_record_once(counted: tuple[Gateway, CountingStore]) -> None:
    gw, store = counted
    client = sign_in(gw, "member")
    subject = unique("Store calls")
    uid = deliver(gw, "member", message(subject, sender="Cllr Jo Evans "
                                        "<jo.evans@council.example>"))
    action, fields = compose_form(client, "/mail/compose?" + urlencode(
        {"mode": "reply", "f": "INBOX", "uid": uid}))
    fields["do"] = "send"
    store.calls.clear()
    r = client.post(action, data=fields, headers={"Origin": gw.url})
    assert r.status_code == 303
    # Read once; kept; claimed; "sending"; the sent marker.
    assert store.calls == ["get", "put", "claim", "put", "put"]
    assert find_uid(gw, "member2", "Re: " + subject) is not None
    assert "answered" in flags_of(gw, "member", "INBOX", uid)


def _session(gw: Any) -> tuple[imap_pool.ImapPool, MailSession]:
    pool = own_pool(gw, "member")
    return pool, MailSession(pool, "k", user("member").email, "acct")


def test_a_later_try_checks_sent_items_and_send_anyway_does_not(
    counted: tuple[Gateway, CountingStore],
) -> None:
    """A second try of a message already in Sent Items is not sent again; a first try, and
    the member's own "Send anyway", are; a message being sent cannot be claimed twice."""
    gw, store = counted
    ring = KeyRing([os.urandom(32)])
    msgid = f"<{unique('sent').replace(' ', '.')}@council.example>"
    copy = re.sub(rb"(?m)^Message-ID: .*$", b"Message-ID: " + msgid.encode(),
                  message(unique("In Sent Items")))
    deliver(gw, "member", copy, folder="Sent Items")
    pool, ms = _session(gw)
    sent: list[str] = []

    async def run() -> list[Any]:
        box = Outbox(store, ring)
        sender = Sender(ms, box, "oid-1", lambda: 1000.0)

        async def transmit() -> None:
            sent.append("sent")
        out: list[Any] = []
        first = Draft(to="a@council.example")
        await box.save("outbox-id-first-0001", "oid-1", first, "compose", 1000.0)
        out.append(await sender.send("outbox-id-first-0001", first, msgid, True, transmit))
        again = Draft(to="a@council.example", attempts=1)
        await box.save("outbox-id-again-0001", "oid-1", again, "failed", 1000.0)
        out.append(await sender.send("outbox-id-again-0001", again, msgid, True, transmit))
        anyway = Draft(to="a@council.example", attempts=1)
        await box.save("outbox-id-anywy-0001", "oid-1", anyway, "failed", 1000.0)
        out.append(await sender.send("outbox-id-anywy-0001", anyway, msgid, False, transmit))
        # The first is still claimed (not yet marked sent): a second claim is refused.
        try:
            await sender.send("outbox-id-first-0001", first, msgid, True, transmit)
            out.append("sent twice")
        except Conflict:
            out.append("conflict")
        out.append(await box.state("outbox-id-again-0001", "oid-1"))
        await pool.close_all()
        return out
    first, again, anyway, twice, state = gw.loop.run(run())
    assert sent == ["sent", "sent"]              # the first try and "Send anyway"
    assert not first.held and not again.held and not anyway.held
    assert twice == "conflict"
    assert state == "sending"


def test_request_outbox_remembers_and_a_shared_one_does_not(
    counted: tuple[Gateway, CountingStore],
) -> None:
    gw, store = counted
    ring = KeyRing([os.urandom(32)])

    async def run() -> tuple[list[str], list[str], str | None]:
        shared = Outbox(store, ring)
        await shared.save("outbox-id-share-0001", "oid", Draft(subject="s"), "compose", 1.0)
        store.calls.clear()
        await shared.state("outbox-id-share-0001", "oid")
        await shared.load("outbox-id-share-0001", "oid")
        plain = list(store.calls)
        store.calls.clear()
        mine = Outbox(store, ring, remember=True)
        await mine.state("outbox-id-share-0001", "oid")
        draft = await mine.load("outbox-id-share-0001", "oid")
        assert draft is not None and draft.subject == "s"
        await mine.save("outbox-id-share-0001", "oid", draft, "failed", 2.0)
        state = await mine.state("outbox-id-share-0001", "oid")
        await mine.discard("outbox-id-share-0001", "oid")
        gone = await mine.state("outbox-id-share-0001", "oid")
        remembered = list(store.calls)
        assert gone is None
        return plain, remembered, state
    plain, remembered, state = gw.loop.run(run())
    assert plain == ["get", "get"]
    assert remembered == ["get", "put", "get"]     # after the discard it asks again
    assert state == "failed"
