"""Signed daily checkpoints of the audit chain, and the full check ``gateway audit verify``
runs.

The hash chain (``gateway.switch.audit``) shows an entry altered, removed or inserted in the middle,
but a chain re-hashed from an edited entry onwards, or cut at its tail, is again a valid
chain. A checkpoint pins it: once a day (and with every evidence report) the number of
entries and the head hash are signed with the evidence key and kept twice, in the store and
appended to ``evidence.checkpoint_file`` outside it. ``check_chain`` then fails when:

- the chain itself does not verify (edit, delete, insert: ``verify_rows``);
- a checkpoint counts more entries than the chain has (the tail was cut);
- entry ``seq`` of a checkpoint no longer has the hash it had (re-chained after an edit);
- a checkpoint's signature does not verify (forged), or one in the file is missing from the
  store (deleted to hide a cut).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.evidence.signing import Signer, verify_b64
from gateway.store.base import AuditRow, Store
from gateway.store.evidence import AuditCheckpoint, checkpoint_message
from gateway.switch.audit import verify_rows

log = logging.getLogger(__name__)


@dataclass
class ChainCheck:
    ok: bool
    entries: int
    head: str
    checkpoints: int
    problems: list[str] = field(default_factory=list)

    def text(self) -> str:
        if self.ok:
            return (f"audit chain intact: {self.entries} entries, head {self.head}; "
                    f"{self.checkpoints} signed checkpoints agree")
        sep = " " if self.problems and self.problems[0].startswith("at entry") else ": "
        return "audit chain BROKEN" + sep + "; ".join(self.problems)


def sign_checkpoint(signer: Signer, day: str, seq: int, head: str, at: float) -> AuditCheckpoint:
    return AuditCheckpoint(day, seq, head, at,
                           signer.sign_b64(checkpoint_message(day, seq, head, at)))


def _file_checkpoints(path: str, store_id: str = "") -> list[AuditCheckpoint]:
    p = Path(path) if path else None
    if p is None or not p.exists():
        return []
    out = []
    for line in p.read_text().splitlines():
        try:
            d = json.loads(line)
            if store_id and d.get("store", store_id) != store_id:
                continue
            out.append(AuditCheckpoint(str(d["day"]), int(d["seq"]), str(d["head"]),
                                       float(d["at"]), str(d["signature"])))
        except (ValueError, KeyError, TypeError):
            out.append(AuditCheckpoint("?", 0, "", 0.0, ""))   # unreadable: reported below
    return out


async def take_checkpoint(store: Store, signer: Signer, clock: Callable[[], float],
                          file: str = "", store_id: str = "") -> AuditCheckpoint | None:
    """Today's checkpoint, if there is none yet and the chain verifies (a broken chain is
    never blessed). Returns the new checkpoint, or None."""
    rows = await store.audit_rows()
    verdict = verify_rows(rows)
    if not verdict.ok:
        log.error("audit checkpoint not taken: %s", verdict.text())
        return None
    now = clock()
    day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    cp = sign_checkpoint(signer, day, verdict.entries, verdict.head, now)
    if not await store.checkpoint_put(cp):
        return None
    if file:
        p = Path(file)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("a") as fh:
            fh.write(json.dumps({"day": cp.day, "seq": cp.seq, "head": cp.head, "at": cp.at,
                                 "signature": cp.signature, "store": store_id}) + "\n")
    log.info("audit checkpoint for %s: %d entries", day, cp.seq)
    return cp


def check_rows(rows: list[AuditRow], stored: list[AuditCheckpoint],
               in_file: list[AuditCheckpoint], signer_public: Ed25519PublicKey) -> ChainCheck:
    """Pure: the chain against every checkpoint (tests feed it tampered rows)."""
    verdict = verify_rows(rows)
    check = ChainCheck(verdict.ok, verdict.entries, verdict.head, 0)
    if not verdict.ok:
        check.problems.append(verdict.text().removeprefix("audit chain BROKEN "))
    by_seq = {r.seq: r.hash for r in rows}
    stored_keys = {(c.day, c.seq, c.head) for c in stored}
    seen: set[tuple[str, int, str]] = set()
    for cp in [*stored, *in_file]:
        key = (cp.day, cp.seq, cp.head)
        if key in seen:
            continue
        seen.add(key)
        if not verify_b64(signer_public,
                          checkpoint_message(cp.day, cp.seq, cp.head, cp.at), cp.signature):
            check.problems.append(f"the checkpoint of {cp.day} has a bad signature (forged or "
                                  "altered)")
            continue
        check.checkpoints += 1
        if key not in stored_keys:
            check.problems.append(f"the checkpoint of {cp.day} is missing from the store "
                                  "(deleted)")
        if cp.seq > len(rows) or (cp.seq not in by_seq and cp.seq > 0):
            check.problems.append(f"the chain was shortened: on {cp.day} it had {cp.seq} "
                                  f"entries, now {len(rows)}")
        elif cp.seq > 0 and by_seq[cp.seq] != cp.head:
            check.problems.append(f"entries up to {cp.seq} were re-written after the "
                                  f"checkpoint of {cp.day} (its head hash differs)")
    check.ok = not check.problems
    return check


async def check_chain(store: Store, signer: Signer, file: str = "",
                      store_id: str = "") -> ChainCheck:
    return check_rows(await store.audit_rows(), await store.checkpoints(),
                      _file_checkpoints(file, store_id), signer.public)
