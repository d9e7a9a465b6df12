"""Invitations answered from mail (against the whole dev stack): an outside organiser's
meeting is found in the calendar though Graph shows its UID wrapped by Exchange; a meeting
that is not in the calendar is answered by mail (iTIP REPLY) instead of ending at a 404;
failures keep the typed comment."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from html import unescape
from zoneinfo import ZoneInfo

import httpx

from gateway.calendar.itip import exchange_ical_uid
from gateway.devstack.graph import wrap_uid
from gateway.devstack.seed import invitation_ics, make_message
from gateway.devstack.users import user
from tests.conftest import Gateway, csrf_of, sign_in
from tests.web.mailhelp import deliver, unique


def test_wrapped_uid_matches_the_exchange_protocol_example() -> None:
    """MS-ASEMAIL 4.3 example 2: the GlobalObjectId of the third-party UID
    {81412D3C-2A24-4E9D-B20E-11F7BBE92799}, in hex, is what both sides compute."""
    goid = base64.b64decode(
        "BAAAAIIA4AB0xbcQGoLgCAAAAAAAAAAAAAAAAAAAAAAAAAAAMwAAAHZDYWwtVWlkAQAAAHs4MTQxMkQzQy0yQT"
        "I0LTRFOUQtQjIwRS0xMUY3QkJFOTI3OTl9AA==").hex().upper()
    uid = "{81412D3C-2A24-4E9D-B20E-11F7BBE92799}"
    assert exchange_ical_uid(uid) == goid == wrap_uid(uid)
    outlook = "040000008200E00074C5B7101A82E00800000000E040C9C12685C40100000000000000001000"
    assert exchange_ical_uid(outlook) == outlook


def _outside_invite(subject: str, uid: str) -> bytes:
    start = (datetime.now(ZoneInfo("Europe/London")) + timedelta(days=6)).replace(
        hour=10, minute=0, second=0, microsecond=0)
    organizer = ("Wales Audit Office", "audit.team@audit-wales.example")
    me = user("member")
    ics = invitation_ics(uid=uid, organizer=organizer, attendees=[(me.name, me.email)],
                         summary=subject, location="Online", start=start,
                         end=start + timedelta(hours=1), stamp=datetime.now(UTC))
    return make_message(sender=f"{organizer[0]} <{organizer[1]}>", to=[me.email],
                        subject=subject, date=datetime.now(UTC), text="Invitation",
                        calendar=ics)


def _answer(
    gateway: Gateway, client: httpx.Client, page_url: str, page: str, answer: str, comment: str,
    send: bool = True,
) -> httpx.Response:
    form = re.search(r'<form[^>]+class="invite-answer".*?</form>', page, re.S)
    assert form, "the read page offers an answer"
    fields = {unescape(k): unescape(v) for k, v in re.findall(
        r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(0))}
    fields.update(answer=answer, comment=comment, csrf_token=csrf_of(client, page_url))
    if send:
        fields["send_response"] = "1"
    return client.post("/calendar/invite/answer", data=fields,
                       headers={"Origin": gateway.url})


def test_outside_organisers_invitation_is_found_in_the_calendar(gateway: Gateway) -> None:
    """The seeded outside organiser's meeting: its invitation carries the organiser's own
    UID, Graph shows it wrapped; Accept from the mail acts on the calendar event."""
    gateway.stack.mail_invitations()
    graph = gateway.stack.graph
    u = user("member")
    outside = next(st for st in graph.calendar(u.oid).events.values()
                   if st.seed.ics_uid and st.seed.response in ("none", "notResponded"))
    assert outside.ical_uid == wrap_uid(outside.seed.ics_uid) != outside.seed.ics_uid
    client = sign_in(gateway, "member")
    from tests.web.mailhelp import find_uid
    uid = find_uid(gateway, "member", outside.seed.subject)
    assert uid is not None
    url = f"/mail/read?f=INBOX&uid={uid}"
    page = client.get(url).text
    assert f'name="uid" value="{outside.seed.ics_uid}"' in page
    sent_before = len(graph.sent)
    r = _answer(gateway, client, url, page, "accept", "See you there")
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith("/calendar/event/")
    assert graph.sent[sent_before:] and graph.sent[-1]["kind"] == "accepted"


def test_invitation_not_in_the_calendar_is_answered_by_mail(gateway: Gateway) -> None:
    """No event with that UID (deleted, or never filed): Accept sends the organiser an iTIP
    REPLY with the comment, and the message page says so, not a 404."""
    subject = unique("Audit briefing")
    ics_uid = f"{uuid.uuid4()}@audit-wales.example"
    uid = deliver(gateway, "member", _outside_invite(subject, ics_uid))
    client = sign_in(gateway, "member")
    url = f"/mail/read?f=INBOX&uid={uid}"
    page = client.get(url).text
    outbound_before = len(gateway.stack.mail.outbound)
    r = _answer(gateway, client, url, page, "tentative", "I may be late; starting, 10:15")
    assert r.status_code == 303, r.text
    after = client.get(r.headers["location"]).text
    assert "went to the organiser by mail" in after
    sent = gateway.stack.mail.outbound[outbound_before:]
    assert [m.rcpt_tos for m in sent] == [("audit.team@audit-wales.example",)]
    msg = message_from_bytes(sent[0].data, policy=default)
    assert msg["Subject"] == f"Tentative: {subject}"
    cal = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    assert cal.get_param("method") == "REPLY"
    ics = re.sub(r"\r?\n[ \t]", "", cal.get_content())   # unfold (RFC 5545 3.1)
    assert all(len(line.encode()) <= 75 for line in cal.get_content().splitlines())
    assert "METHOD:REPLY" in ics and f"UID:{ics_uid}" in ics
    assert "PARTSTAT=TENTATIVE" in ics and "mailto:alex.morgan@council.example" in ics
    assert "COMMENT:I may be late\\; starting\\, 10:15" in ics


def test_not_in_the_calendar_and_no_answer_to_send_keeps_the_comment(gateway: Gateway) -> None:
    """With "send my answer" unticked there is nothing to do: a clear message, the form
    again with the comment as typed (nothing sent)."""
    subject = unique("Audit follow-up")
    uid = deliver(gateway, "member", _outside_invite(subject, f"{uuid.uuid4()}@x.example"))
    client = sign_in(gateway, "member")
    url = f"/mail/read?f=INBOX&uid={uid}"
    page = client.get(url).text
    outbound_before = len(gateway.stack.mail.outbound)
    r = _answer(gateway, client, url, page, "accept", "Thanks – noted", send=False)
    assert r.status_code == 409
    assert "not in your calendar" in r.text and "Thanks – noted</textarea>" in r.text
    assert len(gateway.stack.mail.outbound) == outbound_before
