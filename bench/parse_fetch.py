"""CPU time of ``imap_fetch.parse_fetch`` on one message-list page: the response to
``FETCH 1:50 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)`` as aioimaplib
hands it over (``Response.lines``: literals as separate items, tagged text last).

    .venv/bin/python bench/parse_fetch.py [--runs 500] [--synthetic-only] [--page-items]

Two samples, each parsed ``--runs`` times after a warm-up, garbage collector on as in the
gateway; figures are µs per 50-message response (median, p10, p90) and per message:

* dovecot:   the real thing. Starts the dev stack (Dovecot with the 100 seeded messages of
             the sample member: plain, multipart/alternative, calendar invites, PDF and
             Office attachments, inline images, RFC 2047 subjects and names, RFC 2231
             filenames, a legacy charset, subjects sent as literals) and fetches 1:50 with a
             bare aioimaplib connection. About 2 s of set-up.
* dovecot, PAGE_ITEMS (with ``--page-items``): the same 50 messages fetched with the
             items a page really asks for (``mailbox.PAGE_ITEMS``: the summaries and the
             first 512 bytes of part 1 for the preview lines), one more literal each.
* synthetic: 50 generated messages fed through aioimaplib's own protocol class: every
             third one multipart/mixed with an alternative part, a PDF with an RFC 2231
             filename and an inline image; attached messages; Cc lists; subjects as literals
             and encoded words. No stack needed.

Each run parses a fresh page: nothing is cached from one call to the next except charset
and time zone look-ups (a few small, bounded tables).

Figures (2026-11-27 15:39, dev VM "vm", 2 vCPU AMD EPYC, Python 3.11.7, load avg 1.0, no
other process above 5 % CPU), n=500 each:

    before: this script run from a copy of the tree with imap_parse.py and mime.py as of
    5c2a411 (the byte-by-byte tokenizer)
      dovecot    median 7922 µs  p10 7756  p90  8299  (158 µs/message)
      synthetic  median 11944 µs p10 11657 p90 12409  (239 µs/message)
    after:
      dovecot    median 2476 µs  p10 2410  p90  2665  ( 50 µs/message)   3.2x
      synthetic  median 3789 µs  p10 3729  p90  3881  ( 76 µs/message)   3.2x
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SUMMARY_ITEMS, bare_connect, bench, header, other_load

from gateway.mail import imap_fetch
from gateway.mail.imap_fetch import parse_fetch
from gateway.mail.mailbox import PAGE_ITEMS

Lines = list[bytes | bytearray]


# --------------------------------------------------------------------------- samples

def dovecot_lines(items: str = SUMMARY_ITEMS) -> Lines:
    """Response.lines of FETCH 1:50 `items` from the dev stack's Dovecot (sample member's
    INBOX)."""
    with bench(seed_messages=100) as b:
        async def fetch() -> Lines:
            imap = await bare_connect(b.stack)
            try:
                await imap.select("INBOX")
                resp = await imap.protocol.fetch("1:50", items, by_uid=False,
                                                 timeout=60)
                if resp.result != "OK":
                    raise RuntimeError("FETCH failed")
                return list(resp.lines)
            finally:
                await asyncio.wait_for(imap.logout(), 5)
        lines: Lines = b.run(fetch())
    return lines


def _quoted_or_literal(text: bytes, literal: bool) -> bytes:
    return b"{%d}\r\n%s" % (len(text), text) if literal else b'"' + text + b'"'


def _address(name: bytes, mailbox: bytes, host: bytes) -> bytes:
    return b'("%s" NIL "%s" "%s")' % (name, mailbox, host) if name else (
        b'(NIL NIL "%s" "%s")' % (mailbox, host))


def _envelope(n: int, literal: bool) -> bytes:
    senders = [(b"Democratic Services", b"democratic.services", b"council.example"),
               (b"=?utf-8?q?Si=C3=A2n?= Roberts", b"sian.roberts", b"mail.example"),
               (b"Wales Councils Network", b"updates", b"newsletter.example"),
               (b"=?iso-8859-1?Q?H=E9l=E8ne_Le_Gall?=", b"helene.legall", b"jumelage.example")]
    name, mailbox, host = senders[n % len(senders)]
    sender = b"(" + _address(name, mailbox, host) + b")"
    to = b"(" + _address(b"Cllr Alex Morgan", b"alex.morgan", b"council.example") + b")"
    cc = (b"(" + b"".join(_address(b"Cllr %s" % who.title(), who, b"council.example")
                          for who in (b"megan.davies", b"rhys.owen", b"helen.carter")) + b")"
          if n % 4 == 0 else b"NIL")
    subject = (b"Agenda %d =?utf-8?b?4oCT?= papers for the meeting, \"draft\" version" % n
               if literal else b"Planning application 26/%03d/FUL =?utf-8?b?4oCT?= objection" % n)
    reply = b'"<%d.parent@council.example>"' % (n - 1) if n % 3 == 0 else b"NIL"
    return (b'("Wed, %02d Nov 2026 03:30:04 +0000" ' % (n % 28 + 1)
            + _quoted_or_literal(subject, literal)
            + b" " + sender + b" " + sender + b" " + sender + b" " + to + b" " + cc
            + b' NIL ' + reply + b' "<%d.msg@council.example>")' % n)


_TEXT = b'("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" %d %d NIL NIL NIL NIL)'
_HTML = b'("text" "html" ("charset" "utf-8") NIL NIL "base64" %d %d NIL NIL NIL NIL)'
_PDF = (b'("application" "pdf" ("name" "agenda.pdf") NIL NIL "base64" %d NIL ("attachment" '
        b'("filename*0*" "utf-8\'\'Agenda%%20%%E2%%80%%93%%20item" "filename*1" " %d.pdf")) '
        b'NIL NIL)')
_PNG = b'("image" "png" NIL "<crest@council.example>" NIL "base64" 174 NIL ("inline" NIL) NIL NIL)'


def _bodystructure(n: int) -> bytes:
    if n % 3 == 0:
        return (b"((" + _TEXT % (100 + n, 4) + _HTML % (1400 + n, 31)
                + b' "alternative" ("boundary" "b2") NIL NIL NIL)' + _PDF % (5000 + n, n) + _PNG
                + b' "mixed" ("boundary" "_000_OMNUWYLTFPBQW24DMMU7C6MA_") NIL NIL NIL)')
    if n % 3 == 1:
        return _TEXT % (120 + n, 5)
    inner = (b'("message" "rfc822" NIL NIL NIL "7bit" 900 ("Tue, 03 Nov 2026 10:00:00 +0000" '
             b'"Fwd: inner" NIL NIL NIL NIL NIL NIL NIL "<inner@x>") (' + _TEXT % (10, 1)
             + _PDF % (100, n) + b' "mixed") 20 NIL NIL NIL NIL)')
    return b"(" + _TEXT % (60, 2) + inner + b' "mixed" ("boundary" "b9") NIL NIL NIL)'


def synthetic_wire(count: int = 50) -> bytes:
    out = []
    for n in range(1, count + 1):
        flags = (b"\\Seen", b"\\Seen \\Answered", b"\\Flagged", b"")[n % 4]
        out.append(b"* %d FETCH (UID %d FLAGS (%s) INTERNALDATE \"%02d-Nov-2026 03:30:07 +0000\" "
                   b"RFC822.SIZE %d ENVELOPE " % (n, 1000 + n, flags, n % 28 + 1, 385 + 37 * n)
                   + _envelope(n, literal=n % 5 == 0) + b" BODYSTRUCTURE " + _bodystructure(n)
                   + b")\r\n")
    out.append(b"A1 OK Fetch completed.\r\n")
    return b"".join(out)


def synthetic_lines() -> Lines:
    """The synthetic page through aioimaplib 2.0.3's own protocol (as tests/mail does)."""
    from aioimaplib import aioimaplib

    async def feed() -> Lines:
        loop = asyncio.get_running_loop()
        proto = aioimaplib.IMAP4ClientProtocol(loop)
        proto.state = aioimaplib.SELECTED
        cmd = aioimaplib.FetchCommand("A1", "1:50", SUMMARY_ITEMS, loop=loop)
        proto.pending_async_commands[cmd.untagged_resp_name] = cmd
        proto.data_received(synthetic_wire())
        await asyncio.wait_for(cmd.wait(), 5)
        return list(cmd.response.lines)
    return asyncio.run(feed())


