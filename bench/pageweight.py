"""Page weight (issue 3): requests and compressed bytes for a first visit, from the sign-in
page to a visible inbox, and for opening a message. Target for the first visit: at most
30 KB and 6 requests, everything self-hosted.

    .venv/bin/python bench/pageweight.py [--runs 5] [--list]

Starts the dev stack and a gateway in a background loop thread, then drives Debian's
Chromium through Playwright with the iPad profile of the team's page-weight tool (measure.py)
(1024x1366 portrait, scale 2, touch, iPad Safari user agent), a fresh browser context (cold
cache, no cookies) per run:

1. ``GET /`` -> the gateway's sign-in page, visible;
2. tap "Sign in with your council account" -> the Entra stand-in's account picker -> tap the
   member -> the stand-in's form_post page posts back to ``/auth/callback`` -> the inbox,
   until its first message row is visible and the network has been quiet for 1 s;
3. tap the newest message -> the message page (and its sandboxed body frame, if HTML) until
   the subject is visible and the network is quiet.

Bytes are what Playwright reports per finished request (``Request.sizes()``: response
headers + response body as transferred, so compressed if the server compressed). Requests to
the Entra stand-in are counted apart: in production those pages are Microsoft's sign-in
pages, outside the gateway's control and not part of its budget. A "warm" series repeats the
visit in a context whose HTTP cache was primed by one pass (cookies cleared), as
measure.py's warm mode does. ``--list`` prints every request of the last cold run.

measure.py itself is not used: it counts every host together and tracks the network of the
top page's CDP session only, while here the sign-in crosses to another origin and the message
body lives in a sandboxed frame.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench, header, other_load
from playwright.sync_api import BrowserContext, Page, Request, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage", "--disable-quic"]
IPAD_UA = ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
           "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
VIEWPORT = {"width": 1024, "height": 1366}


@dataclass
class Seen:
    url: str
    started: float
    kind: str
    done: bool = False
    failed: str = ""
    status: int = 0
    wire: int = 0
    body: int = 0
    encoding: str = ""
    cached: bool = False
    gz_wire: int = 0   # estimate: the same response with its body gzipped (level 6)


@dataclass
class Recorder:
    items: list[Seen] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)
    by_req: dict[int, Seen] = field(default_factory=dict)
    last: float = field(default_factory=time.monotonic)
    finished: list[Request] = field(default_factory=list)

    def attach(self, ctx: BrowserContext) -> None:
        ctx.on("request", self._request)
        ctx.on("requestfinished", self._finished)
        ctx.on("requestfailed", self._failed)
        ctx.on("response", self._response)

    def _response(self, r: Any) -> None:
        if r.request.resource_type == "document":
            where = r.headers.get("location", "")
            self.documents.append(f"{r.request.method} {urlsplit(r.url).path} {r.status}"
                                  + (f" -> {urlsplit(where).path}" if where else ""))

    def _request(self, r: Request) -> None:
        if r.url.startswith(("data:", "blob:", "about:")):
            return
        s = Seen(r.url, time.monotonic(), r.resource_type)
        self.items.append(s)
        self.by_req[id(r)] = s
        self.last = time.monotonic()

    def _finished(self, r: Request) -> None:
        s = self.by_req.get(id(r))
        if s is not None:
            s.done = True
            self.finished.append(r)
        self.last = time.monotonic()

    def _failed(self, r: Request) -> None:
        s = self.by_req.get(id(r))
        if s is not None:
            s.failed = r.failure or "failed"
        self.last = time.monotonic()

    def fill_sizes(self) -> None:
        for r in self.finished:
            s = self.by_req[id(r)]
            if s.wire:
                continue
            try:
                sizes = r.sizes()
                resp = r.response()
            except Exception:  # noqa: S112 - a request of a closed frame
                continue
            s.wire = sizes["responseHeadersSize"] + max(0, sizes["responseBodySize"])
            s.body = max(0, sizes["responseBodySize"])
            s.gz_wire = s.wire
            if resp is not None:
                s.status = resp.status
                s.encoding = resp.headers.get("content-encoding", "")
                s.cached = resp.from_service_worker or (sizes["responseHeadersSize"] <= 0)
                if not s.encoding and s.body > 256:
                    try:
                        raw = resp.body()
                    except Exception:  # a document navigated away from
                        raw = b""
                    if raw:
                        s.gz_wire = (sizes["responseHeadersSize"] + 24
                                     + len(gzip.compress(raw, 6)))

    def quiet(self, page: Page, idle: float = 1.0, timeout: float = 30) -> None:
        """Wait until nothing new started or ended for ``idle`` s (long-lived requests such as
        an event stream stay open and are ignored)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and time.monotonic() - self.last < idle:
            page.wait_for_timeout(50)


def summarize(items: list[Seen], gateway_host: str) -> dict[str, float]:
    own = [s for s in items if urlsplit(s.url).netloc == gateway_host]
    other = [s for s in items if urlsplit(s.url).netloc != gateway_host]
    return {"requests": len(own), "net_requests": sum(1 for s in own if not s.cached),
            "wire_kb": sum(s.wire for s in own) / 1024,
            "gz_kb": sum(s.gz_wire for s in own) / 1024,
            "open": sum(1 for s in own if not s.done and not s.failed),
            "standin_requests": len(other), "standin_kb": sum(s.wire for s in other) / 1024,
            "outside": sum(1 for s in other if "127.0.0.1" not in s.url)}


class VisitFailed(RuntimeError):
    pass


