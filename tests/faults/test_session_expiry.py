"""Session expiry at Send (issue 14, case 3): the CSRF layer used to refuse the POST
("Please try again") before the route ran, losing the text and the attachments. Now the
form is kept for its member, nothing is sent, and after signing in again they land on it."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

from gateway.devstack.users import user
from gateway.mail.outbox import Outbox
from tests.conftest import sign_in
from tests.faults.conftest import EXTERNAL, Rig, compose_form, outbox_of, received
from tests.web.mailhelp import PDF, unique


def _post(gw: Any, client: Any, action: str, fields: dict[str, Any], **kw: Any) -> Any:
    return client.post(action, data=fields, headers={"Origin": gw.url}, **kw)


def test_send_after_idle_expiry_keeps_the_message_for_after_sign_in(rig: Rig) -> None:
    gw = rig.gateway()
    client = sign_in(gw, "member")
    action, fields = compose_form(client, "/mail/compose")
    subject = unique("Written slowly")
    fields.update(to=EXTERNAL, subject=subject, body="A long reply.", do="send")
    gw.clock.advance(31 * 60)                     # idle past session.idle_minutes
    r = _post(gw, client, action, fields, files={"attach": ("notes.pdf", PDF,
                                                             "application/pdf")})
    target = "/mail/compose?outbox=" + fields["outbox_id"]
    assert r.status_code == 303
    assert r.headers["location"] == "/auth/signin?next=" + quote(target, safe="")
    assert received(gw.stack, subject) == []
    svc = gw.app.state.gateway.services
    oid = user("member").oid
    rec = gw.loop.run(svc.store.get_outbox(fields["outbox_id"], oid))
    assert rec is not None and rec.state == "parked"
    kept = gw.loop.run(Outbox(svc.store, svc.keyring).load(fields["outbox_id"], oid))
    assert kept is not None and kept.subject == subject and kept.files[0].data == PDF

    again = sign_in(gw, "member", next_path=unquote(r.headers["location"].split("next=")[1]))
    page = again.get(target)
    assert page.status_code == 200
    assert subject in page.text and "A long reply." in page.text and "notes.pdf" in page.text
    assert "sign-in had ended" in page.text
    assert subject in again.get("/mail/outbox").text
    action, fields = compose_form(again, page.text)
    fields["do"] = "send"
    sent = _post(gw, again, action, fields)
    assert sent.status_code == 303, sent.text
    [copy] = received(gw.stack, subject)
    assert b"notes.pdf" in copy
    assert [s for i, s, _ in outbox_of(gw, again) if i == fields["outbox_id"]] == ["sent"]


def test_a_forged_post_with_an_ended_session_is_still_refused(rig: Rig) -> None:
    """Keeping a form needs what sending it would: the ended session's CSRF token and a
    same-origin post. Without the token it is refused and nothing is kept."""
    gw = rig.gateway()
    client = sign_in(gw, "member")
    action, fields = compose_form(client, "/mail/compose")
    fields.update(to=EXTERNAL, subject=unique("Forged"), do="send")
    fields.pop("csrf_token", None)
    gw.clock.advance(31 * 60)
    r = client.post(action.split("?")[0], data=fields, headers={"Origin": gw.url})
    assert r.status_code == 403
    svc = gw.app.state.gateway.services
    assert gw.loop.run(svc.store.get_outbox(fields["outbox_id"], user("member").oid)) is None
    r = client.post(action, data=fields, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
