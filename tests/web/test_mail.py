"""The mail pages over HTTP against real Dovecot and SMTP: folders, lists, paging, reading,
the sandboxed body, attachments, actions, search, writing and sending, faults."""

from __future__ import annotations

import re
import time
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from gateway.devstack.stack import DevStack
from gateway.devstack.users import user
from gateway.mail.imap import ImapConn
from tests.conftest import Gateway, LoopThread, csrf_of, form_fields, found, sign_in
from tests.web.mailhelp import (
    DOCX,
    PDF,
    PNG,
    deliver,
    find_uid,
    flags_of,
    message,
    raw_of,
    unique,
    with_inline_image,
)


def hrefs(html: str, prefix: str) -> list[str]:
    return [unescape(h) for h in re.findall(r'href="([^"]+)"', html) if unescape(h)
            .startswith(prefix)]


def post(client: httpx.Client, gw: Gateway, path: str, data: dict[str, Any],
         csrf_path: str = "/") -> httpx.Response:
    data = {**data, "csrf_token": csrf_of(client, csrf_path)}
    return client.post(path, data=data, headers={"Origin": gw.url})


def test_folder_list_shows_exchange_folders_and_hides_non_mail(gateway: Gateway) -> None:
    """Inbox, Drafts, Sent Items... are listed; Calendar, Contacts, Tasks are not."""
    page = sign_in(gateway, "member").get("/mail").text
    names = [unescape(n) for n in re.findall(r'<nav class="folders".*?</nav>', page, re.S)]
    nav = names[0]
    for name in ("Inbox", "Drafts", "Sent Items", "Deleted Items", "Junk Email", "Archive",
                 "Planning", "Ward – Llanfair Café"):
        assert name in nav, name
    for hidden in (">Calendar<", ">Contacts<", ">Tasks<"):
        assert hidden not in nav


def test_non_ascii_folder_opens(gateway: Gateway) -> None:
    """A folder with a non-ASCII name (modified UTF-7 on the wire) opens by its name."""
    client = sign_in(gateway, "member")
    subject = unique("Ward note")
    deliver(gateway, "member", message(subject), folder="Ward – Llanfair Café")
    r = client.get("/mail", params={"f": "Ward – Llanfair Café"})
    assert r.status_code == 200
    assert subject in r.text


def test_list_is_newest_first_and_pages_by_50(gateway: Gateway) -> None:
    """The newest message is first; a folder of more than 50 has an Older page."""
    client = sign_in(gateway, "member2")
    folder = "Committees/Licensing"
    for i in range(53):
        gateway.stack.mail.deliver(user("member2").email, message(f"Bulk {i:03d}"),
                                   folder=folder)
    newest = unique("Newest")
    deliver(gateway, "member2", message(newest), folder=folder)
    first = client.get("/mail", params={"f": folder})
    subjects = re.findall(r'<span class="subject">(?:<span[^>]*>[^<]*</span> )*([^<]+)</span>',
                          first.text)
    assert subjects[0].strip() == newest
    assert len(subjects) == 50
    older = hrefs(first.text, "/mail?")
    assert any("page=2" in h for h in older)
    second = client.get(next(h for h in older if "page=2" in h))
    assert "Bulk 000" in second.text and newest not in second.text


def test_open_html_message_sandboxed_and_remote_images_blocked(gateway: Gateway) -> None:
    """HTML bodies are framed in a sandbox with their own CSP; remote images wait."""
    client = sign_in(gateway, "member")
    subject = unique("Newsletter")
    html = ('<p>Hello <b>councillor</b></p><img src="https://tracker.example/p.gif">'
            '<script>alert(1)</script><a href="javascript:alert(2)">x</a>')
    uid = deliver(gateway, "member", message(subject, html=html))
    page = client.get("/mail/read", params={"f": "INBOX", "uid": uid})
    assert page.status_code == 200
    assert "Pictures from the internet were blocked" in page.text
    frame_tag = found(re.search(r"<iframe[^>]+>", page.text)).group(0)
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in frame_tag
    assert "allow-scripts" not in frame_tag and "allow-same-origin" not in frame_tag
    frame_url = unescape(found(re.search(r'src="([^"]+)"', frame_tag)).group(1))
    frame = client.get(frame_url)
    csp = frame.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "https:" not in csp
    assert "<b>councillor</b>" in frame.text
    for bad in ("<script", "javascript:", "tracker.example"):
        assert bad not in frame.text
    shown = client.get(unescape(hrefs(page.text, "/mail/read?")[0]))
    frame2_src = found(re.search(r'<iframe[^>]+src="([^"]+)"', shown.text))
    frame2 = client.get(unescape(frame2_src.group(1)))
    assert "img-src 'self' data: https:" in frame2.headers["content-security-policy"]
    assert "https://tracker.example/p.gif" in frame2.text


def test_opening_marks_read_unless_configured_not_to(gateway: Gateway, stack: DevStack,
                                                     loop_thread: LoopThread,
                                                     tmp_path: Path) -> None:
    """Opening a message sets \\Seen; with mail.mark_read_on_open off it does not."""
    client = sign_in(gateway, "member")
    subject = unique("Unread")
    uid = deliver(gateway, "member", message(subject))
    assert "seen" not in flags_of(gateway, "member", "INBOX", uid)
    client.get("/mail/read", params={"f": "INBOX", "uid": uid})
    assert "seen" in flags_of(gateway, "member", "INBOX", uid)

    from tests.conftest import start_gateway
    gw2 = start_gateway(stack, loop_thread, tmp_path, mail__mark_read_on_open=False)
    try:
        uid2 = deliver(gw2, "member", message(unique("Stays unread")))
        sign_in(gw2, "member").get("/mail/read", params={"f": "INBOX", "uid": uid2})
        assert "seen" not in flags_of(gw2, "member", "INBOX", uid2)
    finally:
        gw2.stop()


