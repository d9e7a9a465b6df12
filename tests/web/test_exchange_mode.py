"""The mail pages against a Dovecot that advertises only Exchange Online's capabilities
(no SORT, THREAD, CONDSTORE, ESEARCH, SPECIAL-USE): everything still works."""

from __future__ import annotations

from gateway.mail.imap import ImapConn
from tests.conftest import Gateway, csrf_of, sign_in
from tests.web.mailhelp import deliver, direct, find_uid, message, unique
from tests.web.test_mail import compose_form


def test_server_really_offers_only_the_exchange_set(exchange_gateway: Gateway) -> None:
    """The stand-in Dovecot's capabilities after login are Exchange's, not Dovecot's."""
    caps = direct(exchange_gateway, "member", lambda conn: _caps(conn))
    assert "SORT" not in caps and "ESEARCH" not in caps and "CONDSTORE" not in caps
    assert {"MOVE", "UIDPLUS", "IDLE"} <= caps


async def _caps(conn: ImapConn) -> set[str]:
    return set(conn.caps)


def test_list_read_move_search_send_in_exchange_mode(exchange_gateway: Gateway) -> None:
    """List, open, move, search and send all work with Exchange's capability set."""
    gw = exchange_gateway
    client = sign_in(gw, "member")
    subject = unique("Exchange mode")
    uid = deliver(gw, "member", message(subject, html="<p>Hello <b>there</b></p>"))
    listing = client.get("/mail")
    assert listing.status_code == 200 and subject in listing.text
    for name in ("Sent Items", "Deleted Items", "Junk Email"):
        assert name in listing.text
    assert client.get("/mail/read", params={"f": "INBOX", "uid": uid}).status_code == 200
    r = client.post("/mail/action", headers={"Origin": gw.url}, data={
        "csrf_token": csrf_of(client), "f": "INBOX", "uid": uid, "action": "archive"})
    assert r.status_code == 303
    assert find_uid(gw, "member", subject, "Archive") is not None
    found = client.get("/mail/search", params={"q": subject, "scope": "all"})
    assert "1 result" in found.text
    action, fields = compose_form(client, "/mail/compose")
    sent = unique("From exchange mode")
    fields.update(to="jo.evans@council.example", subject=sent, body="hi", do="send")
    assert client.post(action, data=fields, headers={"Origin": gw.url}).status_code == 303
    assert find_uid(gw, "member2", sent) is not None
