"""Inbox page: the gateway's request time against the same data fetched by a bare aioimaplib
script from the same Dovecot, side by side in one run (issue 3). Target: at most 1.2x.

    .venv/bin/python bench/inbox_latency.py [--runs 60] [--exchange] [--exchange-proxy]
                                            [--link-rtt-ms 10 --link-mbit 100]
                                            [--profile DIR [--profile-pages 200]]

Starts the dev stack (Entra stand-in, Dovecot, SMTP; 100 seeded messages per mailbox) and a
gateway in a background loop thread, signs the sample member in once (no browser), then
interleaves, run after run:

* gateway, cold:   the member's pooled IMAP connection is closed first, so ``GET /`` pays
                   for token lookup, connect, TLS, XOAUTH2 (and CAPABILITY where the
                   login's answer carries none), folder list, SELECT and FETCH, parse and
                   render;
* bare, cold:      aioimaplib: connect (TLS), XOAUTH2, SELECT INBOX, FETCH newest 50 with
                   the gateway's summary items (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE
                   BODYSTRUCTURE). The gateway asks for the first 512 bytes of part 1 as
                   well (``mailbox.PAGE_ITEMS``, its preview lines), which the bare
                   script leaves out: the baseline does less than the gateway;
* gateway, steady: ``GET /`` again, the IMAP connection already open (the normal case);
* bare, steady:    SELECT + FETCH on an already open, logged-in connection;
* gateway, reconnect: the pooled connection is ended from the server's side (as Exchange
                   does when a token expires, or after 30 minutes of IDLE) but the member's
                   slot, with the summaries parsed so far, is kept, so ``GET /`` pays for
                   connect, login, folder list, SELECT and a UID FLAGS FETCH only. This is
                   not the cold target (the first page after sign-in), which pays for the
                   parse as well: it is printed against bare cold for comparison.

Gateway times are measured by ``bench/rawhttp.py`` (one kept-alive TLS connection with the
member's cookies, status and whole body read; see that module for why not httpx) inside the
loop, as the bare times are; ``--client httpx`` measures with an httpx client in the main
thread instead, whose own CPU (about 1 ms a page) then shares the process with the gateway.
Then where a cold page's time goes: a series of cold gateway pages and one of bare cold
pages, each with its wall time, this process's CPU (the gateway, or the bare script) and
Dovecot's CPU; with ``--profile DIR``, py-spy profiles of both series
(``DIR/cold.txt``, ``DIR/bare-cold.txt``) summarised by component (``bench/spy.py``).
Then the floor under a cold page: the cold page's IMAP conversation and the bare script's,
recorded once and replayed by a client that parses nothing (``bench/replay.py``), timed in
turns with the two cold pages, so what the conversations alone take at Dovecot and on the
wire is set beside what the gateway and the bare script take around them.
Then a breakdown of the gateway's IMAP work with its own functions, a check that a
steady-state page shows mail delivered since the last page, and the first page after
sign-in (whose IMAP work the callback begins) against a cold page of the same client, with
no turn-around between the callback and the GET and with ``--turnaround-ms`` (40: a mobile
network's round trip, in which the callback's work goes on).

With ``--link-rtt-ms`` the gateway and the bare script both reach Dovecot (or, with
``--exchange-proxy``, the Exchange proxy in front of it) through ``bench/link.py``: a relay
with that round trip and ``--link-mbit`` of bandwidth, so answers arrive spread out in
segments, as across a network, rather than in one piece. The targets are set on loopback;
this shows how the same work compares across a link.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BARE_LOGIN_STALLS,
    Bench,
    Stats,
    bare_cold,
    bare_connect,
    bare_warm,
    bench,
    group_cpu,
    header,
    other_load,
    ratio_line,
)
from link import LinkProcess
from rawhttp import RawClient
from replay import Conversation, recording
from spy import pyspy, spying, summarise

from gateway.devstack.mailserver import outlook_access_token
from gateway.devstack.users import user
from gateway.mail import mailbox
from gateway.mail.imap_fetch import parse_fetch
from gateway.mail.imap_login import open_connection
from tests.conftest import sign_in


async def breakdown(svc: object, account_id: str, email: str, runs: int) -> dict[str, Stats]:
    """Time the pieces of a cold and a steady page with the gateway's own functions."""
    pool = svc.imap_pool  # type: ignore[attr-defined]
    entra = svc.entra  # type: ignore[attr-defined]
    out = {k: Stats(k, []) for k in ("token (entra.imap_token)", "open_connection",
                                     "list_folders (LIST + STATUS each)",
                                     "fetch_page with SELECT", "fetch_page, already selected",
                                     "  of which FETCH round trip (aioimaplib)",
                                     "  of which parse_fetch (50 items)",
                                     "  of which SELECT",
                                     "  of which preview lines (the rest)")}
    for _ in range(runs):
        t = time.perf_counter()
        token = await entra.imap_token(account_id)
        out["token (entra.imap_token)"].samples.append(time.perf_counter() - t)
        t = time.perf_counter()
        conn = await open_connection(pool.target, email, token)
        out["open_connection"].samples.append(time.perf_counter() - t)
        try:
            t = time.perf_counter()
            await mailbox.list_folders(conn)
            out["list_folders (LIST + STATUS each)"].samples.append(time.perf_counter() - t)
            t = time.perf_counter()
            await mailbox.fetch_page(conn, "INBOX")
            out["fetch_page with SELECT"].samples.append(time.perf_counter() - t)
            t = time.perf_counter()
            await mailbox.fetch_page(conn, "INBOX")
            out["fetch_page, already selected"].samples.append(time.perf_counter() - t)
            lo = max(1, conn.exists - mailbox.PER_PAGE + 1)
            t = time.perf_counter()
            resp = await conn.client.protocol.fetch(f"{lo}:{conn.exists}", mailbox.PAGE_ITEMS,
                                                    by_uid=False, timeout=conn.timeout)
            out["  of which FETCH round trip (aioimaplib)"].samples.append(
                time.perf_counter() - t)
            t = time.perf_counter()
            items = parse_fetch(resp.lines)
            out["  of which parse_fetch (50 items)"].samples.append(time.perf_counter() - t)
            conn.selected = None
            t = time.perf_counter()
            await conn.select(mailbox.mailbox_arg("INBOX"), readonly=True)
            out["  of which SELECT"].samples.append(time.perf_counter() - t)
            t = time.perf_counter()
            await mailbox._previews(conn, items)
            out["  of which preview lines (the rest)"].samples.append(time.perf_counter() - t)
        finally:
            await conn.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--turnaround-ms", type=float, default=40.0,
                    help="the browser's turn-around after the sign-in 303 (a mobile round trip)")
    ap.add_argument("--exchange", action="store_true",
                    help="Dovecot advertises only what Exchange Online does")
    ap.add_argument("--exchange-proxy", action="store_true",
                    help="IMAP through the dev stack's Exchange proxy (Exchange's greeting and "
                         "login answer, without capabilities: gateway.devstack.exchange_imap)")
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw",
                    help="the HTTP client timing the gateway's pages: bench/rawhttp.py in the "
                         "loop (default) or httpx in the main thread")
    ap.add_argument("--link-rtt-ms", type=float, default=0.0,
                    help="reach IMAP through a link of this round trip (bench/link.py)")
    ap.add_argument("--link-mbit", type=float, default=100.0,
                    help="the link's bandwidth in Mbit/s (with --link-rtt-ms)")
    ap.add_argument("--profile", type=Path, default=None, metavar="DIR",
                    help="then py-spy this process over --profile-pages gateway cold pages, "
                         "and as many bare cold pages, into DIR/cold.txt and DIR/bare-cold.txt")
    ap.add_argument("--profile-pages", type=int, default=200)
    ap.add_argument("--rate", type=int, default=1000, help="py-spy samples a second")
    args = ap.parse_args()
    header("Inbox page latency: gateway vs bare aioimaplib", sys.argv)

    with contextlib.ExitStack() as held, bench(seed_messages=100, exchange=args.exchange,
                                                exchange_proxy=args.exchange_proxy) as b:
        port = 0
        if args.link_rtt_ms:
            assert b.stack.mail is not None
            port = held.enter_context(LinkProcess(b.stack.mail.host, b.stack.mail.imap_port,
                                                  args.link_rtt_ms, args.link_mbit)).port
            print(f"IMAP through a link of {args.link_rtt_ms:g} ms round trip and "
                  f"{args.link_mbit:g} Mbit/s (bench/link.py, its own process)")
        gw = b.gateway(**({"imap__port": port} if port else {}))
        client = sign_in(gw, "member")
        svc = gw.app.state.gateway.services
        pool = svc.imap_pool
        first = client.get("/")
        assert first.status_code == 200, first.status_code
        session_id = next(iter(pool._slots))
        bare_imap = b.run(bare_connect(b.stack, port=port))
        raw = RawClient(gw.url, b.ssl(), client.cookies) if args.client == "raw" else None
        if raw is not None and b.run(raw.get("/", check=b"Inbox")) != 200:
            raise RuntimeError("the inbox did not open with the raw client")

        def page() -> float:
            """Seconds for one ``GET /`` of the inbox, whole body read."""
            if raw is not None:
                return float(b.run(_timed(raw)))
            t = time.perf_counter()
            r = client.get("/")
            dt = time.perf_counter() - t
            assert r.status_code == 200, r.status_code
            return dt

        stats = {k: Stats(k, []) for k in ("gateway cold (new IMAP connection)", "bare cold",
                                           "gateway steady (IMAP connection open)",
                                           "bare steady (SELECT+FETCH, open connection)",
                                           "gateway reconnect (summaries kept)")}

        async def end_connection() -> None:
            """End the pooled IMAP connection as a server would, keeping the slot."""
            conn = pool._slots[session_id].conn
            conn.client.protocol.transport.close()
            await asyncio.wait_for(conn.lost.wait(), 5)

        def one(record: bool) -> None:
            b.run(pool.drop(session_id))
            dt = page()
            bc = b.run(bare_cold(b.stack, port=port))
            ds = page()
            bw = b.run(bare_warm(bare_imap))
            b.run(end_connection())
            dr = page()
            if record:
                for k, v in zip(stats, (dt, bc, ds, bw, dr), strict=True):
                    stats[k].samples.append(v)

        for _ in range(args.warmup):
            one(False)
        for _ in range(args.runs):
            one(True)
        page_bytes = len(client.get("/").content)

        print(f"\ngateway pages timed by: {args.client}")
        print(f"INBOX of {user('member').email}: {b.stack.summary and 'seeded'}; "
              f"page {page_bytes} bytes of HTML (uncompressed)")
        for s in stats.values():
            print(s.line())
        vals = list(stats.values())
        print(ratio_line("cold: gateway / bare", vals[0], vals[1], 1.2))
        print(ratio_line("steady: gateway / bare steady", vals[2], vals[3], 1.2))
        print(ratio_line("steady gateway / bare cold", vals[2], vals[1], 1.2))
        print(ratio_line("reconnect / bare cold (not the cold target)", vals[4],
                         vals[1], 1.2))

        pages = cold_pages(b, pool, session_id, page, port)
        assert b.stack.mail._dovecot is not None
        cold_cpu(b.stack.mail._dovecot.pid, args.runs, pages)
        conversation_floor(b, pages, port, args.runs)
        if args.profile is not None:
            profile_cold(args, pages)

        account_id = b.run(svc.store.list_sessions())[0].account_id
        print("\nBreakdown of the gateway's IMAP work (its own functions, inside the loop):")
        for s in b.run(breakdown(svc, account_id, user("member").email, max(10, args.runs // 3)
                                 )).values():
            print(s.line())

        # Freshness: does a steady-state page show mail delivered since the last one?
        client.get("/")
        assert b.stack.mail is not None
        marker = f"Freshness check {time.time():.0f}"
        b.stack.mail.deliver(user("member").email,
                             (f"From: Bench <bench@council.example>\r\nTo: "
                              f"{user('member').email}\r\nSubject: {marker}\r\n\r\nhello\r\n"
                              ).encode())
        time.sleep(0.5)
        steady = marker in client.get("/").text
        b.run(pool.drop(session_id))
        fresh = marker in client.get("/").text
        print(f"\nNew message visible on the next page: steady connection {steady}; "
              f"after reconnect {fresh}")
        # The first page after sign-in: the callback begins its IMAP work (ImapPool.warm)
        # before the browser asks for it. Timed with one httpx client per sign-in against a
        # cold page of the same client (its slot dropped), in turns; from the GET to the
        # whole body, after no turn-around (loopback) and after --turnaround-ms (the
        # browser receiving the 303 and sending its GET over a mobile network).
        waits = (0.0, args.turnaround_ms / 1000)
        first_page = {(k, w): Stats(f"GET / {k}, {w * 1000:.0f} ms turn-around", [])
                      for w in waits for k in ("after the callback", "cold, same client")}
        for _ in range(max(10, args.runs // 3)):
            for wait in waits:
                b.run(pool.drop(session_id))
                fresh_client = sign_in(gw, "member")
                for key in ("after the callback", "cold, same client"):
                    time.sleep(wait)
                    t = time.perf_counter()
                    r = fresh_client.get("/")
                    first_page[key, wait].samples.append(time.perf_counter() - t)
                    assert r.status_code == 200, r.status_code
                    b.run(pool.drop(session_id))
                fresh_client.close()
        print("\nFirst page after sign-in (the callback's 303, the turn-around, GET /; httpx):")
        for s in first_page.values():
            print(s.line())
        for wait in waits:
            after, cold = first_page["after the callback", wait], first_page["cold, same client",
                                                                          wait]
            print(f"{f'after sign-in / cold, {wait * 1000:.0f} ms turn-around':<46} "
                  f"{after.median / cold.median:5.2f}x")
        b.run(_close(bare_imap))
        if raw is not None:
            b.run(raw.close())
    print(f"bare logins that stalled and were timed again: {len(BARE_LOGIN_STALLS)}")
    print(f"other CPU users at end: {other_load()}")
    return 0


def cold_pages(b: Bench, pool: object, session_id: str, page: Callable[[], float],
               port: int) -> dict[str, Callable[[], object]]:
    """One cold page of each side, untimed: the gateway's (its slot dropped first) and the
    bare script's, with a token and TLS context made once, as the gateway keeps its own, so
    that the CPU of whole calls is the page's."""
    assert b.stack.mail is not None
    token = outlook_access_token(b.stack.mail.signer, user("member"))
    context = b.stack.mail.client_ssl_context()

    def gateway_cold() -> float:
        b.run(pool.drop(session_id))  # type: ignore[attr-defined]
        return page()

    return {"gateway cold": gateway_cold,
            "bare cold": lambda: b.run(bare_cold(b.stack, port=port, token=token,
                                                 ssl_context=context))}


def cold_cpu(dovecot: int, runs: int, pages: dict[str, Callable[[], object]]) -> None:
    """CPU of a cold page: ``runs`` gateway cold pages in a row, then as many bare cold pages,
    each series timed whole: this process's CPU (the gateway and its HTTP client, or the
    bare script; read from a clock, so exact) and Dovecot's (its process group, the
    processes of ended connections included; read in /proc's 10 ms ticks, so exact only over
    many pages, hence whole series), against the wall time. With two cores the two run at
    once, so their sum can pass the wall time."""
    print(f"\nWhere a cold page's time goes ({runs} pages of each in a row, means):")
    print(f"{'':<16} {'wall':>9} {'this process':>13} {'Dovecot':>9}  (CPU)")
    rows = {}
    for side, fn in pages.items():
        fn()   # the series starts and ends with the same connections open
        w0, c0, d0 = time.perf_counter(), time.process_time(), group_cpu(dovecot)
        for _ in range(runs):
            fn()
        rows[side] = ((time.perf_counter() - w0) / runs, (time.process_time() - c0) / runs,
                      (group_cpu(dovecot) - d0) / runs)
    (gw, gc, gd), (bw, bc, bd) = rows["gateway cold"], rows["bare cold"]
    rows["gateway - bare"] = (gw - bw, gc - bc, gd - bd)
    for side, (w, c, d) in rows.items():
        print(f"{side:<16} {1000 * w:9.2f} {1000 * c:13.2f} {1000 * d:9.2f}  ms")


def conversation_floor(b: Bench, pages: dict[str, Callable[[], object]], port: int,
                       runs: int) -> None:
    """The cold page's IMAP conversation, and the bare script's, each recorded once and then
    replayed by ``bench/replay.py``'s client, which parses nothing, interleaved with the two
    cold pages themselves: what Dovecot and the connection alone take for each conversation,
    so a floor under the cold page that no faster parse or render can go below."""
    mail = b.stack.mail
    assert mail is not None
    found = {}
    for side, fn in pages.items():
        with recording() as talks:
            fn()
        found[side] = Conversation.of(talks)
    token = outlook_access_token(mail.signer, user("member"))
    context = mail.client_ssl_context()
    host, imap_port = mail.host, port or mail.imap_port

    def replayer(talk: Conversation) -> Callable[[], float]:
        return lambda: float(b.run(talk.replay(host, imap_port, context, user("member").email,
                                               token)))

    timed = {"gateway cold page": pages["gateway cold"], "bare cold": pages["bare cold"],
             "replay: the page's IMAP": replayer(found["gateway cold"]),
             "replay: the bare script's IMAP": replayer(found["bare cold"])}
    stats = {k: Stats(k, []) for k in timed}
    cpu = dict.fromkeys(timed, 0.0)   # this process's CPU in each, summed
    for _ in range(runs):
        for name, fn in timed.items():
            c0 = time.process_time()
            stats[name].samples.append(float(fn()))  # type: ignore[arg-type]
            cpu[name] += time.process_time() - c0
    print("\nThe IMAP conversations alone, replayed by a client that parses nothing "
          "(bench/replay.py):")
    for side, talk in found.items():
        print(f"  {side}, after login, {len(talk.turns)} turns: {'; '.join(talk.commands)}")
    for s in stats.values():
        print(f"{s.line()}   CPU {1000 * cpu[s.name] / runs:5.2f} ms")
    vals = list(stats.values())
    print(ratio_line("the page's IMAP replayed / bare cold", vals[2], vals[1], 1.2))
    for label, a, c in (("the page's IMAP / the bare script's, replayed", vals[2], vals[3]),
                        ("gateway cold page / its IMAP replayed", vals[0], vals[2])):
        print(f"{label:<46} {a.median / c.median:5.2f}x")


def profile_cold(args: argparse.Namespace, pages: dict[str, Callable[[], object]]) -> None:
    """py-spy on this process (samples holding the GIL: Python code, and C called without
    releasing it; not OpenSSL's handshake or socket calls) over cold gateway pages, then
    over bare cold pages, summarised by component as cpu_per_page.py does. The gateway and
    its HTTP client share the loop thread, so the client (rawhttp) is in the first profile."""
    spy = pyspy()
    if spy is None:
        print("\nprofile: py-spy not found")
        return
    args.profile.mkdir(parents=True, exist_ok=True)

    for side, fn in pages.items():
        name = side.replace("gateway ", "").replace(" ", "-")   # cold, bare-cold
        out = args.profile / f"{name}.txt"
        with spying(spy, os.getpid(), args.rate, out) as ready:
            if not ready:
                continue
            for _ in range(args.profile_pages):
                fn()
        print(f"\nprofile {name} ({args.profile_pages} pages, py-spy {args.rate} Hz, "
              f"GIL held; {out}):")
        print("\n".join(summarise(out)) if out.exists() else "  (no output)")


async def _timed(raw: RawClient) -> float:
    t = time.perf_counter()
    status = await raw.get("/")
    dt = time.perf_counter() - t
    if status != 200:
        raise RuntimeError(f"the inbox answered {status}")
    return dt


async def _close(imap: object) -> None:
    try:
        await asyncio.wait_for(imap.logout(), 5)  # type: ignore[attr-defined]
    except Exception:  # noqa: S110
        pass


if __name__ == "__main__":
    sys.exit(main())
