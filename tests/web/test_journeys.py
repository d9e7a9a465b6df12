"""Members' journeys through the mail pages in headless Chromium at iPad portrait, iPad
landscape and phone sizes: acting on messages from the Inbox, notices and undo, drafts,
partial refusals, invitations without an event, and the small things a mail app gets right.
axe-core runs on the pages visited."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.web.browser import (
    SIZES,
    IpadBrowser,
    axe_violations,
    ipad_browser,
    sign_in_in_browser,
)
from tests.web.mailhelp import deliver, find_uid, message, unique

pytestmark = pytest.mark.browser
LOCAL = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="module")
def chromium() -> Iterator[IpadBrowser]:
    with ipad_browser() as b:
        yield b


def _signed_in(chromium: IpadBrowser, gateway: Any, size: str, javascript: bool = True
               ) -> tuple[Any, Any]:
    page, rec = chromium.page(javascript=javascript, size=size)
    if javascript:
        sign_in_in_browser(page, gateway.url)
    else:
        page.goto(gateway.url + "/")
        page.get_by_role("link", name=re.compile("Sign in")).click()
        page.get_by_role("button", name=re.compile("Cllr Alex Morgan")).click()
        page.get_by_role("button", name=re.compile("Continue")).click()
        page.wait_for_selector("#folder-count")
    return page, rec


def _tick(page: Any, subject: str) -> None:
    page.get_by_role("checkbox", name=re.compile(re.escape(subject))).check()


@pytest.mark.parametrize("size", list(SIZES))
def test_delete_archive_move_from_the_inbox_keep_the_inbox_working(chromium, gateway, size):
    """Delete, Archive and Move from the Inbox each land back on a working Inbox (not
    "Error 502"), the message gone from it and found where it went."""
    subjects = {what: unique(f"Act {what} {size}") for what in ("delete", "archive", "move")}
    for s in subjects.values():
        deliver(gateway, "member", message(s))
    page, rec = _signed_in(chromium, gateway, size)
    try:
        page.goto(gateway.url + "/mail?f=INBOX")
        _tick(page, subjects["delete"])
        page.locator("#list-form").get_by_role("button", name="Delete").click()
        page.wait_for_load_state("load")
        assert page.locator("#folder-count").count() == 1, page.inner_text("main")
        assert subjects["delete"] not in page.inner_text("#rows")
        assert axe_violations(page) == []

        _tick(page, subjects["archive"])
        page.locator("#list-form").get_by_role("button", name="Archive").click()
        page.wait_for_load_state("load")
        assert page.locator("#folder-count").count() == 1, page.inner_text("main")
        assert subjects["archive"] not in page.inner_text("#rows")

        _tick(page, subjects["move"])
        page.locator("#list-form").get_by_label("Move to folder").select_option(
            label="Planning")
        page.locator("#list-form").get_by_role("button", name="Move", exact=True).click()
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


@pytest.mark.parametrize("size,javascript", [("ipad-portrait", True), ("ipad-landscape", True),
                                             ("phone", True), ("ipad-portrait", False)])
def test_archive_says_so_and_undo_brings_it_back(chromium, gateway, size, javascript):
    """Archive shows "Moved to Archive (1 message)." with Undo; Undo moves it back to the
    Inbox and says so. With JavaScript off too."""
    subject = unique(f"Undo {size}")
    deliver(gateway, "member", message(subject))
    page, rec = _signed_in(chromium, gateway, size, javascript)
    try:
        _tick(page, subject)
        page.locator("#list-form").get_by_role("button", name="Archive").click()
        page.wait_for_selector("#notice")
        assert page.inner_text("#notice p") == "Moved to Archive (1 message)."
        assert page.get_attribute("#notice", "role") == "status"
        assert subject not in page.inner_text("#rows")
        if javascript:
            assert axe_violations(page) == []
        page.locator("#notice").get_by_role("button", name="Undo").click()
        page.wait_for_selector("#notice")
        assert page.inner_text("#notice p") == "Moved back to Inbox (1 message)."
        assert page.locator("#notice button").count() == 0
        assert subject in page.inner_text("#rows")
        assert "note=" not in (page.get_attribute("input[name=back]", "value") or "")
        assert rec.outside(LOCAL) == [] and rec.dialogs == []
    finally:
        page.context.close()
    assert find_uid(gateway, "member", subject) is not None
    assert find_uid(gateway, "member", subject, "Archive") is None


@pytest.mark.parametrize("size", list(SIZES))
def test_nothing_ticked_or_no_folder_chosen_is_a_plain_notice(chromium, gateway, size):
    """Delete with nothing ticked, or Move without choosing a folder (the list starts at
    "Move to…", not at a real folder), is a notice on the same page, not "Error 400"."""
    page, _ = _signed_in(chromium, gateway, size)
    try:
        form = page.locator("#list-form")
        assert form.locator("#move-target option:checked").inner_text() == "Move to…"
        form.get_by_role("button", name="Delete").click()
        page.wait_for_selector("#notice")
        assert "Choose at least one message first" in page.inner_text("#notice")
        assert page.get_attribute("#notice", "role") == "alert"
        assert "Error" not in page.inner_text("main")
        page.locator("#rows input[type=checkbox]").first.check()
        page.locator("#list-form").get_by_role("button", name="Move", exact=True).click()
        page.wait_for_selector("#notice")
        assert "Choose a folder to move to first." in page.inner_text("#notice")
        assert page.locator("#folder-count").count() == 1
    finally:
        page.context.close()


def test_message_sent_notice(chromium, gateway):
    """After Send the Inbox says "Message sent."."""
    page, _ = _signed_in(chromium, gateway, "phone")
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
