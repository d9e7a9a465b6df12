"""The page layouts of issue 13 item 9, in headless Chromium at iPad landscape (1180x820),
iPad portrait (820x1180) and phone (390x844): the two-pane read page in landscape (the list
beside the message, the open message marked, the list keeping its place), one column in
portrait, the compact phone list (header on one line, folders and actions behind buttons,
six messages on the first screen) and nothing clipped or covered at 200 % zoom. With and
without JavaScript; axe-core and the strict CSP hold on each page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.web.browser import IpadBrowser, Recorder, axe_violations, ipad_browser
from tests.web.mailhelp import deliver, message, unique

pytestmark = pytest.mark.browser
LOCAL = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="module")
def chromium() -> Iterator[IpadBrowser]:
    with ipad_browser() as b:
        yield b


def signed_in(chromium: IpadBrowser, gateway: Any, size: str, javascript: bool = True,
              zoom: int = 100) -> tuple[Any, Recorder]:
    page, rec = chromium.page(javascript=javascript, size=size, viewport=True, zoom=zoom)
    page.goto(gateway.url + "/")
    page.get_by_role("link", name=re.compile("Sign in")).click()
    page.get_by_role("button", name=re.compile("Cllr Alex Morgan")).click()
    if not javascript:
        page.get_by_role("button", name=re.compile("Continue")).click()
    page.wait_for_selector("#folder-count")
    return page, rec


def csp_errors(rec: Recorder) -> list[str]:
    return [c for c in rec.console if "Content Security Policy" in c or "Refused to" in c]


def box(page: Any, selector: str) -> dict[str, float]:
    b = page.locator(selector).bounding_box()
    assert b is not None, f"{selector} is not shown"
    return dict(b)


PANE_TOP = "document.getElementById('list-pane').scrollTop"


def _open_first(page: Any, gateway: Any) -> None:
    page.goto(gateway.url + "/mail?f=INBOX")
    page.locator("#rows li a").first.click()
    page.wait_for_selector("#subject")


@pytest.mark.parametrize("javascript", [True, False])
def test_landscape_ipad_shows_the_list_beside_the_open_message(chromium, gateway, javascript):
    """iPad landscape: the folder's list is on the left of the open message, the open
    message is marked in it, and opening another from the list keeps the list where it was
    (with JavaScript, the exact scroll place; without, the opened row is in view)."""
    for i in range(3):
        deliver(gateway, "member", message(unique(f"Two-pane {i}")))
    page, rec = signed_in(chromium, gateway, "ipad-landscape", javascript)
    try:
        _open_first(page, gateway)
        pane, msg = box(page, "#list-pane"), box(page, "article.message")
        assert pane["x"] + pane["width"] <= msg["x"] + 1
        assert pane["width"] >= 300 and msg["width"] >= 600
        assert abs(pane["y"] - msg["y"]) < 2
        current = page.locator("#list-pane a[aria-current=true]")
        assert current.count() == 1
        assert page.inner_text("#subject") in current.inner_text()
        if javascript:
            assert axe_violations(page) == []

        # Scroll the list down, open a message further down: the list stays put.
        rows = page.locator("#list-pane li a")
        assert rows.count() > 20
        page.evaluate("document.getElementById('list-pane').scrollTop = 600")
        page.wait_for_function(f"{PANE_TOP} > 500")
        placed = page.evaluate(PANE_TOP)
        pane_box = box(page, "#list-pane")
        target = next(i for i in range(rows.count())
                      if (b := rows.nth(i).bounding_box()) and b["y"] > pane_box["y"] + 300)
        row_id = rows.nth(target).evaluate("a => a.parentElement.id")
        rows.nth(target).click()
        page.wait_for_selector(f"#{row_id} a[aria-current=true]")
        assert page.locator("#list-pane a[aria-current=true]").count() == 1
        cur, pane_box = box(page, "#list-pane a[aria-current=true]"), box(page, "#list-pane")
        assert pane_box["y"] <= cur["y"] and cur["y"] + cur["height"] <= \
            pane_box["y"] + pane_box["height"]
        if javascript:
            assert abs(page.evaluate(PANE_TOP) - placed) <= 2
            assert "#" not in page.url
        # The page itself does not scroll: the panes do.
        assert page.evaluate("document.scrollingElement.scrollHeight <= innerHeight + 1")
        assert csp_errors(rec) == [] and rec.outside(LOCAL) == []
    finally:
        page.context.close()


@pytest.mark.parametrize("size", ["ipad-portrait", "phone"])
def test_portrait_and_phone_read_in_one_column(chromium, gateway, size):
    """iPad portrait and the phone keep one column: no list beside the message, which
    has the width of the page; Back goes to the page of the folder it came from."""
    page, rec = signed_in(chromium, gateway, size)
    try:
        _open_first(page, gateway)
        assert page.locator("#list-pane").is_hidden()
        width = page.viewport_size["width"]
        assert box(page, "article.message")["width"] >= width - 40
        assert page.get_attribute("text=← Back to the folder", "href") == "/mail?f=INBOX"
        assert axe_violations(page) == []
        assert csp_errors(rec) == []
    finally:
        page.context.close()