def test_plain_text_is_escaped_and_links_made_clickable(gateway: Gateway) -> None:
    """Plain text is escaped; http(s) links become links."""
    client = sign_in(gateway, "member")
    text = "See https://council.example/agenda <script>alert(1)</script>"
    uid = deliver(gateway, "member", message(unique("Plain"), text=text))
    page = client.get("/mail/read", params={"f": "INBOX", "uid": uid}).text
    assert '<a href="https://council.example/agenda"' in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page


def test_pdf_opens_inline_and_docx_downloads_with_exact_bytes(gateway: Gateway) -> None:
    """PDF is served inline under a policy that runs nothing (no sandbox: WebKit shows a
    blank viewer under one); Office files download; bytes intact."""
    client = sign_in(gateway, "member")
    subject = unique("Papers")
    uid = deliver(gateway, "member", message(subject, attachments=[
        ("Agenda.pdf", "application/pdf", PDF),
        ("Report.docx",
         "application/vnd.openxmlformats-officedocument.wordprocessingml.document", DOCX)]))
    page = client.get("/mail/read", params={"f": "INBOX", "uid": uid}).text
    links = hrefs(page, "/mail/part?")
    assert len(links) == 2
    # Members see what the file is, not its MIME type (issue 13 item 13).
    assert "PDF, " in page and "Word document, " in page
    assert "wordprocessingml" not in page
    pdf = client.get(links[0])
    assert pdf.content == PDF
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"].startswith("inline;")
    policy = pdf.headers["content-security-policy"]
    assert "sandbox" not in policy
    for directive in ("default-src 'none'", "script-src 'none'", "object-src 'none'",
                      "form-action 'none'", "frame-ancestors 'self'"):
        assert directive in policy
    assert pdf.headers["x-content-type-options"] == "nosniff"
    docx = client.get(links[1])
    assert docx.content == DOCX
    assert docx.headers["content-disposition"].startswith('attachment; filename="Report.docx"')


def test_svg_and_html_attachments_never_render_inline(gateway: Gateway) -> None:
    """An SVG or HTML attachment downloads as octet-stream: it cannot run in our origin."""
    client = sign_in(gateway, "member")
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    uid = deliver(gateway, "member", message(unique("Svg"), attachments=[
        ("pic.svg", "image/svg+xml", svg), ("page.html", "text/html", b"<script>x</script>")]))
    page = client.get("/mail/read", params={"f": "INBOX", "uid": uid}).text
    for link in hrefs(page, "/mail/part?"):
        r = client.get(link)
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["content-disposition"].startswith("attachment;")


def test_a_pdf_or_image_that_is_not_one_downloads_and_images_stay_sandboxed(
    gateway: Gateway,
) -> None:
    """A part labelled application/pdf or image/png whose bytes are HTML downloads as
    octet-stream (its true type decides); a real PNG opens inline in a sandbox."""
    client = sign_in(gateway, "member")
    html = b"<html><script>parent.document.title='pwned'</script></html>"
    uid = deliver(gateway, "member", message(unique("Fake pdf"), attachments=[
        ("Minutes.pdf", "application/pdf", html), ("chart.png", "image/png", html),
        ("photo.png", "image/png", PNG)]))
    page = client.get("/mail/read", params={"f": "INBOX", "uid": uid}).text
    fake_pdf, fake_png, png = (client.get(link) for link in hrefs(page, "/mail/part?"))
    for r in (fake_pdf, fake_png):
        assert r.content == html
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["content-disposition"].startswith("attachment;")
        assert "sandbox" in r.headers["content-security-policy"]
    assert png.content == PNG and png.headers["content-type"] == "image/png"
    assert png.headers["content-disposition"].startswith("inline;")
    assert png.headers["content-security-policy"].endswith("sandbox")


def test_flag_unread_move_archive_delete(gateway: Gateway) -> None:
    """The message actions change the mailbox as asked."""
    client = sign_in(gateway, "member")
    subject = unique("Actions")
    uid = deliver(gateway, "member", message(subject))
    r = post(client, gateway, "/mail/action", {"f": "INBOX", "uid": uid, "action": "flag"})
    assert r.status_code == 303
    assert "flagged" in flags_of(gateway, "member", "INBOX", uid)
    post(client, gateway, "/mail/action", {"f": "INBOX", "uid": uid, "action": "read"})
    assert "seen" in flags_of(gateway, "member", "INBOX", uid)
    post(client, gateway, "/mail/action", {"f": "INBOX", "uid": uid, "action": "move",
                                           "target": "Committees/Planning"})
    assert find_uid(gateway, "member", subject) is None
    moved = find_uid(gateway, "member", subject, "Committees/Planning")
    assert moved is not None
    post(client, gateway, "/mail/action", {"f": "Committees/Planning", "uid": moved,
                                           "action": "archive"})
    archived = find_uid(gateway, "member", subject, "Archive")
    assert archived is not None
    post(client, gateway, "/mail/action", {"f": "Archive", "uid": archived,
                                           "action": "delete"})
    assert find_uid(gateway, "member", subject, "Deleted Items") is not None


