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
from gateway.switch.audit import GENESIS, AuditEntry, verify_rows

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
    check.checkpoints, problems, _unknown = _against_checkpoints(
        stored, in_file, signer_public, len(rows), by_seq.get)
    check.problems += problems
    check.ok = not check.problems
    return check


def _against_checkpoints(stored: list[AuditCheckpoint], in_file: list[AuditCheckpoint],
                         signer_public: Ed25519PublicKey, length: int,
                         hash_at: Callable[[int], str | None]) -> tuple[int, list[str], bool]:
    """(checkpoints that agree, problems, whether some checkpoint named an entry whose hash
    ``hash_at`` does not know: then only a full read can say)."""
    problems: list[str] = []
    count, unknown = 0, False
    stored_keys = {(c.day, c.seq, c.head) for c in stored}
    seen: set[tuple[str, int, str]] = set()
    for cp in [*stored, *in_file]:
        key = (cp.day, cp.seq, cp.head)
        if key in seen:
            continue
        seen.add(key)
        if not verify_b64(signer_public,
                          checkpoint_message(cp.day, cp.seq, cp.head, cp.at), cp.signature):
            problems.append(f"the checkpoint of {cp.day} has a bad signature (forged or "
                            "altered)")
            continue
        count += 1
        if key not in stored_keys:
            problems.append(f"the checkpoint of {cp.day} is missing from the store "
                            "(deleted)")
        known = hash_at(cp.seq) if cp.seq > 0 else None
        if cp.seq > length:
            problems.append(f"the chain was shortened: on {cp.day} it had {cp.seq} "
                            f"entries, now {length}")
        elif cp.seq > 0 and known is None:
            unknown = True
        elif cp.seq > 0 and known != cp.head:
            problems.append(f"entries up to {cp.seq} were re-written after the "
                            f"checkpoint of {cp.day} (its head hash differs)")
    return count, problems, unknown


async def check_chain(store: Store, signer: Signer, file: str = "",
                      store_id: str = "") -> ChainCheck:
    return check_rows(await store.audit_rows(), await store.checkpoints(),
                      _file_checkpoints(file, store_id), signer.public)


# A full read of the chain at least this often; the views in between read only new rows.
FULL_CHECK_SECONDS = 3600
RECENT_ENTRIES = 25


class ChainWatch:
    """The audit chain as this process last verified it (issue 14 case 6: /admin re-read
    and re-verified the whole table on every view, 25 ms -> 1.1 s after a flood).

    Rule: anonymous load must not make an admin view do unbounded work. A view verifies
    only the entries after the last verified head (``Store.audit_rows_after``) and checks
    new checkpoints against them; the whole chain is read again every
    ``FULL_CHECK_SECONDS``, on demand, after any problem, and whenever a checkpoint names
    an entry this process holds no hash for. A tampered old entry is caught by that full
    re-check and, always, by ``gateway audit verify``. Kept per process: the recent
    entries and the switch changes the timeline is built from, and the hashes of checkpointed
    entries, all bounded by the entries of one kind or the number of days."""

    def __init__(self, interval: float = FULL_CHECK_SECONDS) -> None:
        self.interval = interval
        self.seq, self.head = 0, GENESIS
        self.full_at: float | None = None     # when the whole chain was last read
        self.checked_at: float | None = None
        self.read_last = 0                    # rows the last check read
        self.full_last = False
        self.last: ChainCheck | None = None
        self.recent: list[AuditEntry] = []
        self.switches: list[AuditEntry] = []  # failover.changed: the incident timeline
        self._hashes: dict[int, str] = {}     # seq -> hash of entries checkpoints name

    async def check(self, store: Store, signer: Signer | None, now: float, *,
                    file: str = "", store_id: str = "", full: bool = False) -> ChainCheck:
        full = (full or self.full_at is None or now - self.full_at >= self.interval
                or self.last is None or not self.last.ok)
        check = await self._check(store, signer, now, file, store_id, full)
        if check is None:   # the head moved, or a checkpoint names an entry not held here
            check = await self._check(store, signer, now, file, store_id, True)
            assert check is not None
        self.last, self.checked_at = check, now
        return check

    async def _check(self, store: Store, signer: Signer | None, now: float, file: str,
                     store_id: str, full: bool) -> ChainCheck | None:
        rows = await (store.audit_rows() if full
                      else store.audit_rows_after(max(self.seq - 1, 0)))
        if not full and self.seq:
            # The verified head is read again (one row): a cut tail or a re-written head
            # shows here, and the whole chain is then read to say what happened.
            if not rows or (rows[0].seq, rows[0].hash) != (self.seq, self.head):
                return None
            rows = rows[1:]
        after, head = (0, GENESIS) if full else (self.seq, self.head)
        verdict = verify_rows(rows, after, head)
        check = ChainCheck(verdict.ok, verdict.entries, verdict.head, 0)
        if not verdict.ok:
            check.problems.append(verdict.text().removeprefix("audit chain BROKEN "))
        hashes = {} if full else dict(self._hashes)
        hashes[after] = head
        new = {r.seq: r.hash for r in rows}
        if signer is not None:
            stored, in_file = await store.checkpoints(), _file_checkpoints(file, store_id)
            check.checkpoints, problems, unknown = _against_checkpoints(
                stored, in_file, signer.public, verdict.entries if verdict.ok else len(rows)
                + after, lambda seq: new.get(seq) or hashes.get(seq))
            if unknown and not full:
                return None
            check.problems += problems
            check.ok = not check.problems
            hashes.update({cp.seq: new[cp.seq] for cp in stored if cp.seq in new})
        self.read_last, self.full_last = len(rows), full
        if full:
            self.full_at, self.recent, self.switches = now, [], []
        entries = [AuditEntry.from_row(r) for r in rows]
        self.recent = (self.recent + entries)[-RECENT_ENTRIES:]
        self.switches += [e for e in entries if e.kind == "failover.changed"]
        if check.ok:
            self.seq, self.head = verdict.entries, verdict.head
            hashes[self.seq] = self.head
            self._hashes = hashes
        return check
