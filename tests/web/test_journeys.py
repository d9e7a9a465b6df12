"""Members' journeys through the mail pages in headless Chromium at iPad portrait, iPad
landscape and phone sizes: acting on messages from the Inbox, notices and undo, drafts,
partial refusals, invitations without an event, and the small things a mail app gets right.
axe-core runs on the pages visited."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from PIL import Image

from gateway.mail import mailbox
from tests.conftest import Gateway
from tests.web.browser import (
    SIZES,
    IpadBrowser,
    axe_violations,
    signed_in_page,
)
from tests.web.mailhelp import deliver, direct, drawn_pdf, find_uid, message, unique

pytestmark = pytest.mark.browser
LOCAL = {"127.0.0.1", "localhost"}


def _actions(page: Any) -> Any:
    """The list's form with its action buttons shown: on a phone they are behind the
    "Actions" button (a <details>), which this opens."""
    summary = page.locator("#list-form details.acts > summary")
    if summary.is_visible() and page.locator("#list-form details.acts[open]").count() == 0:
        summary.click()
    return page.locator("#list-form")


def _tick(page: Any, subject: str) -> None:
    page.get_by_role("checkbox", name=re.compile(re.escape(subject))).check()


@pytest.mark.parametrize("size", list(SIZES))
def test_delete_archive_move_from_the_inbox_keep_the_inbox_working(
    chromium: IpadBrowser, gateway: Gateway, size: str,
) -> None:
    """Delete, Archive and Move from the Inbox each land back on a working Inbox (not
    "Error 502"), the message gone from it and found where it went."""
    subjects = {what: unique(f"Act {what} {size}") for what in ("delete", "archive", "move")}
    for s in subjects.values():
        deliver(gateway, "member", message(s))
    page, rec = signed_in_page(chromium, gateway.url, size)
    try:
        page.goto(gateway.url + "/mail?f=INBOX")
        _tick(page, subjects["delete"])
        _actions(page).get_by_role("button", name="Delete").click()
        page.wait_for_load_state("load")
        assert page.locator("#folder-count").count() == 1, page.inner_text("main")
        assert subjects["delete"] not in page.inner_text("#rows")
        assert axe_violations(page) == []

        _tick(page, subjects["archive"])
        _actions(page).get_by_role("button", name="Archive").click()
        page.wait_for_load_state("load")
        assert page.locator("#folder-count").count() == 1, page.inner_text("main")
        assert subjects["archive"] not in page.inner_text("#rows")

        _tick(page, subjects["move"])
        _actions(page).get_by_label("Move to folder").select_option(
            label="Planning")
        _actions(page).get_by_role("button", name="Move", exact=True).click()
        page.wait_for_load_state("load")
        assert page.locator("#folder-count").count() == 1, page.inner_text("main")
        assert subjects["move"] not in page.inner_text("#rows")
        # Reloading (the symptom members reported) still works.
        page.reload()
        assert page.locator("#folder-count").count() == 1
        assert rec.outside(LOCAL) == []
    finally:
        page.context.close()
    assert find_uid(gateway, "member", subjects["delete"], "Deleted Items") is not None
    assert find_uid(gateway, "member", subjects["archive"], "Archive") is not None
    assert find_uid(gateway, "member", subjects["move"], "Committees/Planning") is not None
    assert find_uid(gateway, "member", subjects["move"]) is None


# Each action that moves messages, the button that does it and the folder it lands in
# (its label, as the notice says it, and its name on the server).
MOVES = {"archive": ("Archive", "Archive", "Archive"),
         "delete": ("Delete", "Deleted Items", "Deleted Items"),
         "move": ("Move", "Planning", "Committees/Planning")}


@pytest.mark.parametrize("action", list(MOVES))
@pytest.mark.parametrize("size,javascript", [("ipad-portrait", True), ("ipad-landscape", True),
                                             ("phone", True), ("ipad-portrait", False)])
def test_archive_says_so_and_undo_brings_it_back(chromium: IpadBrowser, gateway: Gateway, size: str,
                                                 javascript: bool, action: str) -> None:
    """Archive, Delete and Move each show "Moved to <folder> (1 message)." with Undo; Undo
    moves it back to the Inbox and says so, and the Inbox works. With JavaScript off too."""
    button, label, dest = MOVES[action]
    subject = unique(f"Undo {action} {size}")
    deliver(gateway, "member", message(subject))
    page, rec = signed_in_page(chromium, gateway.url, size, javascript)
    try:
        _tick(page, subject)
        if action == "move":
            _actions(page).get_by_label("Move to folder").select_option(label=label)
        _actions(page).get_by_role("button", name=button, exact=True).click()
        page.wait_for_selector("#notice")
        assert page.inner_text("#notice p") == f"Moved to {label} (1 message)."
        assert page.get_attribute("#notice", "role") == "status"
        assert subject not in page.inner_text("#rows")
        if javascript:
            assert axe_violations(page) == []
        assert find_uid(gateway, "member", subject, dest) is not None
        page.locator("#notice").get_by_role("button", name="Undo").click()
        page.wait_for_selector("#notice")
        assert page.inner_text("#notice p") == "Moved back to Inbox (1 message)."
        assert page.locator("#notice button").count() == 0
        assert subject in page.inner_text("#rows")
        assert "note=" not in (page.get_attribute("input[name=back]", "value") or "")
        # The Inbox still works after the move and its undo (reload, then open it).
        page.reload()
        assert page.locator("#folder-count").count() == 1, page.inner_text("main")
        page.get_by_role("link", name=re.compile(re.escape(subject))).first.click()
        page.wait_for_selector("#subject")
        assert page.inner_text("#subject") == subject
        assert rec.outside(LOCAL) == [] and rec.dialogs == []
    finally:
        page.context.close()
    assert find_uid(gateway, "member", subject) is not None
    assert find_uid(gateway, "member", subject, dest) is None


@pytest.mark.parametrize("size", list(SIZES))
def test_nothing_ticked_or_no_folder_chosen_is_a_plain_notice(chromium: IpadBrowser,
                                                              gateway: Gateway, size: str) -> None:
    """Delete with nothing ticked, or Move without choosing a folder (the list starts at
    "Move to…", not at a real folder), is a notice on the same page, not "Error 400"."""
    page, _ = signed_in_page(chromium, gateway.url, size)
    try:
        form = _actions(page)
        assert form.locator("#move-target option:checked").inner_text() == "Move to…"
        form.get_by_role("button", name="Delete").click()
        page.wait_for_selector("#notice")
        assert "Choose at least one message first" in page.inner_text("#notice")
        assert page.get_attribute("#notice", "role") == "alert"
        assert "Error" not in page.inner_text("main")
        page.locator("#rows input[type=checkbox]").first.check()
        _actions(page).get_by_role("button", name="Move", exact=True).click()
        page.wait_for_selector("#notice")
        assert "Choose a folder to move to first." in page.inner_text("#notice")
        assert page.locator("#folder-count").count() == 1
        assert axe_violations(page) == []
    finally:
        page.context.close()


@pytest.mark.parametrize("size,javascript", [("ipad-portrait", True), ("ipad-landscape", True),
                                              ("phone", True), ("phone", False)])
def test_message_sent_notice(chromium: IpadBrowser, gateway: Gateway, size: str,
                             javascript: bool) -> None:
    """After Send the Inbox says "Message sent.", with or without JavaScript."""
    page, _ = signed_in_page(chromium, gateway.url, size, javascript)
    try:
        page.goto(gateway.url + "/mail/compose")
        page.fill("#to", "jo.evans@council.example")
        page.fill("#subject", unique("Notice of sending"))
        page.fill("#body", "Hello")
        page.get_by_role("button", name="Send").click()
        page.wait_for_selector("#notice")
        assert page.inner_text("#notice p") == "Message sent."
    finally:
        page.context.close()


@pytest.mark.parametrize("size,javascript", [("ipad-portrait", True), ("ipad-landscape", True),
                                             ("phone", True), ("phone", False)])
def test_close_saves_the_typing_and_the_draft_reopens_to_edit_and_send(
    chromium: IpadBrowser, gateway: Gateway, size: str, javascript: bool,
) -> None:
    """Close with typing saves it to Drafts (not thrown away) and says so; in Drafts the
    message opens in the compose form; edited and sent, it arrives and leaves Drafts."""
    subject = unique(f"Draft {size}")
    page, rec = signed_in_page(chromium, gateway.url, size, javascript)
    try:
        page.goto(gateway.url + "/mail/compose")
        page.fill("#to", "jo.evans@council.example")
        page.fill("#subject", subject)
        page.fill("#body", "First thoughts on the budget.")
        page.get_by_role("button", name="Close").click()
        page.wait_for_selector("#notice")
        assert page.inner_text("#notice p") == "Your message was saved in Drafts."
        assert "f=Drafts" in page.url
        page.get_by_role("link", name=re.compile(re.escape(subject))).click()
        page.wait_for_selector("#compose-form")
        assert page.input_value("#subject") == subject
        assert page.input_value("#body").startswith("First thoughts on the budget.")
        if javascript:
            assert axe_violations(page) == []
        page.fill("#body", "Final thoughts on the budget.")
        page.get_by_role("button", name="Send").click()
        page.wait_for_selector("#notice")
        assert page.inner_text("#notice p") == "Message sent."
        assert rec.dialogs == []
    finally:
        page.context.close()
    assert find_uid(gateway, "member2", subject) is not None
    assert find_uid(gateway, "member", subject, "Drafts") is None


def test_a_draft_opened_from_drafts_offers_edit(chromium: IpadBrowser, gateway: Gateway) -> None:
    """A draft opened on the read page (from search, say) has an Edit draft button."""
    subject = unique("Read draft")
    uid = deliver(gateway, "member", message(subject), folder="Drafts")
    page, _ = signed_in_page(chromium, gateway.url, "ipad-landscape")
    try:
        page.goto(f"{gateway.url}/mail/read?f=Drafts&uid={uid}")
        page.get_by_role("link", name="Edit draft").click()
        page.wait_for_selector("#compose-form")
        assert page.input_value("#subject") == subject
    finally:
        page.context.close()


def _drafts_count(gateway: Any) -> int:
    async def count(conn: Any) -> int:
        return (await mailbox.fetch_page(conn, "Drafts")).total
    result: int = direct(gateway, "member", count)
    return result


def test_close_without_changes_saves_nothing_and_leaving_with_typing_asks(chromium: IpadBrowser,
                                                                          gateway: Gateway) -> None:
    """Close on an untouched form goes back to the Inbox without making a draft; following
    a link away from unsaved typing asks first (and stays when the member says no)."""
    page, rec = signed_in_page(chromium, gateway.url, "ipad-portrait")
    try:
        before = _drafts_count(gateway)
        page.goto(gateway.url + "/mail/compose?to=jo.evans%40council.example")
        page.get_by_role("button", name="Close").click()
        page.wait_for_selector("#folder-count")
        assert "f=INBOX" in page.url and page.locator("#notice").count() == 0
        assert _drafts_count(gateway) == before
        page.goto(gateway.url + "/mail/compose")
        subject = unique("Unsaved")
        page.fill("#subject", subject)
        page.get_by_role("link", name="Mail", exact=True).click()
        page.wait_for_timeout(500)
        assert rec.dialog_types == ["beforeunload"]   # dismissed: the member stays
        assert page.locator("#compose-form").count() == 1
        assert page.input_value("#subject") == subject
    finally:
        page.context.close()


def _copies(gateway: Any, who: str, subject: str) -> int:
    async def count(conn: Any) -> int:
        return len(await mailbox.search_uids(conn, "INBOX", ["SUBJECT", f'"{subject}"']))
    result: int = direct(gateway, who, count)
    return result


@pytest.mark.parametrize("size", list(SIZES))
def test_partial_refusal_names_the_refused_and_resends_to_them_only(
    chromium: IpadBrowser, gateway: Gateway, size: str,
) -> None:
    """One good and one mistyped address: the page says it was sent but names the refused
    address with the server's reason, and the form that follows is addressed to that one
    only; corrected and sent, the good recipient still has exactly one copy."""
    subject = unique(f"Partly {size}")
    page, rec = signed_in_page(chromium, gateway.url, size)
    try:
        page.goto(gateway.url + "/mail/compose")
        page.fill("#to", "jo.evans@council.example, jo.evens@council.example")
        page.fill("#subject", subject)
        page.fill("#body", "Agenda attached.")
        page.get_by_role("button", name="Send").click()
        page.wait_for_selector("#compose-refused")
        said = page.inner_text("#compose-refused")
        assert "jo.evens@council.example" in said and "5.1.1" in said
        assert "jo.evans@council.example" not in said
        assert page.input_value("#to") == "jo.evens@council.example"
        assert page.input_value("#subject") == subject
        assert page.input_value("#body") == "Agenda attached."
        assert axe_violations(page) == []
        page.fill("#to", "priya.shah@council.example")
        page.get_by_role("button", name="Send").click()
        page.wait_for_selector("#notice")
        assert page.inner_text("#notice p") == "Message sent."
        assert rec.dialogs == []
    finally:
        page.context.close()
    assert _copies(gateway, "member2", subject) == 1
    assert _copies(gateway, "admin", subject) == 1


@pytest.mark.parametrize("size", list(SIZES))
def test_invitation_not_in_the_calendar_is_answered_by_mail(chromium: IpadBrowser, gateway: Gateway,
                                                            size: str) -> None:
    """An invitation whose meeting is not in the calendar: the typed comment and Accept end
    on the message saying the answer went by mail (not a 404), and the organiser gets it."""
    from tests.calendar.test_invitations import _outside_invite
    subject = unique(f"Outside invite {size}")
    uid = deliver(gateway, "member", _outside_invite(subject, f"{subject}@audit.example"))
    before = len(gateway.stack.mail.outbound)
    page, rec = signed_in_page(chromium, gateway.url, size)
    try:
        page.goto(f"{gateway.url}/mail/read?f=INBOX&uid={uid}")
        page.fill("#invite-comment", "Happy to join")
        page.locator(".invite-answer").get_by_role("button", name="Accept").click()
        page.wait_for_load_state("load")
        assert "went to the organiser by mail" in page.inner_text(".invite")
        assert axe_violations(page) == []
        assert rec.outside(LOCAL) == []
    finally:
        page.context.close()
    sent = gateway.stack.mail.outbound[before:]
    assert len(sent) == 1 and b"Happy to join" in sent[0].data


# Office attachments as Outlook sends them: (file name, MIME type, the name members know).
OFFICE = [("Report.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml"
           ".document", "Word document"),
          ("Budget.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
           "Excel spreadsheet"),
          ("Briefing.pptx", "application/vnd.openxmlformats-officedocument.presentationml"
           ".presentation", "PowerPoint presentation")]


@pytest.mark.parametrize("size", list(SIZES))
def test_office_attachments_are_named_and_download_exactly(chromium: IpadBrowser,
                                                           gateway: Gateway, size: str) -> None:
    """Issue 13 item 13: the read page names Word, Excel and PowerPoint files as members know
    them, never by their raw MIME type, and tapping one downloads the very bytes that were
    sent (each file different, so a mix-up would show)."""
    files = [(name, ctype, b"PK\x03\x04" + name.encode() * 40 + bytes(range(256)))
             for name, ctype, _ in OFFICE]
    subject = unique(f"Office {size}")
    uid = deliver(gateway, "member", message(subject, attachments=files))
    page, rec = signed_in_page(chromium, gateway.url, size)
    try:
        page.goto(f"{gateway.url}/mail/read?f=INBOX&uid={uid}")
        section = page.get_by_role("region", name="Attachments")
        assert "vnd." not in section.inner_text() and "openxml" not in section.inner_text()
        for (name, _, data), (_, _, known) in zip(files, OFFICE, strict=True):
            item = section.locator("li", has_text=name)
            assert known in item.inner_text()
            with page.expect_download() as got:
                item.get_by_role("link", name=name).click()
            download = got.value
            assert download.suggested_filename == name
            with open(download.path(), "rb") as fh:
                assert fh.read() == data
        assert axe_violations(page) == []
        assert rec.outside(LOCAL) == []
    finally:
        page.context.close()


def _black_pixels(png: bytes) -> int:
    """Pixels that are black in a screenshot: the PDF's square and title. Chromium's viewer
    draws on a grey background with a grey toolbar, so an undrawn viewer has none."""
    image = Image.open(io.BytesIO(png)).convert("L")
    return sum(count for level, count in enumerate(image.histogram()) if level < 16)


@pytest.mark.parametrize("size", list(SIZES))
def test_committee_pdf_opens_drawn_in_chromiums_viewer(chromium: IpadBrowser, gateway: Gateway,
                                                       size: str) -> None:
    """Issue 13 item 2 in Chromium: tapping a committee PDF opens it in a new tab, in the
    browser's own viewer, with its page drawn (the WebKit journey checks Safari's engine).
    The tab is the gateway's attachment URL with the PDF policy, nothing from outside."""
    pdf = drawn_pdf()
    subject = unique(f"Committee PDF {size}")
    uid = deliver(gateway, "member", message(subject, attachments=[
        ("Planning agenda.pdf", "application/pdf", pdf)]))
    page, rec = signed_in_page(chromium, gateway.url, size)
    try:
        page.goto(f"{gateway.url}/mail/read?f=INBOX&uid={uid}")
        link = page.get_by_role("region", name="Attachments").get_by_role(
            "link", name="Planning agenda.pdf")
        with page.context.expect_page() as opened:
            link.click()
        viewer = opened.value
        viewer.wait_for_load_state()
        assert viewer.url.startswith(gateway.url + "/mail/part?")
        drawn = 0
        for _ in range(40):              # the viewer draws a moment after the tab loads
            drawn = _black_pixels(viewer.screenshot())
            if drawn > 2000:
                break
            viewer.wait_for_timeout(250)
        assert drawn > 2000, f"the PDF viewer drew {drawn} black pixels"
        assert rec.outside(LOCAL) == []
    finally:
        page.context.close()