def test_empty_junk_needs_confirmation(gateway: Gateway) -> None:
    """Emptying Junk Email asks first, then removes everything in it."""
    client = sign_in(gateway, "member2")
    deliver(gateway, "member2", message(unique("Spam")), folder="Junk Email")
    r = post(client, gateway, "/mail/empty", {"f": "Junk Email"})
    assert r.status_code == 200 and "cannot be undone" in r.text
    assert find_uid(gateway, "member2", "Spam", "Junk Email") is not None
    r = post(client, gateway, "/mail/empty", {"f": "Junk Email", "confirm": "yes"})
    assert r.status_code == 303
    assert find_uid(gateway, "member2", "Spam", "Junk Email") is None


def test_inbox_cannot_be_emptied(gateway: Gateway) -> None:
    """Only Junk Email and Deleted Items can be emptied."""
    client = sign_in(gateway, "member")
    r = post(client, gateway, "/mail/empty", {"f": "INBOX", "confirm": "yes"})
    assert r.status_code == 400


def test_search_in_folder_and_across_folders(gateway: Gateway) -> None:
    """Search finds by subject in the folder, and across folders when asked."""
    client = sign_in(gateway, "member")
    token = unique("Needle")
    deliver(gateway, "member", message(token + " inbox"))
    deliver(gateway, "member", message(token + " archived"), folder="Archive")
    here = client.get("/mail/search", params={"f": "INBOX", "subject": token})
    assert "1 result" in here.text and "inbox" in here.text
    everywhere = client.get("/mail/search", params={"f": "INBOX", "q": token, "scope": "all"})
    assert "2 results" in everywhere.text
    assert "archived" in everywhere.text


def test_search_by_sender_unread_and_dates(gateway: Gateway) -> None:
    """From, unread-only and date range narrow the results."""
    client = sign_in(gateway, "member")
    token = unique("Dated")
    deliver(gateway, "member", message(token, sender="Planning <planning@council.example>"))
    r = client.get("/mail/search", params={"from": "planning@council.example",
                                           "subject": token, "unread": "1"})
    assert "1 result" in r.text
    r = client.get("/mail/search", params={"subject": token, "before": "2001-01-01"})
    assert "0 results" in r.text
    bad = client.get("/mail/search", params={"subject": token, "since": "yesterday"})
    assert bad.status_code == 400


def test_search_input_cannot_inject_imap(gateway: Gateway) -> None:
    """Quotes, backslashes and CRLF in search text are quoted or refused, never run."""
    client = sign_in(gateway, "member")
    r = client.get("/mail/search", params={"q": 'x" OR ALL "'})
    assert r.status_code == 200 and "0 results" in r.text
    r = client.get("/mail/search", params={"q": "x\r\nA1 LOGOUT"})
    assert r.status_code == 400


def compose_form(client: httpx.Client, path: str) -> tuple[str, dict[str, str]]:
    page = client.get(path)
    assert page.status_code == 200, page.text
    form = re.search(r'<form method="post" action="([^"]+)"[^>]*id="compose-form".*?</form>',
                     page.text, re.S)
    assert form, page.text
    action = unescape(form.group(1))
    fields = form_fields(form.group(0))
    fields.pop("attach", None)
    fields.update({k: unescape(v) for k, v in re.findall(
        r'<textarea id="body" name="(body)"[^>]*>(.*?)</textarea>', page.text, re.S)})
    return action, fields


def test_send_new_message_arrives(gateway: Gateway) -> None:
    """A new message is sent over SMTP with XOAUTH2 and arrives in the recipient's Inbox."""
    client = sign_in(gateway, "member")
    action, fields = compose_form(client, "/mail/compose")
    subject = unique("Hello Jo")
    fields.update(to="Cllr Jo Evans <jo.evans@council.example>", subject=subject,
                  body="Meeting at 10?", do="send")
    r = client.post(action, data=fields, files={"attach": ("notes.txt", b"notes", "text/plain")},
                    headers={"Origin": gateway.url})
    assert r.status_code == 303, r.text
    assert find_uid(gateway, "member2", subject) is not None
    rows = gateway.loop.run(gateway.app.state.gateway.services.store.audit_rows())
    sent = [row.body for row in rows if '"mail.sent"' in row.body]
    assert sent, "a send leaves an audit entry"
    for forbidden in (subject, "Meeting at 10?", "jo.evans", "notes.txt"):
        assert forbidden not in sent[-1]
    assert '"recipients": 1' in sent[-1] or '"recipients":1' in sent[-1]


def test_bad_address_keeps_everything(gateway: Gateway) -> None:
    """A bad address gets a clear error and the form comes back whole, attachment held."""
    client = sign_in(gateway, "member")
    action, fields = compose_form(client, "/mail/compose")
    fields.update(to="not an address", subject="Keep me", body="Precious words", do="send")
    r = client.post(action, data=fields, files={"attach": ("a.txt", b"abc", "text/plain")},
                    headers={"Origin": gateway.url})
    assert r.status_code == 400
    assert "not an address" in unescape(r.text) and "Precious words" in r.text
    assert "a.txt" in r.text  # the upload is held
    assert f'value="{fields["outbox_id"]}"' in r.text
    again = client.get("/mail/compose", params={"outbox": fields["outbox_id"]})
    assert "Precious words" in again.text and "a.txt" in again.text


