"""End to end in headless Chromium with an iPad profile: sign in through the Entra stand-in's
pages, read, open a PDF, reply, forward with an attachment, search; hostile mail rendered
with no script running and nothing fetched from outside; axe-core on every mail page."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from gateway.mail.imap import ImapConn
from tests.conftest import Gateway
from tests.mail.hostile_corpus import hostile_messages
from tests.web.browser import axe_violations, ipad_page, sign_in_in_browser
from tests.web.mailhelp import PDF, deliver, find_uid, message, unique

pytestmark = pytest.mark.browser
LOCAL = {"127.0.0.1", "localhost"}


def test_sign_in_read_reply_forward_search_in_ipad_chromium(gateway: Gateway) -> None:
    """The member's whole round in the browser, pages accessible, nothing external."""
    subject = unique("Browser papers")
    uid = deliver(gateway, "member", message(
        subject, sender="Cllr Jo Evans <jo.evans@council.example>",
        html="<p>Please read the <b>agenda</b>.</p><img src='https://tracker.example/t.gif'>",
        attachments=[("Agenda.pdf", "application/pdf", PDF)]))
    with ipad_page() as (page, rec):
        sign_in_in_browser(page, gateway.url)
        assert page.locator("#folder-count strong").inner_text().isdigit()
        assert "Cllr Alex Morgan" in page.content()
        problems = {"list": axe_violations(page)}

        page.get_by_role("link", name=re.compile(re.escape(subject))).first.click()
        page.wait_for_selector("iframe.body-frame")
        frame = page.frame_locator("iframe.body-frame")
        assert frame.locator("b").inner_text() == "agenda"
        problems["message"] = axe_violations(page)

        pdf_url = page.get_by_role("link", name="Agenda.pdf").get_attribute("href")
        assert pdf_url
        pdf = page.request.get(gateway.url + pdf_url)
        assert pdf.status == 200 and pdf.body() == PDF
        assert pdf.headers["content-type"] == "application/pdf"

        page.get_by_role("link", name="Reply", exact=True).click()
        page.wait_for_selector("#compose-form")
        assert page.input_value("#to") == "Cllr Jo Evans <jo.evans@council.example>"
        page.fill("#body", "Yes, I will be there.\n" + page.input_value("#body"))
        problems["compose"] = axe_violations(page)
        page.get_by_role("button", name="Send").click()
        page.wait_for_selector("#folder-count")

        page.goto(gateway.url + "/mail/read?" + urlencode({"f": "INBOX", "uid": uid}))
        page.get_by_role("link", name="Forward").click()
        page.wait_for_selector("#compose-form")
        assert page.is_checked("input[name=keep_part]")
        page.fill("#to", "jo.evans@council.example")
        page.get_by_role("button", name="Send").click()
        page.wait_for_selector("#folder-count")

        page.fill("#q", subject)
        page.get_by_role("button", name="Search").click()
        page.wait_for_selector("#results-title")
        assert "result" in page.inner_text("#results-title")
        problems["search"] = axe_violations(page)

        assert rec.outside(LOCAL) == []
        assert not [c for c in rec.console if "Content Security Policy" in c]
        assert rec.dialogs == []
    assert {k: v for k, v in problems.items() if v} == {}
    assert find_uid(gateway, "member2", "Re: " + subject) is not None
    assert find_uid(gateway, "member2", "Fw: " + subject) is not None


def test_sign_in_page_is_accessible(gateway: Gateway) -> None:
    """The sign-in page passes axe-core."""
    with ipad_page() as (page, _):
        page.goto(gateway.url + "/auth/signin")
        assert axe_violations(page) == []


def test_hostile_mail_runs_nothing_and_fetches_nothing_outside(gateway: Gateway) -> None:
    """Every message of the hostile corpus renders without script, dialog, outside request
    or server error."""
    folder = "Committees/Planning"
    corpus = hostile_messages()
    for _name, raw in corpus:
        gateway.stack.mail.deliver("alex.morgan@council.example", raw, folder=folder)
    from gateway.mail import mailbox
    from tests.web.mailhelp import direct

    async def all_uids(conn: ImapConn) -> list[int]:
        return await mailbox.search_uids(conn, folder, ["ALL"])
    uids = direct(gateway, "member", all_uids)
    assert len(uids) >= len(corpus)
    with ipad_page() as (page, rec):
        page.add_init_script("window.__pwned = 0;")
        sign_in_in_browser(page, gateway.url)
        statuses = []
        page.on("response", lambda r: statuses.append((r.status, r.url)))
        for uid in uids[: len(corpus)]:
            page.goto(gateway.url + "/mail/read?" + urlencode({"f": folder, "uid": uid}))
            page.wait_for_load_state("load")
            for frame in page.frames:
                assert frame.evaluate("() => window.__pwned || 0") == 0
        assert [s for s in statuses if s[0] >= 500] == []
        assert rec.outside(LOCAL) == []
        assert rec.dialogs == []
