"""The same pages in WebKitGTK, the engine family of iPad Safari (selenium driving Debian's
WebKitWebDriver under a private Xvfb, through the shared harness in ../shared/tools/webkit).
Over HTTPS, because WebKit drops Secure (and so __Host-) cookies on plain http."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.web.mailhelp import deliver, message, unique

HARNESS = Path(__file__).resolve().parents[3] / "shared" / "tools" / "webkit"
pytestmark = pytest.mark.browser


def _session():
    sys.path.insert(0, str(HARNESS))
    from webkit_session import WebKitSession  # type: ignore[import-not-found]
    return WebKitSession(ua="ipados-desktop")


def _wait(driver, condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition(driver)
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out on {driver.current_url}")


def test_sign_in_read_and_compose_in_webkit(gateway):
    """In WebKit: sign in through form_post (cookies survive), list, open a message in its
    sandboxed frame, open the compose form; no CSP violations on the way."""
    from selenium.webdriver.common.by import By

    subject = unique("WebKit check")
    uid = deliver(gateway, "member", message(subject, html="<p>Hello <b>WebKit</b></p>"))
    with _session() as s:
        d = s.driver
        s.get(gateway.url + "/")
        _wait(d, lambda d: d.find_elements(By.ID, "signin"))[0].click()
        button = _wait(d, lambda d: d.find_elements(
            By.XPATH, "//button[contains(., 'Cllr Alex Morgan')]"))
        button[0].click()
        _wait(d, lambda d: d.find_elements(By.ID, "folder-count"))
        assert "Cllr Alex Morgan" in d.page_source
        s.install_console_capture()
        s.get(f"{gateway.url}/mail/read?f=INBOX&uid={uid}")
        s.install_console_capture()
        frame = _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "iframe.body-frame"))[0]
        assert "allow-scripts" not in (frame.get_attribute("sandbox") or "")
        d.switch_to.frame(frame)
        assert _wait(d, lambda d: d.find_elements(By.TAG_NAME, "b"))[0].text == "WebKit"
        d.switch_to.default_content()
        s.get(gateway.url + "/mail/compose")
        s.install_console_capture()
        assert d.find_elements(By.ID, "compose-form")
        errors = [m for m in s.console_messages() if "Content Security Policy" in str(m)
                  or m.get("level") == "error"]
        assert errors == []
