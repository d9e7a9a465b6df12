"""More end-to-end journeys in iPad Chromium: the calendar (week, event, answer, create,
move) and the failover switch (an admin flips, a member's next page follows), with axe-core
on every page visited, plus the mail pages with JavaScript switched off."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from gateway.devstack.stack import DevStack
from tests.conftest import Gateway, LoopThread, start_gateway
from tests.web.browser import axe_violations, ipad_browser, ipad_page, sign_in_in_browser
from tests.web.mailhelp import find_uid, unique

pytestmark = pytest.mark.browser
LOCAL = {"127.0.0.1", "localhost"}


def test_calendar_week_event_answer_create_move(gateway: Gateway) -> None:
    """A member sees the week, opens an event, accepts an invitation, adds an event and
    moves it; every calendar page passes axe-core."""
    problems: dict[str, list[str]] = {}
    with ipad_page() as (page, rec):
        sign_in_in_browser(page, gateway.url)
        page.get_by_role("link", name="Calendar").click()
        page.wait_for_url(re.compile(r"/calendar$"))
        problems["agenda"] = axe_violations(page)
        page.get_by_role("link", name="Week", exact=True).click()
        page.wait_for_url(re.compile(r"/calendar/week"))
        problems["week"] = axe_violations(page)
        page.get_by_role("link", name="Agenda", exact=True).click()
        invite = page.locator("a", has_text=re.compile("Scrutiny Committee|Ward walkabout"))
        invite.first.click()
        page.wait_for_url(re.compile(r"/calendar/event/"))
        problems["event"] = axe_violations(page)
        page.get_by_role("button", name="Accept").click()
        page.wait_for_load_state("load")
        assert "accept" in page.content().lower()

        page.goto(gateway.url + "/calendar/new")
        problems["new"] = axe_violations(page)
        title = unique("Ward meeting")
        day = (date.today() + timedelta(days=2)).isoformat()
        page.fill("#subject", title)
        page.fill("#start_date", day)
        page.fill("#start_time", "10:00")
        page.fill("#end_date", day)
        page.fill("#end_time", "11:00")
        page.get_by_role("button", name="Add to calendar").click()
        page.wait_for_url(re.compile(r"/calendar/event/"))
        assert title in page.content()
        page.get_by_role("link", name="Move").click()
        problems["move"] = axe_violations(page)
        page.fill("#time", "14:30")
        page.get_by_role("button", name="Move").click()
        page.wait_for_url(re.compile(r"/calendar/event/"))
        assert "14:30" in page.content()
        assert rec.outside(LOCAL) == []
    assert {k: v for k, v in problems.items() if v} == {}


def test_admin_flips_to_active_and_member_gets_mailbox(stack: DevStack, loop_thread: LoopThread,
                                                       tmp_path: Path) -> None:
    """In standby a member sees the standby page; an admin flips to active from the admin
    page (with confirmation) and the member's next page is their mailbox."""
    gw = start_gateway(stack, loop_thread, tmp_path, failover__initial_mode="standby")
    problems: dict[str, list[str]] = {}
    try:
        with ipad_browser() as browser:
            member, _ = browser.page()
            member.goto(gw.url + "/")
            member.get_by_role("link", name=re.compile("Sign in")).click()
            member.get_by_role("button", name=re.compile("Cllr Alex Morgan")).click()
            member.wait_for_load_state("load")
            assert member.locator("#standby").count() == 1
            admin, _ = browser.page()
            sign_in_in_browser(admin, gw.url, name="Priya Shah")
            admin.goto(gw.url + "/admin")
            problems["admin"] = axe_violations(admin)
            admin.select_option("#mode-select", "active")
            admin.fill("#reason-input", "Mobile platform down: members onto the gateway")
            admin.click("#review-flip")
            admin.wait_for_selector("#confirm-flip")
            problems["confirm"] = axe_violations(admin)
            admin.click("#confirm-flip")
            admin.wait_for_load_state("load")
            assert "Mobile platform down" in admin.content()
            member.reload()
            member.wait_for_selector("#folder-count")
            anon, _ = browser.page()
            anon.goto(gw.url + "/status")
            assert "active" in anon.content().lower()
            problems["status"] = axe_violations(anon)
    finally:
        gw.stop()
    assert {k: v for k, v in problems.items() if v} == {}


def test_mail_works_with_javascript_off(gateway: Gateway) -> None:
    """With JavaScript off: sign in (the stand-in's Continue button), read, and send."""
    subject = unique("No script")
    with ipad_page(javascript=False) as (page, _):
        page.goto(gateway.url + "/")
        page.get_by_role("link", name=re.compile("Sign in")).click()
        page.get_by_role("button", name=re.compile("Cllr Alex Morgan")).click()
        page.get_by_role("button", name=re.compile("Continue")).click()
        page.wait_for_selector("#folder-count")
        page.get_by_role("link", name="New message").click()
        page.fill("#to", "jo.evans@council.example")
        page.fill("#subject", subject)
        page.fill("#body", "Sent without JavaScript.")
        page.get_by_role("button", name="Send").click()
        page.wait_for_selector("#folder-count")
    assert find_uid(gateway, "member2", subject) is not None
