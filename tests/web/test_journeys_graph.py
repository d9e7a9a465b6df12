"""Members' journeys through the pages backed by Microsoft Graph beyond the calendar, in
headless Chromium at iPad portrait, iPad landscape and phone sizes: address suggestions while
writing (issue 13 item 11), from people search or, without People.Read, from recent mail; and
automatic replies (item 12). axe-core runs on each page."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page

from gateway.devstack.stack import DevStack
from gateway.devstack.users import user
from tests.conftest import Gateway
from tests.web.browser import (
    SIZES,
    IpadBrowser,
    Recorder,
    axe_violations,
    sign_in_in_browser,
    signed_in_page,
)
from tests.web.mailhelp import message, unique
from tests.web.test_journeys import LOCAL

pytestmark = pytest.mark.browser


def _send_and_check(page: Page, rec: Recorder, subject: str) -> None:
    """Give the message a subject and a line, press Send: the Inbox says it was sent, and
    nothing was loaded from outside the gateway on the way."""
    page.fill("#subject", subject)
    page.fill("#body", "Addressed from a suggestion.")
    page.get_by_role("button", name="Send").click()
    page.wait_for_selector("#notice")
    assert page.inner_text("#notice p") == "Message sent."
    assert rec.outside(LOCAL) == []


def _sent_to(gateway: Gateway, before: int, subject: str) -> tuple[str, ...]:
    """The recipients of the one message with this subject that left since ``before``."""
    sent = [m for m in gateway.stack.mail.outbound[before:] if subject.encode() in m.data]
    assert len(sent) == 1, len(sent)
    return tuple(sent[0].rcpt_tos)


@pytest.mark.parametrize("size", list(SIZES))
def test_typing_a_name_suggests_the_address_and_the_message_goes_there(chromium: IpadBrowser,
                                                                       gateway: Gateway,
                                                                       size: str) -> None:
    """Typing "hel" in To offers Helen Clarke from Graph people search; picking her (keys
    on iPad, a tap on the phone) fills the address and Send reaches her."""
    subject = unique(f"Suggested {size}")
    before = len(gateway.stack.mail.outbound)
    page, rec = signed_in_page(chromium, gateway.url, size)
    try:
        page.goto(gateway.url + "/mail/compose")
        page.locator("#to").press_sequentially("hel", delay=30)
        option = page.get_by_role("option", name=re.compile("Helen Clarke"))
        option.wait_for()
        assert page.get_attribute("#to", "aria-expanded") == "true"
        assert axe_violations(page) == []
        if size == "phone":
            option.click()
        else:
            page.locator("#to").press("ArrowDown")
            assert option.get_attribute("aria-selected") == "true"
            page.locator("#to").press("Enter")
        assert page.input_value("#to") == "Helen Clarke <helen.clarke@partner.example>, "
        assert page.get_by_role("listbox").is_hidden()
        _send_and_check(page, rec, subject)
    finally:
        page.context.close()
    assert _sent_to(gateway, before, subject) == ("helen.clarke@partner.example",)


@pytest.fixture(scope="module")
def pat_green(stack: DevStack) -> tuple[str, str]:
    """Someone Cllr Jo Evans wrote to before, once for the module: the gateway keeps a
    member's recent correspondents for a minute (per process) and forgets them only when it
    sends for her, so a message filed in Sent Items by other means later would not show yet."""
    name = unique("Pat Green")
    address = f"pat.green.{name.split()[-1]}@library.example"
    stack.mail.deliver(user("member2").email,
                       message(unique("Library hours"), sender="jo.evans@council.example",
                               to=f'"{name}" <{address}>'), folder="Sent Items")
    return name, address


@pytest.mark.parametrize("size", list(SIZES))
def test_suggestions_come_from_recent_mail_when_people_read_is_refused(
        chromium: IpadBrowser, gateway: Gateway, pat_green: tuple[str, str], size: str) -> None:
    """Cllr Jo Evans's tenant has not consented People.Read (the stand-in refuses her people
    search as Graph does): typing "pat" still offers Pat Green, whom she wrote to before,
    from her own Sent Items; picking him fills the address and Send reaches him."""
    name, address = pat_green
    subject = unique(f"Recent {size}")
    before = len(gateway.stack.mail.outbound)
    page, rec = chromium.page(javascript=True, size=size, viewport=True)
    try:
        sign_in_in_browser(page, gateway.url, "Cllr Jo Evans")
        page.goto(gateway.url + "/mail/compose")
        page.locator("#to").press_sequentially("pat", delay=30)
        option = page.get_by_role("option", name=re.compile(re.escape(name)))
        option.wait_for()
        assert axe_violations(page) == []
        option.click()
        assert page.input_value("#to") == f"{name} <{address}>, "
        _send_and_check(page, rec, subject)
    finally:
        page.context.close()
    assert _sent_to(gateway, before, subject) == (address,)


def test_to_is_a_plain_field_without_javascript(chromium: IpadBrowser, gateway: Gateway) -> None:
    page, _ = signed_in_page(chromium, gateway.url, "phone", javascript=False)
    try:
        page.goto(gateway.url + "/mail/compose")
        assert page.get_attribute("#to", "role") is None
        assert page.locator(".suggestions").count() == 0
        page.fill("#to", "helen.clarke@partner.example")
        assert page.input_value("#to") == "helen.clarke@partner.example"
    finally:
        page.context.close()


@pytest.mark.parametrize("size", list(SIZES))
def test_automatic_replies_on_between_dates_then_off(chromium: IpadBrowser, gateway: Gateway,
                                                     size: str) -> None:
    """From the mail pages to Automatic replies: on between two dates across the October
    clock change, saved in Exchange (the Graph stand-in), shown again, then off."""
    gateway.stack.graph.reset()
    page, rec = signed_in_page(chromium, gateway.url, size)
    try:
        page.goto(gateway.url + "/mail")
        link = page.locator("nav.folders").get_by_role("link", name="Automatic replies")
        if not link.is_visible():       # a compact layout keeps the folders behind a button
            page.locator("nav.folders summary").click()
        link.click()
        page.wait_for_selector("h1:has-text('Automatic replies')")
        assert axe_violations(page) == []
        page.get_by_label("Only between these dates").check()
        page.fill("#start_date", "2027-10-30")
        page.fill("#start_time", "09:00")
        page.fill("#end_date", "2027-11-01")
        page.fill("#end_time", "09:00")
        page.fill("#internal", "At the conference; back on Monday.")
        page.get_by_label("Who outside the council gets a reply").select_option("contactsOnly")
        page.fill("#external", "I am away until 1 November.")
        page.get_by_role("button", name="Save").click()
        page.wait_for_selector("text=Your automatic replies were saved.")
        stored = gateway.stack.graph.mailbox.replies(user("member").oid)
        assert stored["status"] == "scheduled"
        assert stored["start"] == datetime(2027, 10, 30, 8, tzinfo=UTC)
        assert stored["end"] == datetime(2027, 11, 1, 9, tzinfo=UTC)
        assert page.input_value("#internal") == "At the conference; back on Monday."
        assert page.input_value("#end_time") == "09:00"
        assert axe_violations(page) == []

        page.fill("#end_date", "2027-10-29")
        page.get_by_role("button", name="Save").click()
        page.wait_for_selector("text=The end must be after the start.")
        assert page.input_value("#external") == "I am away until 1 November."

        page.get_by_label("Off", exact=True).check()
        page.get_by_role("button", name="Save").click()
        page.wait_for_selector("text=Your automatic replies were saved.")
        assert gateway.stack.graph.mailbox.replies(user("member").oid)["status"] == "disabled"
        assert rec.outside(LOCAL) == []
    finally:
        page.context.close()


def test_automatic_replies_without_javascript_on_a_phone(chromium: IpadBrowser,
                                                         gateway: Gateway) -> None:
    """Phone, JavaScript off: through the Folders button to Automatic replies, turn them on
    with a message, see the saved notice and the choice kept, then turn them off again."""
    gateway.stack.graph.reset()
    page, rec = signed_in_page(chromium, gateway.url, "phone", javascript=False)
    try:
        page.goto(gateway.url + "/mail")
        folders = page.locator("nav.folders")
        link = folders.get_by_role("link", name="Automatic replies")
        assert link.is_hidden()          # behind the Folders button on a phone
        folders.locator("summary").click()
        link.click()
        page.wait_for_selector("h1:has-text('Automatic replies')")
        page.get_by_label("On, until I turn them off").check()
        page.fill("#internal", "Away this week; Jo Evans has my casework.")
        page.get_by_role("button", name="Save").click()
        page.wait_for_selector("text=Your automatic replies were saved.")
        assert page.get_attribute(".notice", "role") == "status"
        stored = gateway.stack.graph.mailbox.replies(user("member").oid)
        assert stored["status"] == "alwaysEnabled"
        assert page.is_checked("#status-alwaysEnabled")
        assert page.input_value("#internal") == "Away this week; Jo Evans has my casework."

        page.get_by_label("Off", exact=True).check()
        page.get_by_role("button", name="Save").click()
        page.wait_for_selector("text=Your automatic replies were saved.")
        assert gateway.stack.graph.mailbox.replies(user("member").oid)["status"] == "disabled"
        assert page.is_checked("#status-disabled")
        assert rec.outside(LOCAL) == []
    finally:
        page.context.close()
