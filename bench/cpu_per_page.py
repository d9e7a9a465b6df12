"""CPU per page (issue 16): the gateway's own CPU time for one steady inbox page, one message
read and one calendar page, in one run, so the next change can be compared with this one.

    .venv/bin/python bench/cpu_per_page.py [--pages 300] [--concurrency 4] [--events 200]
                                           [--profile DIR] [--rate 1000]

The dev stack (Entra and Graph stand-ins, Dovecot, 100 seeded messages) runs in this process;
the gateway runs as its own ``python -m gateway serve`` process, so its CPU (user + system
over its process group, ``common.group_cpu``) is its own. One member signs in; for each page
kind ``--concurrency`` keep-alive clients ask for it in a closed loop until ``--pages`` pages
were served (after a warm-up of 30), and the script prints the gateway's, Dovecot's and this
process's CPU per page. CPU time is affected much less than wall-clock time by other people's
work on the same cores, which is why it is the figure to compare on a shared machine.

With ``--profile DIR`` each page kind is then repeated with py-spy attached to the gateway
(``py-spy record --pid ... --rate 1000 --format raw``, GIL-holding samples only, idle
excluded); the collapsed stacks are written to DIR/<page>.txt and summarised here as the
share of samples by component and the top functions by own time. py-spy needs to be allowed
to ptrace the gateway (it is here: same user, no Yama restriction).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import re
import resource
import sys
import time
import zlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from calendar_agenda import fill
from common import GatewayProcess, bench, group_cpu, header, other_load, sign_in_many
from spy import pyspy, spying, summarise

from gateway.calendar.zones import zone

READ_LINK = re.compile(r'href="(/mail/read\?f=INBOX&amp;uid=\d+)"')


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def drive(clients: list[httpx.AsyncClient], url: str, pages: int) -> tuple[int, int]:
    """``pages`` GETs of ``url`` shared over the clients, closed loop; (ok, errors)."""
    left = pages
    ok = errors = 0

    async def one(c: httpx.AsyncClient) -> None:
        nonlocal left, ok, errors
        while left > 0:
            left -= 1
            try:
                r = await c.get(url)
                good = r.status_code == 200 and len(r.content) > 0
            except httpx.HTTPError:
                good = False
            if good:
                ok += 1
            else:
                errors += 1
    await asyncio.gather(*(one(c) for c in clients))
    return ok, errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--events", type=int, default=200, help="calendar events in the fortnight")
    ap.add_argument("--profile", type=Path, default=None,
                    help="also profile each page with py-spy; raw stacks go to this folder")
    ap.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    args = ap.parse_args()
    header("CPU per page: inbox, read, calendar", sys.argv)
    spy = pyspy() if args.profile else None
    if args.profile and not spy:
        print("py-spy is not installed (pip install py-spy); profiling skipped")

    with bench(seed_messages=100) as b:
        assert b.stack.graph is not None and b.stack.mail is not None
        assert b.stack.mail._dovecot is not None
        dovecot = b.stack.mail._dovecot.pid
        gp = GatewayProcess(b.stack, b.workdir)
        ctx = b.ssl()
        try:
            async def run() -> None:
                today = datetime.now(zone("Europe/London")).date()
                fill(b.stack.graph, args.events, today)
                clients = await sign_in_many(gp.url, b.stack, ctx, 1, open_inbox=True)
                # More keep-alive connections of the same session (the cookie is shared).
                for _ in range(args.concurrency - 1):
                    c = httpx.AsyncClient(base_url=gp.url, verify=ctx, trust_env=False,
                                          timeout=120, cookies=clients[0].cookies)
                    clients.append(c)
                inbox = await clients[0].get("/")
                links = READ_LINK.findall(inbox.text)
                if not links:
                    raise RuntimeError("no message link on the inbox page")
                read_url = links[len(links) // 2].replace("&amp;", "&")
                pages: list[tuple[str, str]] = [("inbox", "/"), ("read", read_url),
                                                ("calendar", "/calendar")]
                print(f"\ngateway pid {gp.proc.pid}; {args.pages} pages each, "
                      f"{args.concurrency} concurrent keep-alive connections, one session\n")
                print(f"{'page':<10} {'gateway CPU/page':>17} {'Dovecot':>9} "
                      f"{'bench+stand-ins':>16} {'wall/page':>10} {'pages/s':>8} "
                      f"{'errors':>6} {'bytes':>8}")
                bodies: dict[str, bytes] = {}
                for name, url in pages:
                    await drive(clients, url, 30)
                    g0, d0, o0, w0 = gp.cpu_seconds(), group_cpu(dovecot), own_cpu(), \
                        time.perf_counter()
                    ok, errors = await drive(clients, url, args.pages)
                    wall = time.perf_counter() - w0
                    g, d, o = (gp.cpu_seconds() - g0, group_cpu(dovecot) - d0,
                               own_cpu() - o0)
                    body = (await clients[0].get(url)).content
                    bodies[name] = body
                    size = len(body)
                    n = max(1, ok)
                    print(f"{name:<10} {1000 * g / n:14.2f} ms {1000 * d / n:6.2f} ms "
                          f"{1000 * o / n:13.2f} ms {1000 * wall / n:7.2f} ms "
                          f"{ok / wall:8.0f} {errors:6d} {size:8d}", flush=True)
                gzip_table(bodies)
                if spy and args.profile:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    for name, url in pages:
                        await profile(spy, gp.proc.pid, args, name,
                                      functools.partial(drive, clients, url, args.pages))
                for c in clients:
                    await c.aclose()

            asyncio.run(run())
        finally:
            gp.stop()
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}; other CPU users: {other_load()}")
    return 0


def gzip_table(bodies: dict[str, bytes]) -> None:
    """What each gzip level costs and saves on these pages (CompressMiddleware's choice)."""
    print("\ngzip by level (CPU ms per page, measured here with zlib as Starlette calls it; "
          "bytes on the wire):")
    print(f"{'level':>5} " + " ".join(f"{n + ' ms':>12} {n + ' bytes':>15}" for n in bodies))
    for level in (1, 2, 4, 6, 9):
        cells = []
        for body in bodies.values():
            reps = 50
            t = time.process_time()
            for _ in range(reps):
                c = zlib.compressobj(level, zlib.DEFLATED, 31)
                packed = c.compress(body) + c.flush()
            cells.append(f"{1000 * (time.process_time() - t) / reps:12.3f} {len(packed):15d}")
        print(f"{level:>5} " + " ".join(cells))
    small = (128, 256, 512, 1024)
    print("small bodies (threshold): gzip of the first N bytes of the inbox page: " + ", ".join(
        f"{n} -> {len(zlib.compress(next(iter(bodies.values()))[:n], 6)) + 12}" for n in small))


async def profile(spy: str, pid: int, args: argparse.Namespace, name: str,
                  load: Callable[[], object]) -> None:
    out = args.profile / f"{name}.txt"
    with spying(spy, pid, args.rate, out) as ready:
        if not ready:
            return
        await load()  # type: ignore[misc]
    print(f"\nprofile {name} ({args.pages} pages, py-spy {args.rate} Hz, GIL held; "
          f"{out}):")
    print("\n".join(summarise(out)) if out.exists() else "  (no output)")


if __name__ == "__main__":
    sys.exit(main())