def test_smtp_refusal_keeps_the_message_and_retry_sends(gateway: Gateway) -> None:
    """When SMTP refuses, the member sees why, nothing is lost, and a retry sends."""
    client = sign_in(gateway, "member")
    action, fields = compose_form(client, "/mail/compose")
    subject = unique("Refused once")
    fields.update(to="jo.evans@council.example", subject=subject, body="Try again", do="send")
    gateway.stack.mail.refuse_next(554, "5.7.1 Message rejected")
    r = client.post(action, data=fields, headers={"Origin": gateway.url})
    assert r.status_code == 502
    assert "kept" in r.text and "Try again" in r.text and "Traceback" not in r.text
    retry = dict(fields)
    retry.update(to="jo.evans@council.example", subject=subject, body="Try again", do="send")
    r = client.post(action, data=retry, headers={"Origin": gateway.url})
    assert r.status_code == 303
    assert find_uid(gateway, "member2", subject) is not None


def test_reply_threads_and_marks_answered(gateway: Gateway) -> None:
    """A reply quotes the original, sets In-Reply-To, and marks the original answered."""
    client = sign_in(gateway, "member")
    subject = unique("Question")
    original = message(subject, sender="Cllr Jo Evans <jo.evans@council.example>",
                       text="Can you attend?")
    uid = deliver(gateway, "member", original)
    action, fields = compose_form(client, "/mail/compose?" + urlencode(
        {"mode": "reply", "f": "INBOX", "uid": uid}))
    assert fields["to"] == "Cllr Jo Evans <jo.evans@council.example>"
    assert "> Can you attend?" in fields["body"]
    fields["do"] = "send"
    assert client.post(action, data=fields, headers={"Origin": gateway.url}).status_code == 303
    reply_uid = find_uid(gateway, "member2", "Re: " + subject)
    raw = raw_of(gateway, "member2", "INBOX", reply_uid)
    msgid = found(re.search(rb"^Message-ID: (<[^>]+>)", original, re.M | re.I)).group(1)
    assert re.search(rb"^In-Reply-To: " + re.escape(msgid), raw, re.M | re.I)
    assert "answered" in flags_of(gateway, "member", "INBOX", uid)


def test_forward_carries_attachments_byte_for_byte(gateway: Gateway) -> None:
    """A forward carries the original attachments unchanged."""
    client = sign_in(gateway, "member")
    subject = unique("Papers to pass on")
    uid = deliver(gateway, "member", message(subject, attachments=[
        ("Agenda.pdf", "application/pdf", PDF)]))
    action, fields = compose_form(client, "/mail/compose?" + urlencode(
        {"mode": "forward", "f": "INBOX", "uid": uid}))
    page = client.get("/mail/compose?" + urlencode({"mode": "forward", "f": "INBOX",
                                                     "uid": uid})).text
    keep = re.findall(r'name="keep_part" value="([^"]+)"', page)
    assert keep
    fields.update(to="jo.evans@council.example", do="send")
    data = {**fields, "keep_part": keep}
    assert client.post(action, data=data, headers={"Origin": gateway.url}).status_code == 303
    fwd_uid = find_uid(gateway, "member2", "Fw: " + subject)
    import email
    import email.policy
    fwd = email.message_from_bytes(raw_of(gateway, "member2", "INBOX", fwd_uid),
                                   policy=email.policy.default)
    parts = [p for p in fwd.iter_attachments() if p.get_filename() == "Agenda.pdf"]
    assert parts and parts[0].get_content() == PDF


def test_draft_saved_and_reopened(gateway: Gateway) -> None:
    """Save draft APPENDs to Drafts; reopening it fills the form; sending removes it."""
    client = sign_in(gateway, "member")
    action, fields = compose_form(client, "/mail/compose")
    subject = unique("Half written")
    fields.update(to="jo.evans@council.example", subject=subject, body="Thinking...",
                  do="draft")
    r = client.post(action, data=fields, headers={"Origin": gateway.url})
    assert r.status_code == 200 and "Saved to Drafts" in r.text
    draft_uid = find_uid(gateway, "member", subject, "Drafts")
    assert draft_uid is not None
    action2, fields2 = compose_form(client, "/mail/compose?" + urlencode(
        {"mode": "draft", "f": "Drafts", "uid": draft_uid}))
    assert fields2["subject"] == subject and "Thinking..." in fields2["body"]
    fields2["do"] = "send"
    assert client.post(action2, data=fields2, headers={"Origin": gateway.url}).status_code == 303
    assert find_uid(gateway, "member", subject, "Drafts") is None
    assert find_uid(gateway, "member2", subject) is not None


def test_autosave_answers_json(gateway: Gateway) -> None:
    """The autosave request saves to Drafts and answers JSON for the page script."""
    client = sign_in(gateway, "member")
    action, fields = compose_form(client, "/mail/compose")
    subject = unique("Autosaved")
    fields.update(subject=subject, body="typing", do="autosave")
    r = client.post(action, data=fields, headers={"Origin": gateway.url,
                                                  "Accept": "application/json"})
    assert r.json()["saved"] is True
    assert find_uid(gateway, "member", subject, "Drafts") is not None


def test_upload_limit_has_a_clear_message(stack: DevStack, loop_thread: LoopThread,
                                          tmp_path: Path) -> None:
    """Attachments over mail.max_upload_bytes are refused with a plain message."""
    from tests.conftest import start_gateway
    gw = start_gateway(stack, loop_thread, tmp_path, mail__max_upload_bytes=2048)
    try:
        client = sign_in(gw, "member")
        action, fields = compose_form(client, "/mail/compose")
        fields.update(to="jo.evans@council.example", subject="Big", body="b", do="send")
        r = client.post(action, data=fields,
                        files={"attach": ("big.bin", b"x" * 5000, "application/octet-stream")},
                        headers={"Origin": gateway_origin(gw)})
        assert r.status_code == 400
        assert "was not added" in r.text
    finally:
        gw.stop()


def gateway_origin(gw: Gateway) -> str:
    return gw.url


