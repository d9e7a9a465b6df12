"""Headless Chromium (Debian's) driven by Playwright with an iPad profile, for page tests.
Records every request so a test can assert nothing left for an outside host, and every
console message, dialog and CSP violation."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


# The extension id of the PDF viewer built into Chromium: its pages, and the chrome://
# resources they use, come from the browser itself, not from the network.
CHROMIUM_PDF_VIEWER = "mhjfbmdgcfjbbpaeojofohoefgiehjai"


@dataclass
class Recorder:
    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    dialog_types: list[str] = field(default_factory=list)

    def outside(self, allowed_hosts: set[str]) -> list[str]:
        out = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob", "about", "chrome-error"):
                continue
            if parts.scheme == "chrome" or (parts.scheme == "chrome-extension"
                                            and parts.hostname == CHROMIUM_PDF_VIEWER):
                continue          # Chromium's own PDF viewer, drawing a PDF the gateway sent
            if parts.hostname not in allowed_hosts:
                out.append(url)
        return out


# The sizes members use: iPad portrait and landscape, and a phone (Playwright's profiles).
SIZES = {"ipad-portrait": "iPad Pro 11", "ipad-landscape": "iPad Pro 11 landscape",
         "phone": "iPhone 13"}


# The CSS viewports of issue 13's layout checks (iPad Air 11" both ways, an iPhone's screen),
# used with the profile of the same name (user agent, touch, scale) by ``page(viewport=True)``.
VIEWPORTS = {"ipad-portrait": (820, 1180), "ipad-landscape": (1180, 820), "phone": (390, 844)}


class IpadBrowser:
    """One Chromium; each ``page()`` is a fresh iPad-profile context (its own cookies)."""

    def __init__(self, playwright: Any) -> None:
        self.p = playwright
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS,
                                                  headless=True)

    def page(self, javascript: bool = True, size: str = "ipad-portrait",
             viewport: bool = False, zoom: int = 100) -> tuple[Page, Recorder]:
        """``viewport``: issue 13's size for ``size`` (VIEWPORTS) instead of the profile's;
        ``zoom``: browser zoom in per cent, as the viewport shrunk by that factor and the
        pixels grown by it (what 200 % zoom does to a page's CSS layout)."""
        device = dict(self.p.devices[SIZES[size]])
        device.pop("default_browser_type", None)
        if viewport or zoom != 100:
            w, h = VIEWPORTS[size] if viewport else (device["viewport"]["width"],
                                                      device["viewport"]["height"])
            device["viewport"] = {"width": w * 100 // zoom, "height": h * 100 // zoom}
            device["screen"] = dict(device["viewport"])
            device["device_scale_factor"] = device["device_scale_factor"] * zoom / 100
        context = self.browser.new_context(**device, ignore_https_errors=True,
                                           java_script_enabled=javascript)
        page = context.new_page()
        rec = Recorder()
        context.on("request", lambda r: rec.requests.append(r.url))
        page.on("console", lambda m: rec.console.append(f"{m.type}: {m.text}"))

        def on_dialog(d: Any) -> None:
            rec.dialogs.append(d.message)
            rec.dialog_types.append(d.type)
            d.dismiss()
        page.on("dialog", on_dialog)
        return page, rec


@contextlib.contextmanager
def ipad_browser() -> Iterator[IpadBrowser]:
    with sync_playwright() as p:
        b = IpadBrowser(p)
        try:
            yield b
        finally:
            b.browser.close()


@contextlib.contextmanager
def ipad_page(javascript: bool = True) -> Iterator[tuple[Page, Recorder]]:
    with ipad_browser() as b:
        yield b.page(javascript)


def sign_in_in_browser(page: Page, base_url: str, name: str = "Cllr Alex Morgan") -> None:
    page.goto(base_url + "/")
    page.get_by_role("link", name=re.compile("Sign in with your council account")).click()
    page.get_by_role("button", name=re.compile(name)).click()
    page.wait_for_url(re.compile(re.escape(base_url) + r"/(\?.*)?$"))
    page.wait_for_selector("#folder-count")


def signed_in_page(browser: IpadBrowser, base_url: str, size: str, javascript: bool = True,
                   zoom: int = 100) -> tuple[Page, Recorder]:
    """A page signed in as Cllr Alex Morgan at issue 13's named CSS size for ``size``
    (VIEWPORTS: 820x1180, 1180x820, 390x844), optionally zoomed. Without JavaScript the
    stand-in's consent page needs its Continue button pressed by hand."""
    page, rec = browser.page(javascript=javascript, size=size, viewport=True, zoom=zoom)
    if javascript:
        sign_in_in_browser(page, base_url)
    else:
        page.goto(base_url + "/")
        page.get_by_role("link", name=re.compile("Sign in")).click()
        page.get_by_role("button", name=re.compile("Cllr Alex Morgan")).click()
        page.get_by_role("button", name=re.compile("Continue")).click()
        page.wait_for_selector("#folder-count")
    return page, rec


def axe_violations(page: Page) -> list[str]:
    result = Axe().run(page)
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])})"
            for v in result.response["violations"]]
