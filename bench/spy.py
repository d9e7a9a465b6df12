"""py-spy for the benchmarks: find it, record a process while a load runs (``spying``), and
summarise the collapsed stacks it wrote by component (``summarise``): the share of samples
billed to the gateway's parts (template, IMAP parser, TLS, gzip, ...), the functions seen on
the stack, and the top functions by own time. Used by ``cpu_per_page.py --profile`` and
``inbox_latency.py --profile``.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Components for the profile summary, by the file of the sampled frame nearest the leaf that
# matches one (first match wins, so gateway code calling the standard library is billed to
# what it called only when nothing nearer the leaf is named here).
COMPONENTS: list[tuple[str, str]] = [
    ("gzip", r"/gzip\.py|zlib|starlette/middleware/gzip"),
    ("TLS", r"/ssl\.py|sslproto"),
    ("template (jinja2, markupsafe)", r"jinja2/|markupsafe/|<template>|templates/"),
    ("view models", r"gateway/web/mailviews|gateway/web/render"),
    ("imap_parse", r"gateway/mail/imap_(fetch|mailboxes|tokens)|gateway/mail/headers"),
    ("aioimaplib", r"aioimaplib/"),
    ("IMAP logic (mailbox, imap, reader, session)",
     r"gateway/mail/(mailbox|imap|imap_login|imap_pool|imap_turns|reader|session|mime|"
     r"sanitize|structure|parts)\.py"),
    ("calendar (graph adapter, model, view)", r"gateway/calendar/|gateway/web/calendar"),
    ("httpx/httpcore (Graph client)", r"httpx/|httpcore/|h11/|anyio/"),
    ("session lookup + store", r"gateway/auth/sessions|gateway/store/|sqlite3|aiosqlite"),
    ("middleware (gateway)", r"gateway/web/middleware|gateway/web/security|gateway/auth/"),
    ("starlette", r"starlette/"),
    ("uvicorn", r"uvicorn/"),
    ("event loop (asyncio)", r"asyncio/|selectors\.py|uvloop"),
    ("dev stack (stand-ins)", r"gateway/devstack/"),
    ("other gateway", r"gateway/"),
    ("bench's HTTP client (rawhttp)", r"bench/rawhttp"),
    ("bench's bare script", r"bench/common"),
]
WATCH = ("render", "parse_fetch", "fetch_page", "load_or_expired", "list_folders",
         "get_template", "compress", "_fetch_response", "calendar_page")
FRAME = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")


def summarise(raw: Path, top: int = 12) -> list[str]:
    """Shares of the samples in a py-spy raw (collapsed) file."""
    comp: Counter[str] = Counter()
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    patterns = [(name, re.compile(p)) for name, p in COMPONENTS]
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [FRAME.match(f) for f in stack.split(";")]
        parsed = [(m.group(1), m.group(2)) if m else (f, "") for m, f in
                  zip(frames, stack.split(";"), strict=True)]
        total += n
        if parsed:
            fn, path = parsed[-1]
            own[f"{fn} ({_short(path)})"] += n
        name = "other (stdlib, C)"
        for _fn, path in reversed(parsed):
            hit = next((c for c, p in patterns if p.search(path)), None)
            if hit:
                name = hit
                break
        comp[name] += n
        seen = {fn for fn, _ in parsed}
        for w in WATCH:
            if w in seen:
                incl[w] += n
    if not total:
        return ["  (no samples)"]
    out = [f"  {total} samples"]
    out.append("  by component (own time of the nearest named frame):")
    out += [f"    {100 * n / total:5.1f} %  {c}" for c, n in comp.most_common()]
    out.append("  including callees (share of samples with the function on the stack):")
    out += [f"    {100 * n / total:5.1f} %  {w}" for w, n in incl.most_common()]
    out.append(f"  top {top} functions by own time:")
    out += [f"    {100 * n / total:5.1f} %  {f}" for f, n in own.most_common(top)]
    return out


def _short(path: str) -> str:
    for mark in ("site-packages/", "/gateway/", "python3.11/"):
        if mark in path:
            return ("gateway/" if mark == "/gateway/" else "") + path.split(mark, 1)[1]
    return path


def pyspy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


@contextmanager
def spying(spy: str, pid: int, rate: int, out: Path) -> Iterator[bool]:
    """py-spy records ``pid`` into ``out`` (raw, collapsed stacks) for the ``with`` body.
    Yields False (and prints why) when py-spy could not attach.

    Only samples holding the GIL are kept (``--gil``). Without it every thread not idle is
    sampled, and in a profile of cold pages so made (2026-12-07) socket writes and connects
    to Dovecot had 17.5 % and 4.6 % of the samples: most likely time in which Dovecot, woken
    by the write on the other core or this one, ran instead. The process's own CPU is read
    from its clock (inbox_latency.py, cpu_per_page.py)."""
    cmd = [spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--gil",
           "--output", str(out), "--nonblocking"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)                          # py-spy attaching
    if proc.poll() is not None:
        err = proc.stderr.read().decode(errors="replace")[-300:] if proc.stderr else ""
        print(f"\nprofile {out.stem}: py-spy exited: {err}")
        yield False
        return
    try:
        yield True
    finally:
        proc.send_signal(signal.SIGINT)      # py-spy writes its file and exits
        proc.wait(30)