def test_compose_post_needs_csrf(gateway: Gateway) -> None:
    """Sending without the CSRF token is refused."""
    client = sign_in(gateway, "member")
    r = client.post("/mail/send", data={"to": "x@y.example", "outbox_id": "a" * 22},
                    headers={"Origin": gateway.url})
    assert r.status_code == 403


def test_other_members_messages_are_not_reachable(gateway: Gateway) -> None:
    """A uid from another member's mailbox shows nothing of theirs."""
    subject = unique("Private to Jo")
    uid = deliver(gateway, "member2", message(subject, to="jo.evans@council.example",
                                               html="<p>Jo's private plans</p>"))
    jo = sign_in(gateway, "member2")
    assert "private plans" in jo.get("/mail/frame", params={"f": "INBOX", "uid": uid}).text
    client = sign_in(gateway, "member")
    r = client.get("/mail/read", params={"f": "INBOX", "uid": uid})
    assert subject not in r.text
    frame = client.get("/mail/frame", params={"f": "INBOX", "uid": uid})
    assert "private plans" not in frame.text  # not from Jo's cached body either


def test_new_mail_event_stream(gateway: Gateway) -> None:
    """The events stream announces new mail in the open folder (IMAP IDLE)."""
    client = sign_in(gateway, "member")
    with client.stream("GET", "/mail/events", params={"f": "INBOX"}, timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines).startswith("retry:")
        time.sleep(0.3)
        gateway.stack.mail.deliver(user("member").email, message(unique("Pushed")))
        deadline = time.monotonic() + 20
        seen = []
        for line in lines:
            seen.append(line)
            if line == "event: mail" or time.monotonic() > deadline:
                break
        assert "event: mail" in seen


def test_event_stream_announces_mail_that_came_after_the_page(gateway: Gateway) -> None:
    """The page passes the count it shows (``n``): a stream that starts after more mail came
    says so at once, before any IDLE; a count that is no number is a plain 400."""
    client = sign_in(gateway, "member")
    deliver(gateway, "member", message(unique("Counted")))
    found = re.search(r'data-count="(\d+)"', client.get("/mail?f=INBOX").text)
    assert found is not None
    shown = int(found[1])
    deliver(gateway, "member", message(unique("Since the page")))
    with client.stream("GET", "/mail/events", params={"f": "INBOX", "n": str(shown)},
                       timeout=30) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("retry:")
        assert [next(lines), next(lines)] == ["", "event: mail"]
    r = client.get("/mail/events", params={"f": "INBOX", "n": "12a"})
    assert r.status_code == 400 and "count is not valid" in r.text


def test_imap_down_gives_clear_page_then_reconnects(gateway: Gateway) -> None:
    """Dovecot stopped: a plain 503 page; started again: the same session works."""
    client = sign_in(gateway, "member")
    assert client.get("/mail").status_code == 200
    gateway.loop.run(gateway.stack.mail.stop_imap())
    try:
        r = client.get("/mail")
        assert r.status_code == 503 and "Traceback" not in r.text
        assert "mail server" in r.text
    finally:
        gateway.loop.run(gateway.stack.mail.start_imap())
    assert client.get("/mail").status_code == 200


def test_smtp_down_keeps_the_message(gateway: Gateway) -> None:
    """SMTP unreachable: the message is kept and the member told so."""
    client = sign_in(gateway, "member")
    action, fields = compose_form(client, "/mail/compose")
    fields.update(to="jo.evans@council.example", subject=unique("While down"),
                  body="Do not lose me", do="send")
    gateway.loop.run(gateway.stack.mail.stop_smtp())
    try:
        r = client.post(action, data=fields, headers={"Origin": gateway.url})
    finally:
        gateway.loop.run(gateway.stack.mail.start_smtp())
    assert r.status_code == 503
    assert "Do not lose me" in r.text and "kept" in r.text


@pytest.mark.parametrize("params", [
    {"f": "INBOX", "uid": "abc"}, {"f": "INBOX", "uid": "99999999"},
    {"f": "No Such Folder", "uid": "1"}, {"f": "INBOX\r\nA LOGOUT", "uid": "1"},
])
def test_bad_message_references_get_clear_4xx(gateway: Gateway, params: dict[str, str]) -> None:
    """Nonsense uids and folders get a plain 4xx page, never a 500."""
    client = sign_in(gateway, "member")
    r = client.get("/mail/read", params=params)
    assert 400 <= r.status_code < 500, r.text
    assert "Traceback" not in r.text


def test_sent_redirect_lands_on_inbox(gateway: Gateway) -> None:
    """After sending, the member lands on their Inbox."""
    client = sign_in(gateway, "member")
    action, fields = compose_form(client, "/mail/compose")
    fields.update(to="jo.evans@council.example", subject=unique("Landing"), body="x",
                  do="send")
    r = client.post(action, data=fields, headers={"Origin": gateway.url})
    loc = urlsplit(r.headers["location"])
    assert loc.path == "/mail" and parse_qs(loc.query)["f"] == ["INBOX"]


