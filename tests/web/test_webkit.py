"""The same pages in WebKitGTK, the engine family of iPad Safari (tests/web/webkit.py).
Over HTTPS, because WebKit drops Secure (and so __Host-) cookies on plain http."""

from __future__ import annotations

import pytest

from tests.conftest import Gateway
from tests.web.mailhelp import deliver, message, unique
from tests.web.webkit import WebKitSession, sign_in

pytestmark = pytest.mark.browser


def test_sign_in_read_and_compose_in_webkit(gateway: Gateway, webkit: WebKitSession) -> None:
    """In WebKit: sign in through form_post (cookies survive), list, open a message in its
    sandboxed frame, open the compose form; no CSP violations on the way."""
    subject = unique("WebKit check")
    uid = deliver(gateway, "member", message(subject, html="<p>Hello <b>WebKit</b></p>"))
    d = webkit.driver
    sign_in(webkit, gateway.url)
    assert "Cllr Alex Morgan" in d.page_source
    webkit.get(f"{gateway.url}/mail/read?f=INBOX&uid={uid}")
    webkit.install_console_capture()
    frame = webkit.wait_css("iframe.body-frame")[0]
    assert "allow-scripts" not in (frame.get_attribute("sandbox") or "")
    d.switch_to.frame(frame)
    assert webkit.wait(lambda d: d.find_elements("tag name", "b"))[0].text == "WebKit"
    d.switch_to.default_content()
    assert webkit.console_errors() == []
    webkit.get(gateway.url + "/mail/compose")
    webkit.install_console_capture()
    assert d.find_elements("id", "compose-form")
    assert webkit.console_errors() == []
