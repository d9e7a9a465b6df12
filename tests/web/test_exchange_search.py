"""Search against the Exchange personality (gateway.devstack.exchange_imap), which refuses
``SEARCH CHARSET UTF-8`` as Exchange Online does: ASCII terms, non-ASCII senders and subjects
(found, and nothing else), a term with no ASCII in it, and the Sent Items check before a
retried send. Unit tests of the search keys themselves are at the end."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

from gateway.crypto import KeyRing
from gateway.devstack.users import user
from gateway.mail import imap
from gateway.mail.outbox import Outbox
from gateway.mail.search import Query, ascii_fragment, normalise
from gateway.mail.sender import Sender
from gateway.mail.session import MailSession
from gateway.store.sqlite import SqliteStore
from tests.conftest import Gateway, sign_in
from tests.web.mailhelp import deliver, direct, message, own_pool, unique


def count(page: str) -> int:
    found = re.search(r'id="results-title">(\d+) results?<', page)
    assert found, page[:2000]
    return int(found.group(1))


def test_the_stand_in_refuses_charset_utf8_as_exchange_does(exchange_gateway: Gateway) -> None:
    """The server under these tests is as strict as Exchange: a CHARSET UTF-8 search is
    refused with BADCHARSET, so the passes below are the gateway's doing."""
    async def raw(conn: imap.ImapConn) -> tuple[str, list[Any]]:
        await conn.select("INBOX", readonly=True)
        resp = await conn.client.protocol.search("ALL", charset="UTF-8", by_uid=True)
        return resp.result, resp.lines
    result, lines = direct(exchange_gateway, "member", raw)
    assert result == "NO"
    assert any(b"BADCHARSET (US-ASCII)" in bytes(x) for x in lines
               if isinstance(x, bytes | bytearray))


def test_ascii_search_on_exchange(exchange_gateway: Gateway) -> None:
    client = sign_in(exchange_gateway, "member")
    token = unique("Plain")
    deliver(exchange_gateway, "member", message(token + " hall",
                                                sender="Clerk <clerk@council.example>"))
    r = client.get("/mail/search", params={"q": token})
    assert r.status_code == 200 and count(r.text) == 1 and "hall" in r.text
    r = client.get("/mail/search", params={"from": "clerk@council.example", "subject": token})
    assert count(r.text) == 1


def test_non_ascii_sender_found_and_nothing_else(exchange_gateway: Gateway) -> None:
    """"Siân" finds Siân Llŷr Pennant, not "Sian" without the circumflex nor "Siôn"."""
    gw = exchange_gateway
    client = sign_in(gw, "member")
    token = unique("Footpath")
    deliver(gw, "member", message(token + " one",
                                  sender="Siân Llŷr Pennant <pennant@mail.example>"))
    deliver(gw, "member", message(token + " two", sender="Sian Llyr <sian.llyr@mail.example>"))
    deliver(gw, "member", message(token + " three", sender="Siôn Jones <sion@mail.example>"))
    for term in ("Siân", "SIÂN", "llŷr", "Siân Llŷr"):
        r = client.get("/mail/search", params={"from": term, "subject": token})
        assert r.status_code == 200 and count(r.text) == 1, term
        assert "one" in r.text and "three" not in r.text
    # The same letters typed decomposed (a + combining circumflex) match too (NFKC).
    r = client.get("/mail/search", params={"from": "Sia\u0302n", "subject": token})
    assert count(r.text) == 1
    # Free text, across folders.
    r = client.get("/mail/search", params={"q": "Llŷr", "subject": token, "scope": "all"})
    assert count(r.text) == 1


def test_non_ascii_subject_and_recipient(exchange_gateway: Gateway) -> None:
    gw = exchange_gateway
    client = sign_in(gw, "member")
    tag = uuid.uuid4().hex[:10]
    sender = f"Clerk <clerk-{tag}@council.example>"
    deliver(gw, "member", message(f"Pont Llŷr ar gau {tag}", sender=sender,
                                  to="Gwên Ifans <alex.morgan@council.example>"))
    deliver(gw, "member", message(f"Pont Llyr ar gau {tag}", sender=sender))
    r = client.get("/mail/search", params={"subject": "Llŷr", "from": f"clerk-{tag}"})
    assert count(r.text) == 1 and "Pont Llŷr" in r.text
    r = client.get("/mail/search", params={"to": "Gwên", "from": f"clerk-{tag}"})
    assert count(r.text) == 1
    r = client.get("/mail/search", params={"subject": "Llŵr", "from": f"clerk-{tag}"})
    assert count(r.text) == 0


def test_a_term_with_no_ascii_searches_the_newest_messages(exchange_gateway: Gateway) -> None:
    """"ŵŷ" has nothing to search on the server: the newest messages are checked instead."""
    gw = exchange_gateway
    client = sign_in(gw, "member")
    tag = uuid.uuid4().hex[:10]
    deliver(gw, "member", message(f"Prawf ŴŶ {tag}", sender=f"A <a-{tag}@mail.example>"))
    deliver(gw, "member", message(f"Prawf WY {tag}", sender=f"A <a-{tag}@mail.example>"))
    r = client.get("/mail/search", params={"subject": "ŵŷ", "from": f"a-{tag}"})
    assert count(r.text) == 1 and "ŴŶ" in r.text


def test_sent_items_check_finds_the_sent_copy_on_exchange(exchange_gateway: Gateway,
                                                          tmp_path: Path) -> None:
    """The "already in Sent Items?" check runs on Exchange: found is True, absent is False
    (not "could not check", which would hold every retry)."""
    gw = exchange_gateway
    msgid = f"<{uuid.uuid4().hex}@council.example>"
    copy = re.sub(rb"(?m)^Message-ID: .*$", b"Message-ID: " + msgid.encode(),
                  message(unique("Sent copy")))
    deliver(gw, "member", copy, folder="Sent Items")
    u = user("member")

    async def run() -> tuple[bool | None, bool | None]:
        pool = own_pool(gw, "member")
        box = Outbox(SqliteStore(str(tmp_path / "o.db")), KeyRing([os.urandom(32)]))
        sender = Sender(MailSession(pool, "k", u.email, "acct"), box, "oid", lambda: 0.0)
        try:
            return (await sender.already_sent(msgid),
                    await sender.already_sent(f"<{uuid.uuid4().hex}@council.example>"))
        finally:
            await pool.close_all()
    assert gw.loop.run(run()) == (True, False)


# ---- the search keys ---------------------------------------------------------------------

def test_search_keys_are_ascii_with_checks_for_the_rest() -> None:
    plan = Query(sender="Siân", subject="Budget").plan()
    assert plan.criteria == ["FROM", '"Si"', "SUBJECT", '"Budget"']
    assert [(c.field, c.needle) for c in plan.checks] == [("from", "siân")]
    assert not plan.window
    assert all(k.isascii() for k in Query(q="Llŷr", to="Gwên", body="café").plan().criteria)
    assert Query(subject="ŵŷ").plan().window
    assert Query().plan().criteria == ["ALL"]


def test_ascii_fragment_starts_a_word() -> None:
    assert ascii_fragment("Siân") == "Si"
    assert ascii_fragment("Pont Llŷr") == "Pont"
    assert ascii_fragment("ŷr") is None          # "r" does not start a word and is too short
    assert normalise("SIA\u0302N") == normalise("siân")