def test_invitation_in_mail_is_answered_through_graph(gateway: Gateway) -> None:
    """A meeting request in the Inbox shows Accept/Tentative/Decline; Accept acts on the
    member's calendar event with the same iCalendar UID (through Graph)."""
    u = user("member")
    graph = gateway.stack.graph
    # Other tests answer invitations or reset the calendar stand-in: mail the invitations
    # for what is pending now, as the dev stack does at start.
    gateway.stack.mail_invitations()
    pending = [st for st in graph.calendar(u.oid).events.values()
               if not st.is_organizer and st.seed.response in ("none", "notResponded")]
    assert pending, "the Graph stand-in should hold an invitation awaiting an answer"
    target = pending[0]
    from gateway.mail import mailbox
    from tests.web.mailhelp import direct

    async def same_subject(conn: ImapConn) -> list[int]:
        return await mailbox.search_uids(conn, "INBOX", ["SUBJECT", f'"{target.seed.subject}"'])
    client = sign_in(gateway, "member")
    uid, ical = None, None
    for candidate in direct(gateway, "member", same_subject):
        page = client.get("/mail/read", params={"f": "INBOX", "uid": candidate}).text
        form = re.search(r'<form[^>]+class="invite-answer".*?</form>', page, re.S)
        if form:
            form_uid = found(re.search(r'name="uid" value="([^"]+)"', form.group(0)))
            if unescape(form_uid.group(1)) == target.ical_uid:
                uid, ical = candidate, unescape(form_uid.group(1))
                break
    assert uid is not None, "the invitation email carries the calendar event's UID"
    sent_before = len(graph.sent)
    r = client.post("/calendar/invite/answer", headers={"Origin": gateway.url}, data={
        "csrf_token": csrf_of(client), "uid": ical, "answer": "accept", "send_response": "1",
        "back": f"/mail/read?f=INBOX&uid={uid}"})
    assert r.status_code == 303
    assert r.headers["location"].startswith("/calendar/event/")
    assert graph.sent[sent_before:] and graph.sent[-1]["kind"] == "accepted"


def test_large_attachment_streams_intact(gateway: Gateway) -> None:
    """A 3 MB attachment arrives byte for byte through several partial fetches."""
    import os
    # Opens inline only if its first bytes are a PNG's (the signature), then anything.
    big = b"\x89PNG\r\n\x1a\n" + os.urandom(3 * 1024 * 1024)
    client = sign_in(gateway, "member")
    uid = deliver(gateway, "member", message(unique("Big scan"), attachments=[
        ("scan.png", "image/png", big)]))
    page = client.get("/mail/read", params={"f": "INBOX", "uid": uid}).text
    link = hrefs(page, "/mail/part?")[0]
    r = client.get(link)
    assert r.status_code == 200 and r.content == big
    assert r.headers["content-type"] == "image/png"


def test_dropped_imap_connection_is_replaced_without_the_member_noticing(gateway: Gateway) -> None:
    """When the pooled IMAP connection is cut (Exchange's idle cut, a network blip), the next
    page reconnects by itself."""
    client = sign_in(gateway, "member")
    assert client.get("/mail").status_code == 200
    pool = gateway.app.state.gateway.services.imap_pool
    slots = list(pool._slots.values())
    assert slots and all(s.conn is not None for s in slots)
    for s in slots:
        gateway.loop.loop.call_soon_threadsafe(s.conn.client.protocol.transport.abort)
    r = client.get("/mail")
    assert r.status_code == 200


def test_replies_and_forwards_of_hostile_mail_inject_nothing(gateway: Gateway) -> None:
    """Reply-all and forward of every hostile message render without error, and sending a
    forward of the encoded-CRLF one goes only to the address typed in."""
    from gateway.mail import mailbox
    from tests.mail.hostile_corpus import hostile_messages
    from tests.web.mailhelp import direct

    folder = "Committees/Licensing"
    corpus = dict(hostile_messages())
    for raw in corpus.values():
        gateway.stack.mail.deliver(user("member").email, raw, folder=folder)

    async def newest(conn: ImapConn) -> list[int]:
        return (await mailbox.search_uids(conn, folder, ["ALL"]))[: len(corpus)]
    uids = direct(gateway, "member", newest)
    client = sign_in(gateway, "member")
    for uid in uids:
        for mode in ("replyall", "forward"):
            r = client.get("/mail/compose", params={"mode": mode, "f": folder, "uid": uid})
            assert r.status_code < 500, (uid, mode)
            assert "Traceback" not in r.text
    crlf_uid = next(uid for uid in uids
                    if raw_of(gateway, "member", folder, uid) == corpus["header-encoded-crlf"])
    outbound_before = len(gateway.stack.mail.outbound)
    action, fields = compose_form(client, "/mail/compose?" + urlencode(
        {"mode": "forward", "f": folder, "uid": crlf_uid}))
    fields.update(to="jo.evans@council.example", do="send")
    r = client.post(action, data=fields, headers={"Origin": gateway.url})
    assert r.status_code == 303, r.text
    assert len(gateway.stack.mail.outbound) == outbound_before  # nobody outside reached


def test_inline_cid_image_is_embedded_in_the_frame(gateway: Gateway) -> None:
    """A cid: image is served inside the sandboxed frame (as data), with no cookie needed."""
    raw = with_inline_image(unique("Logo"), "text",
                            '<p>Logo: <img src="cid:logo@council" alt="logo"></p>', "logo@council")
    uid = deliver(gateway, "member", raw)
    client = sign_in(gateway, "member")
    frame = client.get("/mail/frame", params={"f": "INBOX", "uid": uid})
    assert "data:image/png;base64," in frame.text and "cid:" not in frame.text


