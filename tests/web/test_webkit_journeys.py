"""Journeys in WebKitGTK (Safari's engine, tests/web/webkit.py): read a message from the
Inbox and go back; delete, archive or move from the Inbox and land on a working Inbox; a
committee PDF shows in the viewer, not a blank page; write with a suggested address; the
two-pane layout of a landscape iPad."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from selenium.webdriver.support.ui import Select

from tests.conftest import Gateway
from tests.web.mailhelp import PDF, deliver, find_uid, message, unique
from tests.web.webkit import WebKitSession, sign_in

BOX = "const r = document.querySelector(arguments[0]).getBoundingClientRect();" \
      " return [r.left, r.top, r.width, r.height];"

pytestmark = pytest.mark.browser


def _act_on_one_in_webkit(gateway: Gateway, webkit: WebKitSession, subject: str,
                          action: str, target: str = "") -> None:
    """Deliver a message, tick it in the Inbox, press the action's button (choosing the Move
    list's folder first when given) and wait for the page the post leads to."""
    uid = deliver(gateway, "member", message(subject))
    d = webkit.driver
    sign_in(webkit, gateway.url)
    webkit.get(gateway.url + "/mail?f=INBOX")
    d.find_element("id", f"sel-{uid}").click()
    if target:
        # By its label, as a member picks it: the option's value is the server's folder name,
        # whose separator differs between the two mail modes.
        choice = Select(d.find_element("id", "move-target"))
        labels = [(o.get_attribute("textContent") or "").strip() for o in choice.options]
        choice.select_by_index(labels.index(target))
    # Mark this document so the wait below sees the page the post leads to, not the
    # Inbox it started from (both are /mail with #folder-count; without the mark the wait
    # could pass before the post was sent, and the old list still held the subject).
    d.execute_script("window.__beforeAction = true")
    d.find_element("css selector", f"#list-form button[value={action}]").click()
    webkit.wait(lambda d: not d.execute_script("return window.__beforeAction === true")
                and d.execute_script("return document.readyState") == "complete"
                and "/mail" in d.current_url and d.find_elements("id", "folder-count"))


def test_delete_from_the_inbox_lands_on_a_working_inbox_in_webkit(gateway: Gateway,
                                                                  webkit: WebKitSession) -> None:
    """Tick a message, Delete: the Inbox shows again without it (not "Error 502")."""
    subject = unique("WebKit delete")
    _act_on_one_in_webkit(gateway, webkit, subject, "delete")
    d = webkit.driver
    assert subject not in d.find_element("id", "rows").get_attribute("textContent")
    webkit.get(gateway.url + "/mail?f=INBOX")
    assert d.find_elements("id", "folder-count")
    assert find_uid(gateway, "member", subject, "Deleted Items") is not None


@pytest.mark.parametrize(("action", "target", "lands_in"), [
    ("archive", "", "Archive"),
    ("move", "Planning", "Committees/Planning"),
])
def test_archive_or_move_from_the_inbox_lands_on_a_working_inbox_in_webkit(
        gateway: Gateway, webkit: WebKitSession, action: str, target: str,
        lands_in: str) -> None:
    """Tick a message, Archive it or Move it to a chosen folder: the page says where it went,
    the Inbox works afterwards (issue 13 item 1 was an "Error 502" there) and the message is
    in that folder on the server, no longer in the Inbox."""
    subject = unique(f"WebKit {action}")
    _act_on_one_in_webkit(gateway, webkit, subject, action, target)
    d = webkit.driver
    assert subject not in d.find_element("id", "rows").get_attribute("textContent")
    notice = d.find_element("id", "notice").get_attribute("textContent") or ""
    assert "(1 message)" in notice and "Undo" in notice
    webkit.get(gateway.url + "/mail?f=INBOX")
    assert d.find_elements("id", "folder-count")
    assert find_uid(gateway, "member", subject, lands_in) is not None
    assert find_uid(gateway, "member", subject) is None


