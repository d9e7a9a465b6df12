"""The message list in headless Chromium at iPad portrait, iPad landscape and phone sizes
(issue 13 items 8, 10 and 13): preview lines, day headings and the flag mark; Flag or Unflag
as fits the ticked messages; new mail arriving over SMTP keeps the ticks and is announced
in a polite live region; search results come back on Back; plain text is not
triple-spaced and HTML mail is framed in dark mode. axe-core runs on the pages visited."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.devstack.tokens import OUTLOOK_AUDIENCE
from gateway.devstack.users import user
from gateway.mail import imap, imap_login, mailbox, smtp
from tests.conftest import Gateway
from tests.web.browser import SIZES, IpadBrowser, axe_violations, signed_in_page
from tests.web.mailhelp import deliver, direct, message, unique

pytestmark = pytest.mark.browser
LOCAL = {"127.0.0.1", "localhost"}


def _row(page: Any, subject: str) -> Any:
    return page.locator("#rows li.row", has_text=subject)


def _flag(gateway: Any, uid: int) -> None:
    async def fn(conn: imap.ImapConn) -> None:
        await mailbox.set_flags(conn, "INBOX", [uid], "\\Flagged", True)
    direct(gateway, "member", fn)


def _send_over_smtp(gateway: Any, who: str, to: str, data: bytes) -> None:
    """Mail from a colleague the way it really arrives: SMTP submission (XOAUTH2)."""
    u = user(who)
    token = gateway.stack.entra.issue_access_token(u, OUTLOOK_AUDIENCE, ["SMTP.Send"])
    target = smtp.SmtpTarget(gateway.stack.mail.host, gateway.stack.mail.smtp_port,
                             imap_login.ssl_context(str(gateway.stack.certs.ca_cert)), 15)
    gateway.loop.run(smtp.send(target, u.email, token, [to], data))


@pytest.mark.parametrize("size", list(SIZES))
def test_rows_show_preview_day_and_flag_and_fit_flag_buttons(chromium: IpadBrowser,
                                                             gateway: Gateway, size: str) -> None:
    plain = unique(f"Preview {size}")
    flagged = unique(f"Flagged {size}")
    deliver(gateway, "member", message(
        plain, text="Dear Alex, the planning agenda for Thursday is attached. " * 5))
    _flag(gateway, deliver(gateway, "member", message(flagged, text="Please read first.")))
    page, rec = signed_in_page(chromium, gateway.url, size)
    try:
        page.goto(gateway.url + "/mail?f=INBOX")
        row = _row(page, plain)
        preview = row.locator(".preview")
        assert preview.is_visible()
        assert preview.inner_text().startswith("Dear Alex, the planning agenda for Thursday")
        assert "bytes" not in row.inner_text() and " KB" not in row.inner_text()
        # One row's preview stays on its line: no sideways scrolling, even on the phone.
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth + 1")
        heading = page.locator("#rows h2.day").first
        assert heading.inner_text() == "Today" and heading.is_visible()
        assert page.get_by_role("list", name="Today").count() == 1

        mark = _row(page, flagged).locator(".flag")
        assert mark.is_visible() and mark.inner_text() == "⚑"
        link = _row(page, flagged).get_by_role("link")
        assert re.match(r"Flagged\. ", link.inner_text().strip()) is None  # hidden text...
        assert "Flagged." in link.text_content()                         # ...for readers
        assert "Flagged." not in _row(page, plain).get_by_role("link").text_content()

        bulk = page.locator("#list-form .bulk")
        flag_b = bulk.get_by_role("button", name="Flag", exact=True)
        unflag_b = bulk.get_by_role("button", name="Unflag", exact=True)
        # On the phone the buttons sit behind "Actions" (a <details>): open it to look.
        fold = page.locator("#list-form .bulk details.fold")
        if fold.locator("summary").is_visible() and not fold.evaluate("d => d.open"):
            fold.locator("summary").click()

        def shown() -> tuple[bool, bool]:
            return flag_b.is_visible(), unflag_b.is_visible()
        assert shown() == (True, True)                                   # nothing ticked
        _row(page, flagged).get_by_role("checkbox").check()
        assert shown() == (False, True)
        _row(page, plain).get_by_role("checkbox").check()
        assert shown() == (True, True)                                   # mixed
        _row(page, flagged).get_by_role("checkbox").uncheck()
        assert shown() == (True, False)
        assert axe_violations(page) == []
        if fold.evaluate("d => d.open") and fold.locator("summary").is_visible():
            fold.locator("summary").click()                           # close it again

        _row(page, flagged).get_by_role("link").click()
        page.wait_for_url(re.compile(r"/mail/read"))
        actions = page.locator("article.message form.inline")
        assert actions.locator("button[value=unflag]").count() == 1   # maybe behind a fold
        assert actions.locator("button[value=flag]").count() == 0
        assert rec.outside(LOCAL) == []
    finally:
        page.context.close()


@pytest.mark.parametrize("size", list(SIZES))
def test_mail_received_yesterday_sits_under_yesterday(chromium: IpadBrowser, gateway: Gateway,
                                                      size: str) -> None:
    """A message the server received yesterday (its INTERNALDATE, at noon in the council's
    zone) is listed under a "Yesterday" heading, after the "Today" ones, and the list that
    holds it is named by that heading for a screen reader."""
    zone = ZoneInfo(gateway.settings.general.timezone)
    noon = datetime.combine(datetime.now(zone).date() - timedelta(days=1), time(12), zone)
    subject = unique(f"Yesterday {size}")
    gateway.stack.mail.deliver(user("member").email, message(subject),
                               internaldate=noon.astimezone(UTC).replace(tzinfo=None))
    today = unique(f"Today {size}")
    deliver(gateway, "member", message(today))
    page, _ = signed_in_page(chromium, gateway.url, size)
    try:
        page.goto(gateway.url + "/mail?f=INBOX")
        headings = page.locator("#rows h2.day").all_inner_texts()
        assert headings[:2] == ["Today", "Yesterday"]
        held = page.get_by_role("list", name="Yesterday").filter(has_text=subject)
        assert held.count() == 1 and held.is_visible()
        assert page.get_by_role("list", name="Today").filter(has_text=subject).count() == 0
        assert page.get_by_role("list", name="Today").filter(has_text=today).count() == 1
    finally:
        page.context.close()


def test_rows_work_without_javascript(chromium: IpadBrowser, gateway: Gateway) -> None:
    subject = unique("No script row")
    deliver(gateway, "member", message(subject, text="Readable without scripts."))
    page, _ = chromium.page(javascript=False)
    try:
        page.goto(gateway.url + "/")
        page.get_by_role("link", name=re.compile("Sign in")).click()
        page.get_by_role("button", name=re.compile("Cllr Alex Morgan")).click()
        page.get_by_role("button", name=re.compile("Continue")).click()
        page.wait_for_selector("#folder-count")
        page.goto(gateway.url + "/mail?f=INBOX")
        assert "Readable without scripts." in _row(page, subject).inner_text()
        bulk = page.locator("#list-form .bulk")
        assert bulk.get_by_role("button", name="Flag", exact=True).count() == 1
        assert bulk.get_by_role("button", name="Unflag", exact=True).count() == 1
    finally:
        page.context.close()


@pytest.mark.parametrize("size", list(SIZES))
def test_new_mail_keeps_ticks_and_is_announced(chromium: IpadBrowser, gateway: Gateway,
                                               size: str) -> None:
    first, second = unique(f"Tick A {size}"), unique(f"Tick B {size}")
    deliver(gateway, "member", message(first))
    deliver(gateway, "member", message(second))
    page, rec = signed_in_page(chromium, gateway.url, size)
    try:
        page.goto(gateway.url + "/mail?f=INBOX")
        region = page.locator("#new-mail")
        assert region.get_attribute("aria-live") == "polite"
        assert region.inner_text() == ""
        _row(page, first).get_by_role("checkbox").check()
        _row(page, second).get_by_role("checkbox").check()
        page.wait_for_timeout(3500)   # the script listens once the page has settled
        arrived = unique(f"Arrived {size}")
        _send_over_smtp(gateway, "member2", user("member").email,
                        message(arrived, sender=user("member2").email,
                                to=user("member").email, text="Fresh news."))
        page.wait_for_function(
            "s => document.getElementById('new-mail').textContent.includes(s)", arg=arrived,
            timeout=30000)
        assert region.inner_text().startswith("New message from ")
        assert region.is_visible()
        assert _row(page, arrived).count() == 1
        assert _row(page, first).get_by_role("checkbox").is_checked()
        assert _row(page, second).get_by_role("checkbox").is_checked()
        assert not _row(page, arrived).get_by_role("checkbox").is_checked()
        assert axe_violations(page) == []
        assert rec.outside(LOCAL) == []
    finally:
        page.context.close()


def test_mail_that_comes_before_the_stream_starts_is_announced(chromium: IpadBrowser,
                                                              gateway: Gateway) -> None:
    """The page listens three seconds after it settles; mail that comes in those seconds
    is announced all the same (the stream compares the folder with the count the page shows,
    not with the folder as it is when the stream begins)."""
    deliver(gateway, "member", message(unique("Early A")))
    page, rec = signed_in_page(chromium, gateway.url, "ipad-portrait")
    try:
        page.goto(gateway.url + "/mail?f=INBOX")
        assert page.locator("#new-mail").inner_text() == ""
        early = unique("Early B")
        deliver(gateway, "member", message(early))   # before the stream is open
        page.wait_for_function(
            "s => document.getElementById('new-mail').textContent.includes(s)", arg=early,
            timeout=30000)
        assert _row(page, early).count() == 1
        assert rec.outside(LOCAL) == []
    finally:
        page.context.close()


@pytest.mark.parametrize("size", list(SIZES))
def test_search_results_come_back_on_back(
    chromium: IpadBrowser, gateway: Gateway, size: str,
) -> None:
    word = unique("Allotments").split()[1]
    subjects = [f"Allotment {word} {n}" for n in range(3)]
    for s in subjects:
        deliver(gateway, "member", message(s, text=f"About plot {s}."))
    page, rec = signed_in_page(chromium, gateway.url, size)
    try:
        page.goto(gateway.url + "/mail/search?f=INBOX")
        page.fill("#s-q", word)
        page.locator("form.search-form").get_by_role("button", name="Search").click()
        page.wait_for_url(re.compile(r"/mail/search\?.*q=" + word))
        results_url = page.url
        assert page.locator("#results-title").inner_text() == "3 results"
        assert axe_violations(page) == []
        page.locator("#rows").get_by_role("link", name=re.compile(subjects[1])).click()
        page.wait_for_url(re.compile(r"/mail/read"))
        page.evaluate("history.back()")
        page.wait_for_url(results_url)
        assert page.locator("#results-title").inner_text() == "3 results"
        assert page.input_value("#s-q") == word
        for s in subjects:
            assert _row(page, s).count() == 1
        # The page's own Back link says where it goes and goes there.
        page.locator("#rows").get_by_role("link", name=re.compile(subjects[0])).click()
        page.wait_for_url(re.compile(r"/mail/read"))
        page.get_by_role("link", name="← Back to the results").click()
        page.wait_for_url(results_url)
        assert _row(page, subjects[2]).count() == 1
        assert rec.outside(LOCAL) == []
    finally:
        page.context.close()


@pytest.mark.parametrize("size", list(SIZES))
def test_plain_text_is_single_spaced(chromium: IpadBrowser, gateway: Gateway, size: str) -> None:
    subject = unique(f"Lines {size}")
    lines = [f"Line {n} of the clerk's note." for n in range(12)]
    uid = deliver(gateway, "member", message(subject, text="\n".join(lines)))
    page, _ = signed_in_page(chromium, gateway.url, size)
    try:
        page.goto(f"{gateway.url}/mail/read?f=INBOX&uid={uid}")
        box = page.locator(".body-text")
        measured = box.evaluate("""el => {
            const r = document.createRange(); r.selectNodeContents(el);
            const tops = new Set([...r.getClientRects()].map(x => Math.round(x.top)));
            const lh = parseFloat(getComputedStyle(el).lineHeight);
            return {boxes: tops.size, height: el.getBoundingClientRect().height, lh};
        }""")
        # 12 short lines: 12 line boxes, about 12 line heights (doubled would be ~24).
        assert measured["boxes"] == len(lines), measured
        assert measured["height"] < measured["lh"] * (len(lines) + 1.5), measured
        assert axe_violations(page) == []
    finally:
        page.context.close()


@pytest.mark.parametrize("size", list(SIZES))
def test_html_mail_is_framed_in_dark_mode(chromium: IpadBrowser, gateway: Gateway,
                                          size: str) -> None:
    subject = unique(f"Dark frame {size}")
    uid = deliver(gateway, "member", message(
        subject, html="<p style='background:#fff;color:#000'>A white newsletter.</p>"))
    page, _ = signed_in_page(chromium, gateway.url, size)
    try:
        page.emulate_media(color_scheme="dark")
        page.goto(f"{gateway.url}/mail/read?f=INBOX&uid={uid}")
        frame = page.locator("iframe.body-frame")
        style = frame.evaluate("""el => { const s = getComputedStyle(el);
            return {shadow: s.boxShadow, border: s.borderTopColor, filter: s.filter,
                    page: getComputedStyle(document.body).backgroundColor}; }""")
        assert style["page"] == "rgb(18, 18, 18)"                 # the dark page
        assert "10px" in style["shadow"] and style["shadow"] != "none"   # a mat around it
        assert style["border"] == "rgb(85, 85, 85)"               # a soft border
        assert "brightness(0.85)" in style["filter"]               # dimmed, colours kept
        assert axe_violations(page) == []
        page.emulate_media(color_scheme="light")
        light = frame.evaluate("el => getComputedStyle(el).boxShadow")
        assert light == "none"
    finally:
        page.context.close()
