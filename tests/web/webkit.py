"""WebKitGTK, the engine family of iPad Safari, for page tests: the project's own harness.

What it owns: starting and stopping one browser session — a private Xvfb display, a private
D-Bus session bus, Debian's ``WebKitWebDriver`` (MiniBrowser) on a free loopback port — and
driving it with selenium at an iPad's size (1024x1366 CSS pixels, devicePixelRatio 2, an
iPad Safari user agent). ``scripts/install-system-deps.sh test`` installs what it needs.

Fixtures (``tests/web/conftest.py`` provides them to every test under ``tests/web``):

    def test_x(gateway, webkit):            # a fresh session per test, own cookies
        webkit.get(gateway.url + "/")       # raises if the load silently failed
        sign_in(webkit, gateway.url)        # through the Entra stand-in's picker
        webkit.wait_css("#folder-count")    # waits (20 s) and returns the elements
        webkit.install_console_capture()    # console.*, errors, CSP violations from now on
        assert webkit.console_errors() == []
        webkit.driver                       # the selenium WebDriver, for everything else

    def test_y(webkit_factory):             # other options; all stopped after the test
        dark = webkit_factory(dark=True, ua="ipad")

Outside pytest: ``with WebKitSession() as s: ...``. Options: ``ua`` ("ipados-desktop" —
what iPadOS 13+ Safari sends by default, a Mac UA —, "ipad", "webkitgtk" or a literal
string), ``width``/``height`` (viewport, CSS px), ``scale`` (devicePixelRatio),
``dark`` (prefers-color-scheme), ``accept_insecure_certs`` (the dev CA is not trusted by
MiniBrowser; the tests serve HTTPS because WebKit drops ``Secure`` cookies on plain http).

Why it is built this way (each seen with WebKitGTK 2.50 on Debian 12):
- WebKitGTK has no headless mode: without a display the new-session request hangs. So a
  private ``Xvfb -displayfd`` (a free display number, no TCP) unless ``$DISPLAY`` answers.
- Without a session bus GTK autolaunches ``dbus-daemon`` and at-spi daemons that outlive
  the browser: a private ``dbus-daemon --session`` is started and ended by its PID.
- ``--automation`` must be in the browser arguments once any are given (the driver does not
  add it); without it the new session hangs.
- MiniBrowser's window has a header bar: the window is grown until innerWidth/innerHeight
  are exactly the asked viewport.
- The driver answers a refused connection or an untrusted certificate with success (and
  ``current_url`` may even name the URL asked for) while the document is an error page at
  about:blank: ``get()`` asks the document and raises.
- There is no log endpoint and no WebDriver BiDi: console capture is a script hook put into
  the current document, so messages logged during page load are not seen.
- Everything started is ended by PID or by the driver's own process group (MiniBrowser and
  the WebKit*Process children are in it), at ``stop()`` and at interpreter exit.

Not an iPad: cookies go through libsoup (not CFNetwork), there is no touch
(``maxTouchPoints`` 0), no iOS form controls or on-screen keyboard.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gateway.devstack.procs import free_port

# selenium logs every WebDriver request at DEBUG (page sources, scripts): keep it out of
# the run's log.
logging.getLogger("selenium").setLevel(logging.WARNING)

UA_PRESETS: dict[str, str | None] = {
    # What iPadOS 13+ Safari sends by default ("desktop-class browsing"): a Mac UA. Real
    # iPads are told apart by navigator.maxTouchPoints > 1, which WebKitGTK reports as 0.
    "ipados-desktop": ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
                       "(KHTML, like Gecko) Version/17.5 Safari/605.1.15"),
    # iPad Safari with "Request Desktop Website" off, and WKWebView-based iPad apps.
    "ipad": ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"),
    "webkitgtk": None,  # keep WebKitGTK's own UA
}
DRIVER = "WebKitWebDriver"
START_TIMEOUT = 20.0  # seconds; start-up takes about 0.6 s on an idle machine

_CONSOLE_HOOK = r"""
if (!window.__wkConsole) {
  window.__wkConsole = [];
  const push = (level, args) => {
    try {
      window.__wkConsole.push({level, text: Array.from(args).map(a => {
        if (a instanceof Error) return a.name + ': ' + a.message;
        if (typeof a === 'object') {
          try { return JSON.stringify(a); } catch (e) { return String(a); } }
        return String(a); }).join(' ')});
    } catch (e) {}
  };
  for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
    const orig = console[level].bind(console);
    console[level] = function () { push(level, arguments); return orig.apply(null, arguments); };
  }
  window.addEventListener('error', e => {
    if (e.target && e.target !== window && (e.target.src || e.target.href))
      push('resource-error',
           [String(e.target.tagName).toLowerCase() + ' ' + (e.target.src || e.target.href)]);
    else
      push('uncaught', [e.message + ' at ' + e.filename + ':' + e.lineno]);
  }, true);
  window.addEventListener('unhandledrejection', e => push('unhandledrejection', [e.reason]));
  document.addEventListener('securitypolicyviolation',
    e => push('csp', [e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline')]));
}
return true;
"""
ERROR_LEVELS = ("error", "uncaught", "unhandledrejection", "resource-error", "csp")


def _display_answers(display: str | None) -> bool:
    """True if a local X server answers on ``display`` (":N" form)."""
    if not display or not display.startswith(":"):
        return False
    num = display[1:].split(".")[0]
    for addr in ("\0/tmp/.X11-unix/X" + num, "/tmp/.X11-unix/X" + num):
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(addr)
            return True
    return False


class WebKitSession:
    """One WebKitGTK browser session; a context manager, or ``start()``/``stop()``."""

    def __init__(self, ua: str | None = "ipados-desktop", width: int = 1024, height: int = 1366,
                 scale: int = 2, dark: bool = False, accept_insecure_certs: bool = True,
                 own_display: bool = False, browser_args: tuple[str, ...] = ()) -> None:
        self.ua = UA_PRESETS[ua] if ua in UA_PRESETS else ua
        self.width, self.height, self.scale = width, height, int(scale)
        self.dark = dark
        self.accept_insecure_certs = accept_insecure_certs
        self.own_display = own_display
        self.browser_args = tuple(browser_args)
        self.driver: Any = None
        self.pids: dict[str, int] = {}  # what this session started, for stop() and for tests
        self.log_dir = Path(tempfile.mkdtemp(prefix="webkit-session-"))
        self._xvfb: subprocess.Popen[bytes] | None = None
        self._driver_proc: subprocess.Popen[bytes] | None = None
        self._logs: list[Any] = []

    def __enter__(self) -> WebKitSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ lifecycle
    def _log(self, name: str) -> Any:
        f = open(self.log_dir / name, "wb")  # closed in stop()
        self._logs.append(f)
        return f

    def _start_xvfb(self) -> str:
        r, w = os.pipe()
        screen = f"{max((self.width + 64) * self.scale, 1280)}x" \
                 f"{max((self.height + 128) * self.scale, 1024)}x24"
        self._xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(w), "-screen", "0", screen, "-nolisten", "tcp",
             "-noreset"],
            pass_fds=(w,), stdout=self._log("xvfb.log"), stderr=subprocess.STDOUT,
            start_new_session=True)
        self.pids["xvfb"] = self._xvfb.pid
        os.close(w)
        buf = b""
        deadline = time.monotonic() + START_TIMEOUT
        with os.fdopen(r, "rb", buffering=0) as pipe:
            while not buf.endswith(b"\n") and time.monotonic() < deadline:
                chunk = pipe.read(16)
                if not chunk:
                    break
                buf += chunk
        if not buf.strip():
            raise RuntimeError(f"Xvfb reported no display (see {self.log_dir}/xvfb.log)")
        return ":" + buf.decode().strip()

    def _start_bus(self) -> str:
        out = subprocess.run(
            ["dbus-daemon", "--session", "--fork", "--nopidfile", "--print-address=1",
             "--print-pid=1"], capture_output=True, text=True, timeout=START_TIMEOUT,
            check=True).stdout.split("\n")
        self.pids["dbus"] = int(out[1])
        return out[0]

    def _options(self) -> Any:
        from selenium.webdriver.webkitgtk.options import Options
        opts = Options()
        opts.set_capability("browserName", "MiniBrowser")
        opts.set_capability("acceptInsecureCerts", self.accept_insecure_certs)
        opts.add_argument("--automation")  # required once any argument is given
        if self.ua:
            opts.add_argument(f"--user-agent={self.ua}")
        if self.dark:
            opts.add_argument("--dark-mode")
        for a in self.browser_args:
            opts.add_argument(a)
        return opts

    def start(self) -> Any:
        """Start display, bus, driver and a new session; returns the selenium driver."""
        from selenium import webdriver
        from selenium.webdriver.common.proxy import Proxy, ProxyType
        from selenium.webdriver.remote.client_config import ClientConfig
        from selenium.webdriver.remote.remote_connection import RemoteConnection

        for tool in (DRIVER, "Xvfb", "dbus-daemon"):
            if not shutil.which(tool):
                raise RuntimeError(f"{tool} is missing: run scripts/install-system-deps.sh test")
        atexit.register(self.stop)
        try:
            env = dict(os.environ)
            display = env.get("DISPLAY")
            if self.own_display or not _display_answers(display):
                display = self._start_xvfb()
            env.pop("WAYLAND_DISPLAY", None)
            env.update(DISPLAY=str(display), GDK_BACKEND="x11", NO_AT_BRIDGE="1",
                       GDK_SCALE=str(self.scale), DBUS_SESSION_BUS_ADDRESS=self._start_bus())
            port = free_port()
            self._driver_proc = subprocess.Popen(
                [DRIVER, f"--port={port}", "--host=127.0.0.1"], env=env,
                stdin=subprocess.DEVNULL, stdout=self._log("driver.log"),
                stderr=subprocess.STDOUT, start_new_session=True)
            self.pids["driver"] = self._driver_proc.pid
            self._wait_listening(port)
            # The driver is on loopback: never through a proxy from the environment.
            config = ClientConfig(remote_server_addr=f"http://127.0.0.1:{port}",
                                  proxy=Proxy({"proxyType": ProxyType.DIRECT}),
                                  timeout=120)
            self.driver = webdriver.Remote(command_executor=RemoteConnection(
                client_config=config), options=self._options())
            self.set_viewport(self.width, self.height)
            return self.driver
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self, port: int) -> None:
        assert self._driver_proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._driver_proc.poll() is not None:
                raise RuntimeError(f"{DRIVER} exited with {self._driver_proc.returncode} "
                                   f"(see {self.log_dir}/driver.log)")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return
            time.sleep(0.02)
        raise RuntimeError(f"{DRIVER} did not listen on {port} within {START_TIMEOUT} s")

    def set_viewport(self, width: int, height: int) -> None:
        """Make window.innerWidth x innerHeight exactly width x height."""
        d = self.driver
        d.set_window_rect(x=0, y=0, width=width, height=height)
        for _ in range(3):
            iw, ih = d.execute_script("return [window.innerWidth, window.innerHeight]")
            if (iw, ih) == (width, height):
                return
            r = d.get_window_rect()
            d.set_window_rect(x=0, y=0, width=r["width"] + width - iw,
                              height=r["height"] + height - ih)

    def stop(self) -> None:
        """Quit the session and end every process this object started (by PID or group)."""
        if self.driver is not None:
            with contextlib.suppress(Exception):
                self.driver.quit()
            self.driver = None
        if self._driver_proc is not None:
            # Its own session: the group holds MiniBrowser and the WebKit*Process children.
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self._driver_proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self._driver_proc.wait(5)
                    time.sleep(0.1)  # the group may outlive its leader for a moment
                except subprocess.TimeoutExpired:
                    continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._driver_proc.pid, signal.SIGKILL)
            self._driver_proc = None
        bus = self.pids.get("dbus")
        if bus:
            with contextlib.suppress(ProcessLookupError):
                os.kill(bus, signal.SIGTERM)
        if self._xvfb is not None:
            self._xvfb.terminate()
            try:
                self._xvfb.wait(5)
            except subprocess.TimeoutExpired:
                self._xvfb.kill()
                self._xvfb.wait(5)
            self._xvfb = None
        for f in self._logs:
            f.close()
        self._logs.clear()
        shutil.rmtree(self.log_dir, ignore_errors=True)
        atexit.unregister(self.stop)

    # ------------------------------------------------------------------ helpers
    def get(self, url: str) -> str:
        """Open ``url``; raises when the load silently failed (refused, TLS error)."""
        self.driver.get(url)
        # On a failed load current_url may name the URL asked for while the document is
        # WebKit's error page, whose location is about:blank: ask the document.
        current = str(self.driver.execute_script("return location.href"))
        if current in ("about:blank", "") and not url.startswith("about:"):
            text = self.driver.execute_script(
                "return document.body ? document.body.innerText.slice(0, 200) : ''")
            raise RuntimeError(f"navigation to {url} failed: {text or 'the page stayed blank'}")
        return current

    def wait(self, condition: Callable[[Any], Any], timeout: float = 20.0) -> Any:
        """Poll ``condition(driver)`` until it returns something truthy, and return that."""
        deadline = time.monotonic() + timeout
        while True:
            result = condition(self.driver)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s on {self.driver.current_url}")
            time.sleep(0.1)

    def wait_css(self, selector: str, timeout: float = 20.0) -> list[Any]:
        """Wait until ``selector`` matches at least one element; return the matches."""
        return list(self.wait(lambda d: d.find_elements("css selector", selector), timeout))

    def install_console_capture(self) -> None:
        """Record console.*, uncaught errors, rejections and CSP violations of the CURRENT
        document from now on (navigation drops the hook: call it again after each load)."""
        self.driver.execute_script(_CONSOLE_HOOK)

    def console_messages(self) -> list[dict[str, str]]:
        return list(self.driver.execute_script("return window.__wkConsole || []") or [])

    def console_errors(self) -> list[dict[str, str]]:
        """The captured messages that are errors or CSP violations."""
        return [m for m in self.console_messages() if m.get("level") in ERROR_LEVELS]

    def info(self) -> dict[str, Any]:
        """What the page sees: UA, viewport, devicePixelRatio, colour scheme, touch."""
        return dict(self.driver.execute_script(
            "return {userAgent: navigator.userAgent, inner: [innerWidth, innerHeight],"
            " dpr: devicePixelRatio, dark: matchMedia('(prefers-color-scheme: dark)').matches,"
            " maxTouchPoints: navigator.maxTouchPoints, isSecureContext: window.isSecureContext}"))


def sign_in(session: WebKitSession, base_url: str, name: str = "Cllr Alex Morgan") -> None:
    """Sign in at the gateway through the Entra stand-in's person picker (form_post back),
    and wait for the mail list."""
    session.get(base_url + "/")
    session.wait_css("#signin")[0].click()
    session.wait(lambda d: d.find_elements(
        "xpath", f"//button[contains(., '{name}')]"))[0].click()
    session.wait_css("#folder-count")


@contextlib.contextmanager
def webkit_sessions() -> Iterator[Callable[..., WebKitSession]]:
    """A factory of started sessions, all stopped when the block ends."""
    started: list[WebKitSession] = []

    def make(**options: Any) -> WebKitSession:
        s = WebKitSession(**options)
        started.append(s)
        s.start()
        return s
    try:
        yield make
    finally:
        for s in started:
            s.stop()
