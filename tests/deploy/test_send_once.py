"""A message is sent by exactly one instance, once, even when the instance that was
sending it dies: two gateways on one PostgreSQL."""

from __future__ import annotations

import re
from email.message import EmailMessage

from gateway.mail.imap import ImapConn
from gateway.mail.outbox import SEND_LEASE, Outbox
from tests.conftest import Gateway, sign_in
from tests.deploy.conftest import Pair
from tests.web.mailhelp import direct, unique
from tests.web.test_mail import compose_form


def count_in(gw: Gateway, who: str, folder: str, subject: str) -> int:
    async def fn(conn: ImapConn) -> int:
        from gateway.mail import mailbox
        return len(await mailbox.search_uids(conn, folder, ["SUBJECT", f'"{subject}"']))
    return int(direct(gw, who, fn))


def test_instance_dying_mid_send_leaves_the_message_sent_once(pair: Pair) -> None:
    """The first instance claims a message and reaches the mail server, then dies before
    recording it. The member presses Send again on the second: refused while the first
    one's claim lasts, then recognised in Sent Items and not sent again."""
    a, b = pair.first, pair.second
    client = sign_in(a, "member")
    session_cookie = dict(client.cookies)
    action, fields = compose_form(client, "/mail/compose")
    subject = unique("Sent once")
    fields.update(to="jo.evans@council.example", subject=subject, body="once", do="draft")
    assert client.post(action, data=fields, headers={"Origin": a.url}).status_code == 200
    outbox_id = fields["outbox_id"]
    svc_a = a.app.state.gateway.services
    session = a.loop.run(svc_a.store.get_session(client.cookies.get("__Host-gw_session")))
    outbox = Outbox(svc_a.store, svc_a.keyring)
    # What instance A did before it died: claimed the message, counted the attempt, and the
    # server accepted it (a copy in the recipient's Inbox and the sender's Sent Items, with
    # the Message-ID the gateway gives this outbox record).
    assert a.loop.run(outbox.claim(outbox_id, session.user_oid, a.clock()))
    draft = a.loop.run(outbox.load(outbox_id, session.user_oid))
    assert draft is not None
    draft.attempts = 1
    a.loop.run(outbox.save(outbox_id, session.user_oid, draft, "compose", a.clock()))
    sent = EmailMessage()
    sent["From"], sent["To"], sent["Subject"] = session.email, "jo.evans@council.example", subject
    sent["Message-ID"] = f"<{outbox_id}@council.example>"
    sent.set_content("once")
    a.stack.mail.deliver("jo.evans@council.example", sent.as_bytes())
    a.stack.mail.deliver(session.email, sent.as_bytes(), folder="Sent Items")
    a.stop()

    retry = b.client()
    retry.cookies.update(session_cookie)
    page = retry.get("/mail/compose", params={"outbox": outbox_id})
    assert page.status_code == 200
    form = re.search(r'<form method="post" action="([^"]+)"[^>]*id="compose-form"', page.text)
    from html import unescape
    assert form, page.text
    action_b = unescape(form.group(1))
    fields["do"] = "send"
    r = retry.post(action_b, data=fields, headers={"Origin": b.url})
    assert r.status_code == 409 and "being sent already" in r.text
    b.clock.advance(SEND_LEASE + 1)
    r = retry.post(action_b, data=fields, headers={"Origin": b.url})
    assert r.status_code == 303, r.text
    assert count_in(b, "member2", "INBOX", subject) == 1