def test_committee_pdf_shows_in_the_webkit_viewer(gateway: Gateway, webkit: WebKitSession) -> None:
    """The PDF attachment opens in WebKit's viewer with its page drawn (under
    `CSP: sandbox` WebKit showed an empty viewer)."""
    subject = unique("WebKit PDF")
    uid = deliver(gateway, "member", message(subject, attachments=[
        ("Agenda.pdf", "application/pdf", PDF)]))
    d = webkit.driver
    sign_in(webkit, gateway.url)
    webkit.get(gateway.url + "/mail/read?" + urlencode({"f": "INBOX", "uid": uid}))
    link = webkit.wait(lambda d: d.find_elements("link text", "Agenda.pdf"))[0]
    webkit.get(link.get_attribute("href"))
    viewer = webkit.wait_css("iframe")[0]
    assert viewer.get_attribute("src").startswith("webkit-pdfjs-viewer:")
    d.switch_to.frame(viewer)
    pages = webkit.wait(lambda d: d.execute_script(
        "return window.PDFViewerApplication && PDFViewerApplication.pagesCount &&"
        " document.querySelectorAll('.page canvas').length"), timeout=30)
    assert pages == 1
    d.switch_to.default_content()


def test_compose_with_a_suggested_address_and_send_in_webkit(gateway: Gateway,
                                                             webkit: WebKitSession) -> None:
    """Write a message in WebKit: typing "hel" in To offers Helen Clarke (Graph people
    search), a tap picks her, Send says so and the message reaches her."""
    subject = unique("WebKit compose")
    before = len(gateway.stack.mail.outbound)
    d = webkit.driver
    sign_in(webkit, gateway.url)
    webkit.get(gateway.url + "/mail/compose")
    d.find_element("id", "to").send_keys("hel")
    option = webkit.wait(lambda d: [o for o in d.find_elements("css selector", "#to-suggestions li")
                                    if "Helen Clarke" in o.text])[0]
    assert d.find_element("id", "to").get_attribute("aria-expanded") == "true"
    option.click()
    assert d.find_element("id", "to").get_attribute("value") == \
        "Helen Clarke <helen.clarke@partner.example>, "
    d.find_element("id", "subject").send_keys(subject)
    d.find_element("id", "body").send_keys("Written in Safari's engine.")
    d.find_element("css selector", "button[value=send]").click()
    notice = webkit.wait_css("#notice")[0]
    assert "Message sent" in notice.text
    sent = [m for m in gateway.stack.mail.outbound[before:] if subject.encode() in m.data]
    assert len(sent) == 1 and sent[0].rcpt_tos == ("helen.clarke@partner.example",)


def test_read_a_message_and_go_back_in_webkit(gateway: Gateway, webkit: WebKitSession) -> None:
    """iPad portrait in WebKit: a tap on a row opens the message (subject, sender, its
    text), the list is not beside it in portrait (nor sent), and Back returns to the Inbox."""
    subject = unique("WebKit read")
    deliver(gateway, "member", message(subject, text="The minutes are attached below."))
    d = webkit.driver
    sign_in(webkit, gateway.url)
    webkit.get(gateway.url + "/mail?f=INBOX")
    d.find_element("xpath", f"//*[@id='rows']//a[contains(., '{subject}')]").click()
    webkit.wait(lambda d: d.find_elements("id", "subject"))
    assert d.find_element("id", "subject").text == subject
    assert "clerk@council.example" in d.find_element("css selector", ".headers").text
    assert "The minutes are attached below." in d.find_element("css selector",
                                                              ".body-text").text
    # The Inbox's script told the gateway this window shows one pane (the panes cookie),
    # so the folder's list was not even sent.
    assert d.find_elements("id", "list-pane") == []
    webkit.install_console_capture()
    d.find_element("link text", "← Back to the folder").click()
    webkit.wait(lambda d: d.find_elements("id", "folder-count"))
    # textContent: WebKitGTK's driver leaves text in overflow:hidden boxes out of .text.
    assert subject in d.find_element("id", "rows").get_attribute("textContent")


def test_two_pane_layout_in_webkit_landscape(gateway: Gateway,
                                             webkit_factory: Callable[..., WebKitSession]) -> None:
    """Landscape iPad (1180x820) in WebKit: the folder's list sits left of the open message,
    side by side, with the open message marked."""
    subject = unique("WebKit two-pane")
    uid = deliver(gateway, "member", message(subject))
    wk = webkit_factory(width=1180, height=820, ua="ipad")
    sign_in(wk, gateway.url)
    wk.get(gateway.url + "/mail/read?" + urlencode({"f": "INBOX", "uid": uid}))
    wk.wait_css("#subject")
    d = wk.driver
    pane = d.execute_script(BOX, "#list-pane")
    msg = d.execute_script(BOX, "article.message")
    assert pane[2] >= 300 and msg[2] >= 600 and pane[0] + pane[2] <= msg[0] + 1 \
        and abs(pane[1] - msg[1]) < 2, (pane, msg)
    current = d.find_element("css selector", "#list-pane a[aria-current=true]")
    assert subject in current.get_attribute("textContent")
