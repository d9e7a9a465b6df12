"""Reply and reply-all from hostile address headers (issue 14, case 10). A member must see
exactly who a message goes to: what the form shows, what the saved draft holds and what
the SMTP server receives are the same addresses. Each hostile message is built here
(shapes from python/cpython#102988 and CVE-2019-16056, and display names carrying an
encoded or folded line break with ``Bcc:`` text), delivered to Dovecot and answered over
HTTP."""

from __future__ import annotations

import email
import email.policy
import re
from html import unescape
from typing import Any

import pytest

from gateway.devstack.users import user
from gateway.mail.addresses import parse_address_list
from tests.conftest import sign_in
from tests.faults.conftest import Rig, compose_form, received
from tests.web.mailhelp import deliver, find_uid, raw_of, unique

EVIL = "evil@evil.example"


def hostile(subject: str, headers: str) -> bytes:
    mid = unique("h").replace(" ", "")
    return (f"{headers}\r\nSubject: {subject}\r\nDate: Wed, 02 Dec 2026 09:00:00 +0000\r\n"
            f"Message-ID: <{mid}@elsewhere.example>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nPlease reply.\r\n").encode()


ME = user("member").email
# shape: (headers, mode, the To field shown, the Cc field shown, words the notice names)
SHAPES: dict[str, tuple[str, str, str, str, str]] = {
    "encoded line break and Bcc in the name": (
        "From: =?utf-8?q?Alice=0D=0ABcc:_evil@evil.example?= <alice@elsewhere.example>\r\n"
        f"To: {ME}",
        "reply", '"Alice Bcc: evil@evil.example" <alice@elsewhere.example>', "", ""),
    "folded Bcc in a quoted name": (
        'From: "Alice\r\n Bcc: evil@evil.example" <alice@elsewhere.example>\r\n'
        f"To: {ME}",
        "reply", '"Alice Bcc: evil@evil.example" <alice@elsewhere.example>', "", ""),
    "encoded comma and angle address in the name": (
        # base64 of 'Alice, evil@evil.example <evil@evil.example>'
        "From: =?utf-8?b?QWxpY2UsIGV2aWxAZXZpbC5leGFtcGxlIDxldmlsQGV2aWwuZXhhbXBsZT4=?= "
        f"<alice@elsewhere.example>\r\nTo: {ME}",
        "reply", '"Alice, evil@evil.example <evil@evil.example>" <alice@elsewhere.example>',
        "", ""),
    "address before an angle address": (
        f"From: alice@elsewhere.example <{EVIL}>\r\nTo: {ME}",
        "reply", "", "", f"alice@elsewhere.example &lt;{EVIL}&gt;"),
    "two at signs": (
        f"From: Sam <sam@elsewhere.example>\r\nReply-To: a@{EVIL}\r\nTo: {ME}",
        "reply", "Sam <sam@elsewhere.example>", "", f"a@{EVIL}"),
    "unclosed comment after an address": (
        f"From: Sam <sam@elsewhere.example>\r\nTo: {ME}\r\n"
        f"Cc: alice@elsewhere.example(<{EVIL}>",
        "replyall", "Sam <sam@elsewhere.example>", "alice@elsewhere.example",
        f"(&lt;{EVIL}&gt;"),
    "commas inside quoted names": (
        f'From: Sam <sam@elsewhere.example>\r\nTo: {ME}, "Smith, Jo" <jo@elsewhere.example>,'
        ' "Evans, Pat" <pat@elsewhere.example>',
        "replyall", "Sam <sam@elsewhere.example>",
        '"Smith, Jo" <jo@elsewhere.example>, "Evans, Pat" <pat@elsewhere.example>', ""),
    "folded Bcc after an angle address": (
        f"From: Sam <sam@elsewhere.example>\r\nTo: {ME}\r\n"
        f"Cc: Mallory <mallory@elsewhere.example>\r\n Bcc: {EVIL}",
        "replyall", "Sam <sam@elsewhere.example>", "", f"Bcc: {EVIL}"),
}


def _field(html: str, name: str) -> str:
    match = re.search(rf'<input[^>]*name="{name}"[^>]*>', html)
    assert match, f"no {name} field"
    value = re.search(r'value="([^"]*)"', match.group())
    return unescape(value.group(1)) if value else ""


def _envelope(addresses: str) -> set[str]:
    return {a.email for a in parse_address_list(addresses).addresses}


def _post(gw: Any, client: Any, action: str, fields: dict[str, Any]) -> Any:
    return client.post(action, data=fields, headers={"Origin": gw.url})


