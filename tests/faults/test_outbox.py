"""The Outbox (issue 14, case 5): messages kept after a failure are listed, with Send and
Discard; a gateway SIGKILLed after the SMTP server took a message comes back with it listed,
and Send then finds it in Sent Items instead of sending it twice; old records are purged."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.devstack.users import user
from gateway.mail.outbox import MAX_AGE
from tests.conftest import form_fields, sign_in
from tests.faults.conftest import EXTERNAL, ProcGateway, Rig, compose_form, outbox_of, received
from tests.web.mailhelp import PDF, unique


def _post(gw: Any, client: Any, action: str, fields: dict[str, Any], **kw: Any) -> Any:
    return client.post(action, data=fields, headers={"Origin": gw.url}, **kw)


def _row_forms(page: str, outbox_id: str) -> dict[str, str]:
    start = page.index(f'id="kept-{outbox_id}"')
    chunk = page[start:page.index("</li>", start)]
    return form_fields(chunk)


def test_failed_send_is_listed_then_sent_from_the_outbox(rig: Rig) -> None:
    """A refused send is listed in the Outbox with its attachment; Send there sends it once,
    and it leaves the list."""
    gw = rig.gateway()
    client = sign_in(gw, "member")
    action, fields = compose_form(client, "/mail/compose")
    subject = unique("Refused once")
    fields.update(to=EXTERNAL, subject=subject, body="Try again later.", do="send")
    gw.stack.mail.refuse_next(451, "4.3.2 Try again later")
    r = _post(gw, client, action, fields, files={"attach": ("plan.pdf", PDF, "application/pdf")})
    assert r.status_code in (502, 503) and "Outbox" in r.text
    page = client.get("/mail/outbox")
    assert page.status_code == 200
    assert subject in page.text and "plan.pdf" in page.text and "Not sent" in page.text
    assert received(gw.stack, subject) == []
    sent = _post(gw, client, "/mail/outbox/send", _row_forms(page.text, fields["outbox_id"]))
    assert sent.status_code == 303, sent.text
    [copy] = received(gw.stack, subject)
    assert b"plan.pdf" in copy
    assert subject not in client.get("/mail/outbox").text
    assert [s for i, s, _ in outbox_of(gw, client) if i == fields["outbox_id"]] == ["sent"]


def test_discard_removes_the_kept_message(rig: Rig) -> None:
    """Discard removes a kept message from the Outbox and from the store."""
    gw = rig.gateway()
    client = sign_in(gw, "member")
    action, fields = compose_form(client, "/mail/compose")
    subject = unique("To discard")
    fields.update(to=EXTERNAL, subject=subject, body="Never mind.", do="send")
    gw.stack.mail.refuse_next()
    assert _post(gw, client, action, fields).status_code == 502
    page = client.get("/mail/outbox")
    assert subject in page.text
    r = _post(gw, client, "/mail/outbox/discard", _row_forms(page.text, fields["outbox_id"]))
    assert r.status_code == 303
    after = client.get(r.headers["location"])
    assert "discarded" in after.text and subject not in after.text
    assert [i for i, _, _ in outbox_of(gw, client) if i == fields["outbox_id"]] == []
    assert received(gw.stack, subject) == []


def test_purge_removes_records_past_their_age(rig: Rig) -> None:
    """The purge (run by the app's purge loop) removes outbox records older than MAX_AGE
    and keeps younger ones."""
    gw = rig.gateway()
    client = sign_in(gw, "member")
    action, fields = compose_form(client, "/mail/compose")
    fields.update(to=EXTERNAL, subject=unique("Old"), body="old", do="send")
    gw.stack.mail.refuse_next()
    _post(gw, client, action, fields)
    old_id = fields["outbox_id"]
    gw.clock.advance(MAX_AGE - 3600)
    client = sign_in(gw, "member")       # that session has long ended
    action, fields = compose_form(client, "/mail/compose")
    fields.update(to=EXTERNAL, subject=unique("Young"), body="young", do="send")
    gw.stack.mail.refuse_next()
    _post(gw, client, action, fields)
    gw.clock.advance(7200)
    gw.loop.run(gw.running().purge_once())
    store = gw.app.state.gateway.services.store
    ids = [r.id for r in gw.loop.run(store.list_outbox(user("member").oid))]
    assert old_id not in ids and fields["outbox_id"] in ids


def test_sigkill_after_the_server_took_the_message_then_restart(rig: Rig, tmp_path: Path) -> None:
    """The gateway is SIGKILLed after the SMTP server took the message but before its answer
    arrived. Restarted, it lists the message in the Outbox; while the dead sender's claim
    lasts, Send says so; after it, Send finds the copy in Sent Items and does not send it
    again. The server received it exactly once; the store holds a 'sent' marker."""
    stack = rig.stack
    db = tmp_path / "proc.db"
    gw = ProcGateway.prepare(rig, GATEWAY_STORE_SQLITE_PATH=str(db),
                             GATEWAY_SMTP_TIMEOUT_SECONDS="20",
                             GATEWAY_SMTP_SEND_DEADLINE_SECONDS="4")
    try:
        gw.start()
        client = sign_in(gw, "member")
        action, fields = compose_form(client, "/mail/compose")
        subject = unique("Killed mid-send")
        fields.update(to=EXTERNAL, subject=subject, body="Before the crash.", do="send")
        assert stack.mail is not None
        stack.mail.delay_next_reply(30.0)
        claimed_at = time.time()
        outcome: list[Any] = []

        def press_send() -> None:
            try:
                outcome.append(_post(gw, client, action, fields))
            except httpx.HTTPError as exc:
                outcome.append(exc)
        sender = threading.Thread(target=press_send)
        sender.start()
        deadline = time.monotonic() + 20
        while not received(stack, subject) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(received(stack, subject)) == 1
        gw.kill()
        sender.join(10)
        assert outcome and isinstance(outcome[0], httpx.HTTPError)

        gw.start()
        page = client.get("/mail/outbox")
        assert page.status_code == 200
        assert subject in page.text and "sending was cut off" in page.text
        send_fields = _row_forms(page.text, fields["outbox_id"])
        early = _post(gw, client, "/mail/outbox/send", send_fields)
        assert early.status_code == 409 and "cut off" in early.text
        time.sleep(max(0.0, claimed_at + 9.5 - time.time()))
        later = _post(gw, client, "/mail/outbox/send", send_fields)
        assert later.status_code == 303, later.text
        assert len(received(stack, subject)) == 1
        assert subject not in client.get("/mail/outbox").text
        with sqlite3.connect(db) as con:
            [(state,)] = con.execute("SELECT state FROM outbox WHERE id=?",
                                     (fields["outbox_id"],)).fetchall()
        assert state == "sent"
    finally:
        gw.close()
