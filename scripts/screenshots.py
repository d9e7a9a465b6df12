"""Screenshots of the mail pages for the docs (issue 13 item 9): the Inbox and an open message
at iPad landscape (1180x820), iPad portrait (820x1180) and phone (390x844), in Debian's
Chromium, written to ``docs/screenshots/{inbox,message}-{size}-{label}.png``.

    .venv/bin/python scripts/screenshots.py before     # or: after

Starts the dev stack (sample mailboxes) and a gateway in a background loop thread, the way
``bench/`` does, signs the sample member in through the Entra stand-in's picker and shoots
the first screen (the viewport, not the whole page) at device scale 1 so each PNG stays
small. Light colour scheme, JavaScript on, animations off.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from common import bench  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from tests.web.browser import ARGS, CHROMIUM, sign_in_in_browser  # noqa: E402

# The sizes of issue 13's screenshots (CSS pixels): iPad Air 11" both ways and an iPhone.
SIZES = {"ipad-landscape": (1180, 820), "ipad-portrait": (820, 1180), "phone": (390, 844)}
IPAD_UA = ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
           "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
OUT = ROOT / "docs" / "screenshots"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("label", help="suffix of the file names, e.g. before or after")
    ap.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--out", type=Path, default=OUT, help="folder (default docs/screenshots)")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with bench(seed_messages=40) as b, sync_playwright() as p:
        gw = b.gateway()
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            for size in args.sizes:
                width, height = SIZES[size]
                ctx = browser.new_context(
                    viewport={"width": width, "height": height}, device_scale_factor=1,
                    is_mobile=True, has_touch=True, color_scheme="light",
                    reduced_motion="reduce", ignore_https_errors=True,
                    user_agent=PHONE_UA if size == "phone" else IPAD_UA)
                page = ctx.new_page()
                sign_in_in_browser(page, gw.url)
                page.goto(gw.url + "/mail?f=INBOX")
                page.wait_for_selector("#rows")
                shot = out / f"inbox-{size}-{args.label}.png"
                page.screenshot(path=str(shot))
                print(f"{shot}  {shot.stat().st_size // 1024} KB")
                page.locator("#rows li a").first.click()
                page.wait_for_selector("#subject")
                page.wait_for_load_state("networkidle")
                shot = out / f"message-{size}-{args.label}.png"
                page.screenshot(path=str(shot))
                print(f"{shot}  {shot.stat().st_size // 1024} KB")
                ctx.close()
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
