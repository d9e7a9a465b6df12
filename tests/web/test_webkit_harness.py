"""The WebKit harness itself (tests/web/webkit.py): the iPad profile it promises, console and
CSP capture, a failed load that raises, and nothing left running after stop()."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import Gateway
from tests.web.webkit import WebKitSession

pytestmark = pytest.mark.browser

PAGE = b"""<!doctype html><html><head><title>harness</title></head><body>
<p id="ran">no</p>
<script nonce="n0nce">document.getElementById('ran').textContent = 'yes';</script>
</body></html>"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Security-Policy", "script-src 'nonce-n0nce'")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _group(pgid: int) -> set[int]:
    """PIDs of the live (non-zombie) processes in process group ``pgid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_default_session_is_an_ipad_with_safaris_default_user_agent(webkit: WebKitSession,
                                                                    page_url: str) -> None:
    """1024x1366 CSS px at devicePixelRatio 2, light scheme, the Mac UA iPadOS Safari sends."""
    webkit.get(page_url)
    info = webkit.info()
    assert info["inner"] == [1024, 1366]
    assert info["dpr"] == 2
    assert info["dark"] is False
    assert "Macintosh" in info["userAgent"] and "Version/17.5 Safari" in info["userAgent"]
    assert webkit.driver.find_element("id", "ran").text == "yes"  # the nonce'd script ran


def test_console_capture_sees_errors_and_csp_violations(webkit: WebKitSession,
                                                        page_url: str) -> None:
    webkit.get(page_url)
    webkit.install_console_capture()
    assert webkit.console_errors() == []
    webkit.driver.execute_script("console.error('broken thing')")
    # An inline script without the nonce: CSP blocks it and reports the violation.
    webkit.driver.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.bad = 1';"
        " document.body.appendChild(s);")
    errors = webkit.wait(lambda d: len(webkit.console_errors()) >= 2 and webkit.console_errors())
    assert {"level": "error", "text": "broken thing"} in errors
    assert any(m["level"] == "csp" and "script-src" in m["text"] for m in errors)
    assert webkit.driver.execute_script("return window.bad") is None


def test_a_refused_connection_raises_instead_of_leaving_a_blank_page(webkit: WebKitSession) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on that port now.
    with pytest.raises(RuntimeError, match="navigation to"):
        webkit.get(f"http://127.0.0.1:{port}/")


def test_options_dark_mode_and_the_mobile_ipad_user_agent(
    webkit_factory: Callable[..., WebKitSession], page_url: str,
) -> None:
    s = webkit_factory(dark=True, ua="ipad", scale=1, width=800, height=600)
    s.get(page_url)
    info = s.info()
    assert info["dark"] is True
    assert "iPad; CPU OS 17_5" in info["userAgent"]
    assert info["inner"] == [800, 600] and info["dpr"] == 1


def test_stop_ends_everything_the_session_started(page_url: str) -> None:
    s = WebKitSession(own_display=True)
    s.start()
    s.get(page_url)
    browser_group = _group(s.pids["driver"])
    assert len(browser_group) >= 3  # the driver, MiniBrowser and its WebKit*Process children
    started = set(s.pids.values()) | browser_group
    assert {"xvfb", "dbus", "driver"} <= set(s.pids)
    s.stop()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in started if _alive(p)] == []
    assert not os.path.exists(s.log_dir)


def test_an_untrusted_certificate_raises_when_insecure_certs_are_refused(
    webkit_factory: Callable[..., WebKitSession], gateway: Gateway,
) -> None:
    s = webkit_factory(accept_insecure_certs=False, scale=1)
    with pytest.raises(RuntimeError, match="navigation to"):
        s.get(gateway.url + "/")