@pytest.mark.parametrize("shape", list(SHAPES))
def test_reply_shows_saves_and_sends_exactly_the_same_recipients(rig: Rig, shape: str) -> None:
    headers, mode, to_shown, cc_shown, named = SHAPES[shape]
    gw = rig.gateway()
    subject = unique(f"Hostile {shape}")
    uid = deliver(gw, "member", hostile(subject, headers))
    client = sign_in(gw, "member")

    page = client.get("/mail/compose", params={"mode": mode, "f": "INBOX", "uid": str(uid)})
    assert page.status_code == 200, page.text[:300]
    assert _field(page.text, "to") == to_shown
    assert _field(page.text, "cc") == cc_shown
    if named:   # what could not be read is shown plainly, never turned into a recipient
        assert "could not be read and were left out" in page.text and named in page.text
    shown = _envelope(to_shown) | _envelope(cc_shown)
    assert EVIL not in shown

    # The draft saved from that form holds exactly the addresses the form showed.
    action, fields = compose_form(client, page.text)
    fields["do"] = "draft"
    saved = _post(gw, client, action, fields)
    assert saved.status_code in (200, 303), saved.text[:300]
    draft_uid = find_uid(gw, "member", f"Re: {subject}", "Drafts")
    assert draft_uid is not None
    draft = email.message_from_bytes(raw_of(gw, "member", "Drafts", draft_uid),
                                     policy=email.policy.default)
    in_draft = {a.addr_spec for h in ("To", "Cc") for a in getattr(draft[h], "addresses", ())}
    assert in_draft == shown

    # Sent from a fresh form: the server receives it once, for exactly those recipients.
    action, fields = compose_form(client, client.get(
        "/mail/compose", params={"mode": mode, "f": "INBOX", "uid": str(uid)}).text)
    fields["do"] = "send"
    sent = _post(gw, client, action, fields)
    copies = [m for m in gw.stack.mail.outbound if m.data in received(gw.stack, f"Re: {subject}")]
    if not shown:
        assert sent.status_code == 400 and "Add at least one recipient" in sent.text
        assert copies == []
        return
    assert sent.status_code == 303, sent.text[:300]
    assert len(copies) == 1
    assert set(copies[0].rcpt_tos) == shown
    got = email.message_from_bytes(copies[0].data, policy=email.policy.default)
    assert {a.addr_spec for h in ("To", "Cc") for a in getattr(got[h], "addresses", ())} \
        == shown and "Bcc" not in got


def test_read_page_quotes_names_and_shows_what_is_not_an_address(rig: Rig) -> None:
    gw = rig.gateway()
    subject = unique("Hostile read page")
    uid = deliver(gw, "member", hostile(subject, (
        "From: =?utf-8?q?Alice=0D=0ABcc:_evil@evil.example?= <alice@elsewhere.example>\r\n"
        f"To: {ME}, alice@elsewhere.example <{EVIL}>")))
    client = sign_in(gw, "member")
    page = client.get("/mail/read", params={"f": "INBOX", "uid": str(uid)})
    assert page.status_code == 200, page.text[:300]
    text = unescape(page.text)
    assert '"Alice Bcc: evil@evil.example" <alice@elsewhere.example>' in text
    assert f"Not an address, shown as written (To): alice@elsewhere.example <{EVIL}>" in text


def test_a_one_mebibyte_subject_does_not_stretch_the_page(rig: Rig) -> None:
    """A 1 MiB subject (one unbroken word) in the list and the message view: the page is
    no wider than the screen in Chromium, and what is rendered of it is bounded."""
    from tests.web.browser import ipad_page, sign_in_in_browser

    gw = rig.gateway()
    marker = unique("Wide")
    gw.stack.mail.deliver(user("member").email, hostile(marker + " " + "W" * (1 << 20),
                                                         f"From: Sam <sam@elsewhere.example>"
                                                         f"\r\nTo: {ME}"))
    uid = find_uid(gw, "member", marker)
    assert uid is not None
    client = sign_in(gw, "member")
    listing = client.get("/mail", params={"f": "INBOX"})
    read = client.get("/mail/read", params={"f": "INBOX", "uid": str(uid)})
    for reply in (listing, read):
        assert reply.status_code == 200 and marker in reply.text
        assert max(len(w) for w in re.findall("W+", reply.text)) <= 2_000
    with ipad_page() as (page, _rec):
        sign_in_in_browser(page, gw.url)
        for path in ("/mail?f=INBOX", f"/mail/read?f=INBOX&uid={uid}"):
            page.goto(gw.url + path)
            page.wait_for_selector("main")
            wide, screen = page.evaluate(
                "[document.documentElement.scrollWidth, screen.width]")
            assert wide <= screen, (path, wide, screen)
