"""Faults around sending: nothing sent twice, nothing lost (issue 14, cases 1, 2 and 4).

Each test asserts what the member sees, what the SMTP server received (counted at the
server) and what the store holds."""

from __future__ import annotations

from typing import Any

from tests.conftest import sign_in
from tests.faults.conftest import EXTERNAL, FullDisk, Rig, compose_form, outbox_of, received
from tests.web.mailhelp import PDF, deliver, message, unique


def _post(gw: Any, client: Any, action: str, fields: dict[str, Any], **kw: Any) -> Any:
    return client.post(action, data=fields, headers={"Origin": gw.url}, **kw)


def test_lost_answer_then_imap_down_holds_the_retry_and_never_sends_twice(rig: Rig) -> None:
    """Case 1. The SMTP server takes the message but answers after the gateway's timeout;
    the member presses Send again while IMAP is down. Unknown is not "not sent": the retry
    is held with a Send anyway choice, and the server has the message exactly once."""
    gw = rig.gateway(smtp__timeout_seconds=1.5)
    mail = gw.stack.mail
    client = sign_in(gw, "member")
    action, fields = compose_form(client, "/mail/compose")
    subject = unique("Late answer")
    fields.update(to=EXTERNAL, subject=subject, body="Agenda attached.", do="send")
    files = {"attach": ("agenda.pdf", PDF, "application/pdf")}
    mail.delay_next_reply(4.0)
    first = _post(gw, client, action, fields, files=files)
    assert first.status_code == 503
    assert "may have been sent" in first.text and 'value="send_anyway"' in first.text
    assert len(received(gw.stack, subject)) == 1
    [(_, state, draft)] = [r for r in outbox_of(gw, client) if r[0] == fields["outbox_id"]]
    assert state == "unknown" and draft.attempts == 1 and draft.files[0].data == PDF

    gw.loop.run(mail.stop_imap())
    action, fields = compose_form(client, first.text)
    fields["do"] = "send"
    second = _post(gw, client, action, fields)
    assert second.status_code == 409
    assert "cannot be checked" in second.text and 'value="send_anyway"' in second.text
    assert subject in second.text
    assert len(received(gw.stack, subject)) == 1
    [(_, state, draft)] = [r for r in outbox_of(gw, client) if r[0] == fields["outbox_id"]]
    assert state == "held" and draft.files[0].data == PDF

    # Back up: Send finds the first copy in Sent Items and does not send it again.
    gw.loop.run(mail.start_imap())
    third = _post(gw, client, action, fields)
    assert third.status_code == 303, third.text
    assert len(received(gw.stack, subject)) == 1
    [(_, state, _d)] = [r for r in outbox_of(gw, client) if r[0] == fields["outbox_id"]]
    assert state == "sent"


def test_send_anyway_is_the_members_choice(rig: Rig) -> None:
    """Case 1, the other branch: the member looked, it is not there, and presses Send anyway:
    it goes (once more, by their choice) even though Sent Items still cannot be checked."""
    gw = rig.gateway(smtp__timeout_seconds=1.5)
    mail = gw.stack.mail
    client = sign_in(gw, "member")
    action, fields = compose_form(client, "/mail/compose")
    subject = unique("Anyway")
    fields.update(to=EXTERNAL, subject=subject, body="Please confirm.", do="send")
    mail.delay_next_reply(4.0)
    first = _post(gw, client, action, fields)
    assert first.status_code == 503
    gw.loop.run(mail.stop_imap())
    action, fields = compose_form(client, first.text)
    fields["do"] = "send_anyway"
    r = _post(gw, client, action, fields)
    assert r.status_code == 303, r.text
    assert len(received(gw.stack, subject)) == 2


def test_full_store_keeps_reading_and_gives_the_form_back_with_attachments(rig: Rig) -> None:
    """Case 2. With the store's disk full: reading mail still works after the session's
    timestamp is due (a store write), /health and /readyz report the store, and Send gives
    the whole form back, attachment included, without sending; once the disk has room the
    same form sends exactly once."""
    store = FullDisk(rig.tmp_path / "full.db")
    gw = rig.gateway(store=store)
    client = sign_in(gw, "member")
    action, fields = compose_form(client, "/mail/compose")
    store.full = True
    gw.clock.advance(120)            # the session's last_seen is due to be written
    page = client.get("/mail")
    assert page.status_code == 200 and "Inbox" in page.text

    import time
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        health = client.get("/health")
        if health.status_code == 503:
            break
        time.sleep(0.2)
    assert health.status_code == 503
    store_checks = health.json()["checks"]["store:responseTime"]
    assert store_checks[0]["status"] == "fail"

    subject = unique("Full disk")
    fields.update(to=EXTERNAL, subject=subject, body="Minutes attached.", do="send")
    r = _post(gw, client, action, fields, files={"attach": ("minutes.pdf", PDF,
                                                             "application/pdf")})
    assert r.status_code == 503 and r.headers.get("retry-after") == "60"
    assert "store is unavailable" in r.text and subject in r.text
    assert "Minutes attached." in r.text and "minutes.pdf" in r.text
    assert received(gw.stack, subject) == []

    store.full = False
    action, fields = compose_form(client, r.text)
    assert fields.get("carry_file"), "the attachment did not come back in the form"
    fields["do"] = "send"
    sent = _post(gw, client, action, fields)
    assert sent.status_code == 303, sent.text
    [copy] = received(gw.stack, subject)
    assert b"minutes.pdf" in copy
    assert [s for i, s, _ in outbox_of(gw, client) if i == fields["outbox_id"]] == ["sent"]


def test_forward_with_attachments_while_imap_is_down_keeps_the_form(rig: Rig) -> None:
    """Case 4. Forwarding a message with its attachment while IMAP is down gives the form
    back (with the original's attachment still ticked) and keeps the message in the outbox;
    nothing reaches SMTP. When IMAP is back the same form sends it once, attachment and
    all."""
    gw = rig.gateway()
    mail = gw.stack.mail
    subject = unique("Planning report")
    uid = deliver(gw, "member", message(subject, attachments=[("report.pdf", "application/pdf",
                                                               PDF)]))
    client = sign_in(gw, "member")
    action, fields = compose_form(client, f"/mail/compose?mode=forward&f=INBOX&uid={uid}")
    assert fields.get("keep_part")
    fields.update(to=EXTERNAL, do="send")
    gw.loop.run(mail.stop_imap())
    r = _post(gw, client, action, fields)
    assert r.status_code == 503
    assert 'id="compose-form"' in r.text and f"Fw: {subject}" in r.text
    assert 'name="keep_part"' in r.text
    assert received(gw.stack, f"Fw: {subject}") == []
    [(_, state, draft)] = [x for x in outbox_of(gw, client) if x[0] == fields["outbox_id"]]
    assert state == "failed" and draft.keep_parts == fields["keep_part"]

    gw.loop.run(mail.start_imap())
    action, fields = compose_form(client, r.text)
    fields["do"] = "send"
    sent = _post(gw, client, action, fields)
    assert sent.status_code == 303, sent.text
    [copy] = received(gw.stack, f"Fw: {subject}")
    assert b"report.pdf" in copy
