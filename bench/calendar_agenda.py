"""The agenda page (today + 14 days) holding 200 events: request time through the gateway
against the bare Graph calls it makes, and the page's compressed size.

    .venv/bin/python bench/calendar_agenda.py [--events 200] [--runs 40]

Starts the dev stack (Entra and Graph stand-ins over TLS, Dovecot with no seeded mail) and a
gateway on loopback, signs the sample member in, fills their fortnight to ``--events``, then
times ``GET /calendar`` and the same calendarView requests sent straight to the Graph
stand-in with the same token (every page, its JSON parsed for the nextLink), in turns, one of
each per run, so the machine's drift falls on both alike. Targets (issue 6): page at
most 1.2 times the bare calls; at most 25 KB compressed.

``--nodelay`` works around a dev-stack defect for the measurement only: ``TLSServer`` binds a
socket made with proto 0, so asyncio never sets TCP_NODELAY on accepted connections and every
response on the loopback servers stalls ~40 ms (Nagle against delayed ACK). Production uvicorn
binds its own socket and is not affected; the proper fix is one line in
``gateway/devstack/runner.py`` (``socket.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP)``).
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.calendar.graph import LIST_FIELDS
from gateway.calendar.zones import zone
from gateway.devstack.graph import GraphStandIn
from gateway.devstack.graph_seed import Seed
from gateway.devstack.runner import TLSServer
from gateway.devstack.stack import DevStack
from gateway.devstack.users import user
from tests.conftest import LoopThread, ca_context, sign_in, start_gateway

SUBJECTS = ("Planning Committee", "Ward surgery", "Licensing hearing", "Budget briefing",
            "Residents' association", "School governors", "Police liaison", "Site visit")


def fill(graph: GraphStandIn, count: int, today: Any) -> None:
    """Top the member's fortnight up to ``count`` events (the seeded ones count)."""
    oid = user("member").oid
    cal = graph.calendar(oid)
    tz = zone("Europe/London")
    start = datetime.combine(today, datetime.min.time(), tz)
    end = start + timedelta(days=15)
    have = sum(1 for i in cal.instances(expand=True)
               if i.start_utc < end and i.end_utc > start)
    seeds = []
    for n in range(max(0, count - have)):
        day = today + timedelta(days=n % 15)
        at = datetime.combine(day, datetime.min.time()) + timedelta(hours=8 + (n // 15) % 12,
                                                                     minutes=15 * (n % 4))
        seeds.append(Seed(f"{SUBJECTS[n % len(SUBJECTS)]} {n}", at, at + timedelta(minutes=45),
                          location="Town Hall, Committee Room " + str(n % 5 + 1),
                          body="<p>Papers to follow.</p>"))
    graph.add_events(oid, seeds)


def interleaved(bare: Any, page: Any, runs: int) -> tuple[list[float], list[float], Any, Any]:
    """Seconds of each bare call set and each page, taken in turns (bare, page, bare, ...):
    the machine's drift over the run then falls on both alike. Returns both lists and the
    last answer of each."""
    bare(), page()                         # warm: connections, caches
    t_bare: list[float] = []
    t_page: list[float] = []
    last_bare = last_page = None
    for _ in range(runs):
        t0 = time.perf_counter()
        last_bare = bare()
        t1 = time.perf_counter()
        last_page = page()
        t2 = time.perf_counter()
        t_bare.append(t1 - t0)
        t_page.append(t2 - t1)
    return t_bare, t_page, last_bare, last_page


def spread(samples: list[float]) -> str:
    """Median, p10 and p90 in milliseconds."""
    q = statistics.quantiles(samples, n=10)
    return (f"{statistics.median(samples) * 1000:.1f} ms (p10 {q[0] * 1000:.1f}, "
            f"p90 {q[-1] * 1000:.1f})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--nodelay", action="store_true",
                    help="make the dev-stack servers' sockets TCP, so TCP_NODELAY applies")
    args = ap.parse_args()
    if args.nodelay:
        _tcp_sockets_for_runner()
    loop = LoopThread()
    with tempfile.TemporaryDirectory() as tmp:
        stack = DevStack(Path(tmp) / "stack", seed_messages=0)
        loop.run(stack.start())
        # Graph gets an event loop of its own, as the real one is on other machines: sharing
        # the gateway's loop would bill the stand-in's work to the gateway.
        graph_loop = LoopThread()
        stand_in = GraphStandIn(stack.signer)
        graph_server = TLSServer(stand_in.app, stack.certs)
        graph_loop.run(graph_server.start())
        stand_in.base_url = graph_server.url
        gw = start_gateway(stack, loop, Path(tmp), failover__initial_mode="active",
                           graph__base_url=stand_in.base_url + "/v1.0")
        try:
            today = datetime.fromtimestamp(gw.clock(), zone("Europe/London")).date()
            fill(stand_in, args.events, today)
            member = sign_in(gw, "member")
            page = member.get("/calendar")
            assert page.status_code == 200, page.status_code
            rows = page.text.count('class="ev')

            # The bare calls: what the adapter sends for this page, straight to Graph.
            tz = zone("Europe/London")
            start = datetime.combine(today, datetime.min.time(), tz)
            end = start + timedelta(days=15)
            token = member_token(stack)
            params = {"startDateTime": start.astimezone(zone("UTC")).isoformat(),
                      "endDateTime": end.astimezone(zone("UTC")).isoformat(),
                      "$select": ",".join(LIST_FIELDS), "$orderby": "start/dateTime",
                      "$top": str(gw.settings.graph.page_size)}
            graph = httpx.Client(verify=ca_context(stack), trust_env=False, headers={
                "Authorization": f"Bearer {token}",
                "Prefer": 'outlook.timezone="Europe/London"'})

            def bare() -> int:
                url: str | None = stand_in.base_url + "/v1.0/me/calendarView"
                q: dict[str, str] | None = params
                pages = 0
                while url:
                    r = graph.get(url, params=q)
                    r.raise_for_status()
                    url, q = r.json().get("@odata.nextLink"), None
                    pages += 1
                return pages

            s_bare, s_page, pages, resp = interleaved(bare, lambda: member.get("/calendar"),
                                                      args.runs)
            t_bare, t_page = statistics.median(s_bare), statistics.median(s_page)
            paired = statistics.median(p / b for p, b in zip(s_page, s_bare, strict=True))
            body = resp.content
            packed = gzip.compress(body, 6)
            print(f"events in the fortnight:   {args.events} ({rows} agenda rows; multi-day "
                  "events appear once per day)")
            print(f"graph pages per view:      {pages} (page size "
                  f"{gw.settings.graph.page_size})")
            print(f"bare Graph calls:          {spread(s_bare)}")
            print(f"GET /calendar:             {spread(s_page)}")
            print(f"ratio page / bare:         {t_page / t_bare:.2f} of the medians, "
                  f"{paired:.2f} median of the {args.runs} pairs (target <= 1.2)")
            print(f"page size:                 {len(body):,} bytes, gzip -6 "
                  f"{len(packed):,} bytes ({len(packed) / 1024:.1f} KB; target <= 25 KB)")
            graph.close()
        finally:
            loop.run(gw.server.stop())
            graph_loop.run(graph_server.stop())
            loop.run(stack.stop())
            graph_loop.close()
            loop.close()


def _tcp_sockets_for_runner() -> None:
    import socket

    from gateway.devstack import runner

    class TcpSocket(socket.socket):
        def __init__(self, family: int = -1, kind: int = -1, proto: int = -1,
                     fileno: int | None = None) -> None:
            if fileno is None and kind == socket.SOCK_STREAM and proto in (-1, 0):
                proto = socket.IPPROTO_TCP
            super().__init__(family, kind, proto, fileno)

    shim = type("socket_module", (), {name: getattr(socket, name) for name in dir(socket)
                                      if name.isupper()})
    shim.socket = TcpSocket  # type: ignore[attr-defined]
    runner.socket = shim  # type: ignore[attr-defined, assignment]  # a class as the module


def member_token(stack: DevStack) -> str:
    """A Graph token for the member, as the Entra stand-in would issue it."""
    from gateway.devstack.tokens import ACCESS_ISSUER, GRAPH_AUDIENCE
    u = user("member")
    now = int(time.time())
    return stack.signer.sign({"aud": GRAPH_AUDIENCE, "iss": ACCESS_ISSUER, "iat": now,
                              "nbf": now, "exp": now + 3600, "oid": u.oid,
                              "scp": "Calendars.ReadWrite", "upn": u.email})


if __name__ == "__main__":
    main()
