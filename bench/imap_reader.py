"""CPU time of the IMAP client's reader (``data_received``: received bytes cut into lines,
literals and answers, handed to the pending command), the gateway's
(``gateway.mail.imap_protocol._Protocol``) against aioimaplib's own, and against the
gateway's protocol with aioimaplib's reader (as it was before its own), on the same bytes.

    .venv/bin/python bench/imap_reader.py [--runs 300]

Samples, each fed to a fresh protocol with its command pending, ``--runs`` times after a
warm-up; figures are µs per answer (median, p10, p90):

* fetch page:  the synthetic 50-message summary page of ``bench/parse_fetch.py`` (46 KiB),
               in one chunk and in 16 KiB chunks (TLS records);
* LIST of n:   the folder list of a mailbox of n folders in one chunk (a read of a busy
               loop). aioimaplib's reader calls itself once per line, so from about 990
               lines in one chunk it raises RecursionError; that is printed, not timed.

No stack needed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aioimaplib import aioimaplib
from common import header, other_load
from parse_fetch import synthetic_wire

from gateway.mail.imap_protocol import _Protocol


class _WithStockReader(_Protocol):
    """The gateway's protocol with aioimaplib's reader, as it was before it had its own (its
    ``data_received`` already skipped aioimaplib's eager debug formatting)."""

    _handle_responses = aioimaplib.IMAP4ClientProtocol._handle_responses


def _feed(protocol_class: Any, name: str, chunks: list[bytes]) -> float:
    """Seconds to feed ``chunks`` to a fresh protocol with a ``name`` command pending."""
    loop = asyncio.new_event_loop()
    try:
        protocol = protocol_class(loop)
        protocol.state = aioimaplib.SELECTED
        cmd = (aioimaplib.FetchCommand("A1", "1:50", "(UID)", loop=loop, timeout=None)
               if name == "FETCH" else aioimaplib.Command(name, "A1", loop=loop, timeout=None))
        protocol.pending_async_commands[cmd.untagged_resp_name] = cmd
        started = time.perf_counter()
        for chunk in chunks:
            protocol.data_received(chunk)
        took = time.perf_counter() - started
        if cmd.response.result != "OK":
            raise RuntimeError(f"{name} did not complete")
        return took
    finally:
        loop.close()


def measure(label: str, name: str, chunks: list[bytes], runs: int) -> None:
    for protocol_class, who in ((aioimaplib.IMAP4ClientProtocol, "aioimaplib"),
                                (_WithStockReader, "gateway, aioimaplib's reader"),
                                (_Protocol, "gateway")):
        try:
            for _ in range(max(5, runs // 10)):
                _feed(protocol_class, name, chunks)
        except RecursionError:
            print(f"{label:<30} {who:<29} RecursionError")
            continue
        samples = sorted(_feed(protocol_class, name, chunks) * 1e6 for _ in range(runs))
        print(f"{label:<30} {who:<29} median {statistics.median(samples):8.0f} µs  "
              f"p10 {samples[len(samples) // 10]:8.0f}  p90 {samples[len(samples) * 9 // 10]:8.0f}"
              f"  n={runs}")
        sys.stdout.flush()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()
    header("IMAP reader: µs per answer, gateway vs aioimaplib", sys.argv)
    page = synthetic_wire()
    measure(f"fetch page, {len(page) // 1024} KiB, 1 chunk", "FETCH", [page], args.runs)
    measure("fetch page, 16 KiB chunks", "FETCH",
            [page[i:i + 16384] for i in range(0, len(page), 16384)], args.runs)
    for n in (200, 900, 5000):
        wire = b"".join(b'* LIST (\\HasNoChildren) "/" "Case %d"\r\n' % i for i in range(n))
        measure(f"LIST of {n}, 1 chunk", "LIST", [wire + b"A1 OK List completed.\r\n"],
                args.runs)
    print(f"other CPU users at end: {other_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