def test_double_send_delivers_once(gateway: Gateway) -> None:
    """Pressing Send twice (or resubmitting the form) sends the message once; the second
    press is told it has been sent. Two presses at the same moment: one send."""
    import threading
    client = sign_in(gateway, "member")
    action, fields = compose_form(client, "/mail/compose")
    subject = unique("Only once")
    fields.update(to="jo.evans@council.example", subject=subject, body="once", do="send")
    first = client.post(action, data=fields, headers={"Origin": gateway.url})
    assert first.status_code == 303
    again = client.post(action, data=fields, headers={"Origin": gateway.url})
    assert again.status_code == 409 and "already been sent" in again.text

    action, fields = compose_form(client, "/mail/compose")
    racing = unique("Raced")
    fields.update(to="jo.evans@council.example", subject=racing, body="race", do="send")
    results: list[int] = []

    def press() -> None:
        c = gateway.client()
        c.cookies.update(client.cookies)
        results.append(c.post(action, data=fields, headers={"Origin": gateway.url})
                       .status_code)
    threads = [threading.Thread(target=press) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results.count(303) == 1, results

    async def count(conn: ImapConn) -> int:
        from gateway.mail import mailbox
        return len(await mailbox.search_uids(conn, "INBOX", ["SUBJECT", f'"{racing}"']))
    from tests.web.mailhelp import direct
    assert direct(gateway, "member2", count) == 1
    assert find_uid(gateway, "member2", subject) is not None


def test_search_uses_sort_by_date_where_offered(gateway: Gateway) -> None:
    """Where the server offers SORT (permissive Dovecot), results come newest by Date, even
    against arrival order; Exchange offers no SORT, so there they come newest by arrival."""
    token = unique("Sorted")
    older = message(token + " older", extra_headers={})
    newer = message(token + " newer")
    older = older.replace(b"Date: ", b"Date: Mon, 01 Jan 2024 09:00:00 +0000\r\nX-Was-Date: ", 1)
    deliver(gateway, "member", newer)
    deliver(gateway, "member", older)  # arrives last, but is dated earlier
    client = sign_in(gateway, "member")
    page = client.get("/mail/search", params={"subject": token}).text
    if gateway.stack.exchange_capabilities:
        assert page.index(token + " older") < page.index(token + " newer")
    else:
        assert page.index(token + " newer") < page.index(token + " older")


def test_new_mail_shows_on_the_next_page_with_the_connection_open(gateway: Gateway) -> None:
    """With the member's IMAP connection kept open, the next list still shows new mail."""
    client = sign_in(gateway, "member")
    assert client.get("/mail").status_code == 200
    subject = unique("Arrived meanwhile")
    gateway.stack.mail.deliver(user("member").email, message(subject))
    assert subject in client.get("/mail").text


def test_a_members_sessions_share_one_imap_connection(gateway: Gateway) -> None:
    """Several sessions of one member (iPad and laptop) use one IMAP connection."""
    a, b = sign_in(gateway, "member"), sign_in(gateway, "member")
    assert a.get("/mail").status_code == 200 and b.get("/mail").status_code == 200
    pool = gateway.app.state.gateway.services.imap_pool
    assert pool.open_connections == 1


def test_connection_limit_is_a_clear_503_not_a_sign_out(gateway: Gateway) -> None:
    """When the server refuses more connections for the mailbox, the member is told so
    and stays signed in. The mailbox is full before sign-in, so the connection the callback
    begins for the inbox (ImapPool.warm) is refused too, quietly: the page says why."""
    from tests.web.mailhelp import open_idle_connections
    with open_idle_connections(gateway, "member2", 20):
        client = sign_in(gateway, "member2")
        r = client.get("/mail")
    assert r.status_code == 503, r.text
    assert "connections" in r.text or "mail server" in r.text
    assert client.get("/mail").status_code == 200  # still signed in once they are gone


def test_flags_changed_elsewhere_show_on_the_next_page(gateway: Gateway) -> None:
    """Summaries are reused between pages, but flags set by another app (Outlook) show."""
    client = sign_in(gateway, "member")
    subject = unique("Read elsewhere")
    uid = deliver(gateway, "member", message(subject))
    row = re.compile(r'<li class="row( unread)?">\s*<input[^>]+value="' + str(uid) + '"')
    assert found(row.search(client.get("/mail").text)).group(1) == " unread"

    async def mark_read(conn: ImapConn) -> None:
        from gateway.mail import mailbox
        await mailbox.set_flags(conn, "INBOX", [uid], "\\Seen", True)
    from tests.web.mailhelp import direct
    direct(gateway, "member", mark_read)
    assert found(row.search(client.get("/mail").text)).group(1) is None


def test_mail_work_shows_in_metrics(gateway: Gateway) -> None:
    """Member IMAP calls and sends are counted per upstream in /metrics."""
    client = sign_in(gateway, "member")
    client.get("/mail")
    action, fields = compose_form(client, "/mail/compose")
    fields.update(to="jo.evans@council.example", subject=unique("Counted"), body="x",
                  do="send")
    assert client.post(action, data=fields, headers={"Origin": gateway.url}).status_code == 303
    text = client.get("/metrics").text
    assert re.search(r'gateway_upstream_call_duration_seconds_count\{upstream="imap"\} [1-9]',
                     text)
    assert re.search(r'gateway_upstream_call_duration_seconds_count\{upstream="smtp"\} [1-9]',
                     text)
    assert re.search(r'gateway_upstream_connections_total\{upstream="imap"\} [1-9]', text)
    assert re.search(r"gateway_mail_sends_total [1-9]", text), [
        line for line in text.splitlines() if "sen" in line][:5]


def test_delete_in_deleted_items_removes_for_good(gateway: Gateway) -> None:
    """Delete in Deleted Items removes the message permanently, as Outlook does."""
    client = sign_in(gateway, "member")
    subject = unique("Binned")
    uid = deliver(gateway, "member", message(subject), folder="Deleted Items")
    r = post(client, gateway, "/mail/action", {"f": "Deleted Items", "uid": uid,
                                               "action": "delete"})
    assert r.status_code == 303
    assert find_uid(gateway, "member", subject, "Deleted Items") is None


def test_large_message_opens_from_its_structure(gateway: Gateway) -> None:
    """A message with a large attachment opens without downloading it: text, HTML body,
    inline image and the attachment list come from its structure; it is marked read; the
    attachment still downloads whole."""
    import os
    big = os.urandom(4 * 1024 * 1024)
    subject = unique("Committee pack")
    raw = with_inline_image(subject, "Papers attached.",
                            '<p>Papers <b>attached</b>. <img src="cid:crest@council"></p>',
                            "crest@council", [("Pack.pdf", "application/pdf", big)])
    uid = deliver(gateway, "member", raw)
    client = sign_in(gateway, "member")
    page = client.get("/mail/read", params={"f": "INBOX", "uid": uid})
    assert page.status_code == 200
    assert "Pack.pdf" in page.text and "4.0 MB" in page.text
    assert "seen" in flags_of(gateway, "member", "INBOX", uid)
    frame = client.get(unescape(found(re.search(r'<iframe[^>]+src="([^"]+)"', page.text)).group(1)))
    assert "<b>attached</b>" in frame.text and "data:image/png;base64," in frame.text
    link = next(h for h in hrefs(page.text, "/mail/part?") if "part=2" in h)
    assert client.get(link).content == big


def test_forward_of_a_large_message_carries_its_attachment(gateway: Gateway) -> None:
    """Forwarding a message opened from its structure still carries the attachment whole."""
    import email
    import email.policy
    import os
    big = os.urandom(3 * 1024 * 1024)
    subject = unique("Big to forward")
    uid = deliver(gateway, "member", message(subject, attachments=[
        ("Scan.pdf", "application/pdf", big)]))
    client = sign_in(gateway, "member")
    action, fields = compose_form(client, "/mail/compose?" + urlencode(
        {"mode": "forward", "f": "INBOX", "uid": uid}))
    page = client.get("/mail/compose?" + urlencode({"mode": "forward", "f": "INBOX",
                                                     "uid": uid})).text
    keep = re.findall(r'name="keep_part" value="([^"]+)"', page)
    fields.update(to="jo.evans@council.example", do="send")
    r = client.post(action, data={**fields, "keep_part": keep}, headers={"Origin": gateway.url})
    assert r.status_code == 303, r.text
    fwd = email.message_from_bytes(
        raw_of(gateway, "member2", "INBOX", find_uid(gateway, "member2", "Fw: " + subject)),
        policy=email.policy.default)
    assert [p.get_content() for p in fwd.iter_attachments()] == [big]


def test_notices_show_only_to_their_session_and_only_while_fresh(gateway: Gateway) -> None:
    """A notice link shows its notice to the session it was made for, not to another
    session (a forged or shared link) and not after ten minutes; a note that was tampered
    with shows nothing."""
    client = sign_in(gateway, "member")
    subject = unique("Notice owner")
    uid = deliver(gateway, "member", message(subject))
    r = client.post("/mail/action", data={"csrf_token": csrf_of(client, "/mail"), "f": "INBOX",
                                          "uid": str(uid), "action": "archive"},
                    headers={"Origin": gateway.url})
    assert r.status_code == 303
    link = r.headers["location"]
    assert "Moved to Archive (1 message)." in client.get(link).text
    other = sign_in(gateway, "member")
    assert "Moved to Archive" not in other.get(link).text
    token = parse_qs(urlsplit(link).query)["note"][0]
    body, mac = token.split(".")
    forged = link.replace(token, body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac)
    assert "Moved to" not in client.get(forged).text
    gateway.clock.advance(601)
    assert "Moved to Archive" not in client.get(link).text


def test_nothing_ticked_is_a_redirect_with_a_notice_not_an_error(gateway: Gateway) -> None:
    """Delete with no message chosen answers 303 back to the list with a notice."""
    client = sign_in(gateway, "member")
    r = client.post("/mail/action", data={"csrf_token": csrf_of(client, "/mail"), "f": "INBOX",
                                          "action": "delete", "back": "/mail?f=INBOX"},
                    headers={"Origin": gateway.url})
    assert r.status_code == 303
    page = client.get(r.headers["location"])
    assert page.status_code == 200
    assert "Choose at least one message first" in page.text


def test_every_recipient_refused_names_them_and_keeps_the_message(gateway: Gateway) -> None:
    """All recipients refused: nothing sent, each refused address named with the server's
    reason, the form back with everything typed."""
    client = sign_in(gateway, "member")
    action, fields = compose_form(client, "/mail/compose")
    subject = unique("All refused")
    fields.update(to="nobody.here@council.example", subject=subject, body="Kept", do="send")
    r = client.post(action, data=fields, headers={"Origin": gateway.url})
    assert r.status_code == 502
    text = unescape(r.text)
    assert "refused every recipient: nobody.here@council.example (550" in text
    assert subject in text and "Kept</textarea>" in text


def test_attachment_kinds_are_named_as_members_know_them() -> None:
    """Office types get their everyday names; unknown types fall back to their family."""
    from gateway.web.mailviews import kind_name
    assert kind_name("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet") \
        == "Excel spreadsheet"
    assert kind_name("application/vnd.ms-powerpoint") == "PowerPoint presentation"
    assert kind_name("application/msword; name=x.doc") == "Word document"
    assert kind_name("APPLICATION/PDF") == "PDF"
    assert kind_name("image/heic") == "Image"
    assert kind_name("application/x-unheard-of") == "File"