def visit(ctx: BrowserContext, base: str, rec: Recorder, nth: int) -> dict[str, Any]:
    page = ctx.new_page()
    t0 = time.monotonic()
    page.goto(base + "/", wait_until="commit")
    page.wait_for_selector("#signin", state="visible")
    t_signin = time.monotonic()
    page.click("#signin")
    page.click("#user-member")
    try:
        page.wait_for_selector("#rows li a", state="visible", timeout=20_000)
    except Exception as exc:
        page.close()
        raise VisitFailed(f"inbox not shown within 20 s; the page was at {page.url}; "
                          f"documents: {rec.documents}") from exc
    t_inbox = time.monotonic()
    rec.quiet(page)
    rec.fill_sizes()   # while the inbox document is alive (its body is needed for gzip)
    m0 = time.monotonic()
    page.locator("#rows li a").nth(nth).click()
    page.wait_for_selector("#subject", state="visible")
    t_msg = time.monotonic()
    subject = page.inner_text("#subject")
    rec.quiet(page)
    rec.fill_sizes()
    m1 = time.monotonic()
    # Sign out (not counted): each session holds its own IMAP connection, and Dovecot, like
    # Exchange, allows about 20 per mailbox; the 21st session would be refused.
    with page.expect_navigation():
        page.click("form[action='/auth/signout'] button")
    page.close()
    return {"first": [s for s in rec.items if t0 <= s.started < m0],
            "message": [s for s in rec.items if m0 <= s.started < m1],
            "t_signin_ms": (t_signin - t0) * 1000, "t_inbox_ms": (t_inbox - t_signin) * 1000,
            "t_message_ms": (t_msg - m0) * 1000, "subject": subject}


def new_context(browser: Any) -> BrowserContext:
    ctx: BrowserContext = browser.new_context(
        viewport=VIEWPORT, screen=VIEWPORT, device_scale_factor=2, is_mobile=True,
        has_touch=True, user_agent=IPAD_UA, locale="en-GB", timezone_id="Europe/London",
        ignore_https_errors=True)
    return ctx


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--nth", type=int, default=0, help="which message row to open (0 = newest)")
    ap.add_argument("--list", action="store_true", help="list the last cold run's requests")
    args = ap.parse_args()
    header("Page weight: first visit (sign-in page -> inbox) and opening a message", sys.argv)

    with bench(seed_messages=100) as b:
        gw = b.gateway()
        host = urlsplit(gw.url).netloc
        results: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": []}
        last_cold: dict[str, Any] = {}
        failures: list[str] = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            print(f"Chromium {browser.version}, iPad portrait {VIEWPORT['width']}x"
                  f"{VIEWPORT['height']} @2x, gateway {gw.url}")
            for mode in ("cold", "warm"):
                for i in range(args.runs + 1):   # the first run of each series is a warm-up
                    for _attempt in range(3):
                        ctx = new_context(browser)
                        try:
                            if mode == "warm":
                                primer = Recorder()
                                primer.attach(ctx)
                                visit(ctx, gw.url, primer, args.nth)
                                ctx.remove_listener("request", primer._request)
                                ctx.clear_cookies()
                            rec = Recorder()
                            rec.attach(ctx)
                            out = visit(ctx, gw.url, rec, args.nth)
                            break
                        except VisitFailed as exc:
                            failures.append(f"{mode} run {i}: {exc}")
                            print(f"VISIT FAILED ({mode} run {i}), retrying: {exc}", flush=True)
                        finally:
                            ctx.close()
                    else:
                        raise SystemExit("three visits in a row failed")
                    if i:
                        results[mode].append(out)
                        if mode == "cold":
                            last_cold = out
            browser.close()

        for mode, runs in results.items():
            print(f"\n## {mode} cache (median of {len(runs)})")
            for seg in ("first", "message"):
                sums = [summarize(r[seg], host) for r in runs]
                med = {k: statistics.median(s[k] for s in sums) for k in sums[0]}
                label = ("first visit, sign-in page -> inbox visible" if seg == "first"
                         else "open the newest message")
                line = (f"{label:<44} gateway: {med['requests']:.0f} requests "
                        f"({med['net_requests']:.0f} from network, {med['open']:.0f} still "
                        f"open), {med['wire_kb']:.1f} KB on the wire (gzip estimate "
                        f"{med['gz_kb']:.1f} KB)")
                if seg == "first":
                    line += (f";  stand-in (Microsoft's pages in production): "
                             f"{med['standin_requests']:.0f} requests, "
                             f"{med['standin_kb']:.1f} KB")
                    if mode == "cold":
                        verdict = ("meets" if med["requests"] <= 6 and med["wire_kb"] <= 30
                                   else "MISSES")
                        line += f"\n{'':<44} target <= 6 requests and <= 30 KB: {verdict}"
                print(line)
                if med["outside"]:
                    print(f"{'':<44} REQUESTS TO OUTSIDE HOSTS: {med['outside']:.0f}")
            t = {k: statistics.median(r[k] for r in runs)
                 for k in ("t_signin_ms", "t_inbox_ms", "t_message_ms")}
            print(f"times (host clock, indicative): sign-in page visible {t['t_signin_ms']:.0f} ms"
                  f"; click -> inbox row visible {t['t_inbox_ms']:.0f} ms; click -> message "
                  f"subject visible {t['t_message_ms']:.0f} ms")
        print(f"\nbrowser visits that failed to reach the inbox (retried): {len(failures)}")
        if last_cold:
            print(f"\nopened message: {last_cold['subject']!r}")
        if args.list and last_cold:
            for seg in ("first", "message"):
                print(f"\nrequests of the last cold run, {seg}:")
                for s in last_cold[seg]:
                    state = "open" if not (s.done or s.failed) else (s.failed or s.status)
                    print(f"  {s.kind:<11} {state!s:<8} {s.wire:>6} B  body {s.body:>6} B  "
                          f"gz~{s.gz_wire:>6} B  {s.encoding or '-':<5} {s.url[:100]}")
    print(f"other CPU users at end: {other_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
