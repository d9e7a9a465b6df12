"""Making, signing and checking an evidence file: what ``gateway evidence export|verify`` and
the admin page share.

    report = await make_report(settings, store, signer, since=..., until=..., now=...)
    data = render(report, "html", name="r.html")
    write_signed(Path("r.html"), data, signer)          # r.html and r.html.sig
    ok, why = verify_file(Path("r.html"), signer.public)

Making a report first takes the day's audit checkpoint (if the chain verifies), so the head
hash signed into the report is also pinned in the store and the checkpoint file.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.config import Settings
from gateway.errors import BadRequest
from gateway.evidence.checkpoint import check_chain, take_checkpoint
from gateway.evidence.report import Report, build_report
from gateway.evidence.signing import SIG_SUFFIX, Signer, checkpoint_path, store_id, verify
from gateway.store.base import Store
from gateway.switch.machine import parse_time

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhdw])$")
_UNIT = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_DAYS = 800


def parse_period(since: str | None, until: str | None, now: float, tz: str,
                 default_days: float = 7) -> tuple[float, float]:
    """``--since 1h`` / ``7d`` mean that long before now; otherwise ISO 8601 (without an
    offset: in the council's zone). ``until`` defaults to now."""
    def when(text: str) -> float:
        m = _AGO.match(text.strip().lower())
        if m:
            return now - float(m.group(1)) * _UNIT[m.group(2)]
        return parse_time(text, now, tz)

    end = when(until) if until else now
    start = when(since) if since else end - default_days * 86400
    if start >= end:
        raise BadRequest("The period is empty: --since must be before --until.")
    if end - start > MAX_DAYS * 86400:
        raise BadRequest(f"The period is longer than {MAX_DAYS} days; ask for less.")
    return start, end


async def make_report(settings: Settings, store: Store, signer: Signer, *, since: float,
                      until: float, now: float,
                      clock: Callable[[], float] = time.time) -> Report:
    file, sid = str(checkpoint_path(settings)), store_id(settings)
    await take_checkpoint(store, signer, clock, file, sid)
    chain = await check_chain(store, signer, file, sid)
    return await build_report(
        store, chain, since=since, until=until, now=now, tz=settings.general.timezone,
        service=settings.health.service_id, public_url=settings.public_url,
        key_fingerprint=signer.fingerprint(), raw_days=settings.health.history_raw_days)


def sig_path(path: Path) -> Path:
    return path.with_name(path.name + SIG_SUFFIX)


def write_signed(path: Path, data: bytes, signer: Signer) -> Path:
    """Write ``data`` to ``path`` and its detached raw Ed25519 signature beside it."""
    path.write_bytes(data)
    sig = sig_path(path)
    sig.write_bytes(signer.sign(data))
    os.chmod(sig, 0o644)
    return sig


def verify_file(path: Path, public: Ed25519PublicKey,
                signature: Path | None = None) -> tuple[bool, str]:
    sig = signature or sig_path(path)
    if not path.is_file():
        return False, f"{path}: no such file"
    if not sig.is_file():
        return False, f"{sig}: no signature file beside the report"
    raw = sig.read_bytes()
    if len(raw) != 64:
        return False, f"{sig}: not an Ed25519 signature (64 bytes expected, {len(raw)} found)"
    if verify(public, path.read_bytes(), raw):
        return True, f"{path}: signature valid (Ed25519)"
    return False, f"{path}: signature does NOT match: the file was changed or signed by " \
                  "another key"