# --------------------------------------------------------------------------- timing

def measure(name: str, lines: Lines, runs: int, warmup: int) -> float:
    parsed = parse_fetch(lines)
    if len(parsed) != 50 or any(m.envelope is None or m.bodystructure is None for m in parsed):
        raise RuntimeError(f"{name}: expected 50 complete messages, parsed {len(parsed)}")
    literals = sum(isinstance(item, bytearray) for item in lines)
    for _ in range(warmup):
        parse_fetch(lines)
    gc.collect()
    samples = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        parse_fetch(lines)
        samples.append((time.perf_counter_ns() - started) / 1000)
    samples.sort()
    median = statistics.median(samples)
    size = sum(len(item) for item in lines)
    print(f"{name:<10} median {median:7.0f} µs  p10 {samples[len(samples) // 10]:7.0f}  "
          f"p90 {samples[len(samples) * 9 // 10]:7.0f}  ({median / 50:4.0f} µs/message; "
          f"{len(lines)} items, {literals} literals, {size / 1024:.0f} KiB; n={runs})")
    sys.stdout.flush()
    return median


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--synthetic-only", action="store_true", help="skip the Dovecot sample")
    ap.add_argument("--page-items", action="store_true",
                    help="also parse the Dovecot page fetched with mailbox.PAGE_ITEMS")
    args = ap.parse_args()
    header("parse_fetch: µs per 50-message FETCH response", sys.argv)
    print(f"parser: {imap_fetch.__file__}")
    if not args.synthetic_only:
        measure("dovecot", dovecot_lines(), args.runs, args.warmup)
        if args.page_items:
            measure("dovecot, PAGE_ITEMS", dovecot_lines(PAGE_ITEMS), args.runs, args.warmup)
    measure("synthetic", synthetic_lines(), args.runs, args.warmup)
    print(f"other CPU users at end: {other_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
