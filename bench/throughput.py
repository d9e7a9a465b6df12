"""Throughput and memory (issue 3): inbox page views per second with 50 concurrent signed-in
members on this machine, load generator included (issue 16's targets: >= 300/s with one
worker process, >= 500/s with two; TARGET_VIEWS below); and the gateway's
resident memory with 1,000 signed-in members, each with an open IMAP connection (target
< 1 GB).

    .venv/bin/python bench/throughput.py [--members 50] [--seconds 20] [--memory-members 1000]
                                         [--skip-memory]

The dev stack (Entra stand-in, Dovecot, SMTP; 100 seeded messages per mailbox) runs in this
process's background loop; the gateway runs as a separate ``python -m gateway serve`` process
with the stack's settings in its environment, so its RSS and CPU are its own. The load
generator signs members in with httpx, then runs the closed loop (each member asks for ``/``
again as soon as the last page arrived; HTTP/1.1 keep-alive over TLS, one connection per
member) with ``bench/rawhttp.py`` in this process's main thread: httpx itself cost about 3 ms
of CPU per page, a third of the machine (``--client httpx`` measures with it). wrk is not
installed here and nothing was installed for this.

Members are spread over the three sample users allowed in (member, admin, member2), so each
Dovecot user holds many connections at once: Dovecot's ``mail_max_userip_connections = 20``
and its default process limits are raised for the benchmark by editing the generated config
(see ``common.raise_dovecot_limits``; ``MailServer`` has no override for them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import GatewayProcess, bench, group_cpu, group_rss_mb, header, other_load, sign_in_many
from rawhttp import RawClient

# Issue 16's targets per worker count: one process must carry 300 views/s, two 500/s.
TARGET_VIEWS = {1: 300, 2: 500}


def established_to(port: int) -> int:
    """ESTABLISHED TCP connections to 127.0.0.1:``port`` on this host (IPv4)."""
    n = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[3] == "01" and int(parts[2].split(":")[1], 16) == port:
            n += 1
    return n


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _status(c: httpx.AsyncClient | RawClient) -> int:
    if isinstance(c, RawClient):
        return await c.get("/")
    return (await c.get("/")).status_code


async def load(clients: Sequence[httpx.AsyncClient | RawClient], seconds: float
               ) -> tuple[int, int, list[float]]:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def member(c: httpx.AsyncClient | RawClient) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                ok = await _status(c) == 200
            except Exception:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t)
            else:
                errors += 1
    await asyncio.gather(*(member(c) for c in clients))
    return len(latencies), errors, latencies


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--memory-members", type=int, default=1000)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--workers", type=int, default=1,
                    help="server.workers of the gateway process (default 1)")
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw",
                    help="the closed loop's HTTP client: bench/rawhttp.py (default) or httpx")
    args = ap.parse_args()
    header("Throughput and memory", sys.argv)
    most = args.members if args.skip_memory else max(args.members, args.memory_members)

    with bench(seed_messages=100, max_connections=most) as b:
        gp = GatewayProcess(b.stack, b.workdir, server__workers=args.workers)
        assert b.stack.mail is not None and b.stack.mail._dovecot is not None
        imap_port, dovecot_pgid = b.stack.mail.imap_port, b.stack.mail._dovecot.pid
        ctx = b.ssl()
        try:
            rss0 = gp.rss_mb()
            print(f"\ngateway pid {gp.proc.pid}, {gp.processes()} process(es) "
                  f"(server.workers = {args.workers}); RSS after start-up: {rss0:.1f} MB")

            async def throughput() -> list[httpx.AsyncClient]:
                t = time.perf_counter()
                clients = await sign_in_many(gp.url, b.stack, ctx, args.members,
                                             open_inbox=True)
                print(f"signed in {len(clients)} members and opened their inboxes in "
                      f"{time.perf_counter() - t:.1f} s; RSS {gp.rss_mb():.1f} MB; "
                      f"IMAP connections open: {established_to(imap_port)}")
                looping: list[httpx.AsyncClient | RawClient] = list(clients)
                if args.client == "raw":
                    looping = [RawClient(gp.url, ctx, c.cookies) for c in clients]
                    for r in looping:           # each member's first page: their inbox
                        assert isinstance(r, RawClient)
                        if await r.get("/", check=b"Inbox") != 200:
                            raise RuntimeError("a member's inbox did not open")
                print(f"closed-loop client: {args.client}")
                await load(looping, 3)  # warm-up
                d0 = group_cpu(dovecot_pgid)
                g0, l0, w0 = gp.cpu_seconds(), own_cpu(), time.perf_counter()
                n, errors, lat = await load(looping, args.seconds)
                wall = time.perf_counter() - w0
                g1, l1, d1 = gp.cpu_seconds(), own_cpu(), group_cpu(dovecot_pgid)
                lat.sort()
                print(f"\n{args.members} members, closed loop, {wall:.1f} s: {n} page views, "
                      f"{errors} errors")
                target = TARGET_VIEWS.get(args.workers, 500)
                print(f"page views per second: {n / wall:.0f}   (target >= {target} with "
                      f"{args.workers} worker(s): "
                      f"{'meets' if n / wall >= target else 'MISSES'})")
                print(f"latency: median {statistics.median(lat) * 1000:.1f} ms, "
                      f"p90 {lat[int(len(lat) * 0.9)] * 1000:.1f} ms, "
                      f"p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} ms")
                g, lg, d = g1 - g0, l1 - l0, d1 - d0
                print(f"CPU during the window: gateway {100 * g / wall:.0f} % "
                      f"({args.workers} worker(s), all processes summed), "
                      f"load generator + stand-ins (this process) {100 * lg / wall:.0f} %"
                      f", Dovecot {100 * d / wall:.0f} % (of one core; "
                      f"{os.cpu_count()} cores = {100 * (os.cpu_count() or 1)} %)")
                print(f"share of the CPU used: gateway {100 * g / max(1e-9, g + lg + d):.0f} %, "
                      f"load generator {100 * lg / max(1e-9, g + lg + d):.0f} %, "
                      f"Dovecot {100 * d / max(1e-9, g + lg + d):.0f} %")
                print(f"per page view: gateway {1000 * g / max(1, n):.2f} ms CPU, "
                      f"load generator {1000 * lg / max(1, n):.2f} ms CPU, "
                      f"Dovecot {1000 * d / max(1, n):.2f} ms CPU; one gateway "
                      f"process tops out near {n / max(1e-9, g):.0f}/s at 100 % of a core")
                print(f"load average now: {os.getloadavg()[0]:.2f}; "
                      f"other CPU users: {other_load()}")
                for r in looping:
                    if isinstance(r, RawClient):
                        await r.close()
                return clients

            async def memory(clients: list[httpx.AsyncClient]) -> None:
                extra = args.memory_members - len(clients)
                t = time.perf_counter()
                last = [0.0]

                def progress(done: int) -> None:
                    if time.perf_counter() - last[0] > 10:
                        last[0] = time.perf_counter()
                        print(f"  ... {done + len(clients)} signed in, RSS "
                              f"{gp.rss_mb():.0f} MB", flush=True)
                more = await sign_in_many(gp.url, b.stack, ctx, extra, concurrency=24,
                                          open_inbox=True, progress=progress)
                took = time.perf_counter() - t
                await _close_all([*clients, *more])
                print(f"signed in {extra} more members ({len(clients) + len(more)} in "
                      f"all), each with an inbox page loaded, in {took:.1f} s")

            async def run_all() -> float:
                clients = await throughput()
                rss50 = gp.rss_mb()
                if args.skip_memory:
                    await _close_all(clients)
                else:
                    print()
                    await memory(clients)
                return rss50

            rss50 = asyncio.run(run_all())
            if not args.skip_memory:
                time.sleep(1)
                conns = established_to(imap_port)
                rss = gp.rss_mb()
                procs, dovecot_mb = group_rss_mb(dovecot_pgid)
                print(f"IMAP connections open from the gateway to Dovecot: {conns}")
                print(f"gateway RSS: {rss0:.1f} MB at start, {rss50:.1f} MB with "
                      f"{args.members} members, {rss:.1f} MB with {args.memory_members} "
                      f"members -> {(rss - rss0) * 1024 / args.memory_members:.0f} KB per "
                      f"member  (target < 1024 MB: {'meets' if rss < 1024 else 'MISSES'})")
                print(f"Dovecot, for information: {procs} processes, {dovecot_mb:.0f} MB RSS "
                      "summed (shared pages counted in each)")
        finally:
            gp.stop()
    print(f"other CPU users at end: {other_load()}")
    return 0


async def _close_all(clients: list[httpx.AsyncClient]) -> None:
    for c in clients:
        await c.aclose()


if __name__ == "__main__":
    sys.exit(main())
