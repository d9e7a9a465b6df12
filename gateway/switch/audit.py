"""The audit trail: append-only, tamper-evident (hash-chained), verifiable, exportable.

How other modules write to it (the one API)::

    audit = services(request).audit                      # an AuditLog
    await audit.record("mail.sent", session.email, size=len(raw), recipients=3)
    await audit.try_record("auth.signin", session.email)  # logs, never raises, on store failure

``record(kind, actor, **data)`` appends one entry and returns it. ``kind`` is a dotted event
name; ``actor`` says who acted (an email address, ``cli:<user>``, ``api:<key name>`` or
``system``); ``data`` holds JSON values and is **metadata only**: never mail content, tokens,
passwords or recipients' addresses (for a send: time, sender, number of recipients, size).
It raises ``StoreUnavailable`` if the store cannot take it; ``try_record`` logs that instead,
for callers whose own work must go on (sign-in, sign-out, refusals, sends).

Kinds written so far: ``auth.signin``, ``auth.signout``, ``auth.refused`` (no role or
group), ``access.refused`` (the failover mode keeps a member out; once per session and
switch version), ``api.refused`` (bad or revoked API key), ``failover.changed``,
``admin.apikey.created``, ``admin.apikey.revoked``, ``admin.audit.exported``, ``ict.fault``
(a fault only ICT can fix met by a member: kind and fix, once per member and kind while it
lasts; ``gateway.auth.blockers``); ``mail.sent`` is for the mail engineer.

The chain: entry *n* stores the hash of entry *n-1* (the first stores 64 zeros), and its own
hash is SHA-256 over canonical JSON (sorted keys, no spaces, UTF-8) of its sequence number,
time, body and previous hash. ``verify`` walks the chain and names the first entry that was
altered, moved, inserted or is missing. Removing entries from the very end leaves a shorter
valid chain: the signed daily checkpoints of ``gateway.evidence.checkpoint`` catch that,
and ``gateway audit verify`` checks both. Exports carry each entry's previous hash.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.errors import GatewayError
from gateway.store.base import AuditRow, Store

log = logging.getLogger(__name__)

GENESIS = "0" * 64


def iso(t: float) -> str:
    """A time as ISO 8601 in UTC, to the second (``2026-03-01T18:00:00Z``)."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(seq: int, at: float, body: str, prev_hash: str) -> str:
    text = canonical({"seq": seq, "at": at, "body": body, "prev": prev_hash})
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: float
    kind: str
    actor: str
    data: dict[str, Any]
    hash: str
    prev_hash: str = ""           # exported, so a third party can recompute the chain

    @classmethod
    def from_row(cls, row: AuditRow) -> AuditEntry:
        try:
            body = json.loads(row.body)
            return cls(row.seq, row.at, str(body["kind"]), str(body["actor"]),
                       dict(body.get("data", {})), row.hash, row.prev_hash)
        except (ValueError, KeyError, TypeError):
            return cls(row.seq, row.at, "unreadable", "", {}, row.hash, row.prev_hash)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    head: str                    # hash of the last entry (GENESIS when empty)
    broken_seq: int | None = None
    problem: str = ""

    def text(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.entries} entries, head {self.head}"
        return f"audit chain BROKEN at entry {self.broken_seq}: {self.problem}"


def verify_rows(rows: Iterable[AuditRow], after: int = 0, head: str = GENESIS) -> Verdict:
    """Check a chain read in sequence order; pure, so tests can feed it tampered rows.
    ``after``/``head``: the rows continue a chain already verified up to entry ``after``
    whose hash is ``head`` (the counts then include those entries)."""
    prev, expected, count = head, after + 1, after
    for row in rows:
        if row.seq != expected:
            return Verdict(False, count, prev, expected,
                           f"entry {expected} is missing (the next one found is {row.seq})")
        if entry_hash(row.seq, row.at, row.body, row.prev_hash) != row.hash:
            return Verdict(False, count, prev, row.seq,
                           "its content, time or position was altered")
        if row.prev_hash != prev:
            return Verdict(False, count, prev, row.seq,
                           f"it does not follow entry {row.seq - 1} (an entry was removed, "
                           "inserted or moved)")
        prev, expected, count = row.hash, expected + 1, count + 1
    return Verdict(True, count, prev)


class AuditLog:
    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    async def record(self, kind: str, actor: str, /, **data: Any) -> AuditEntry:
        if not kind:
            raise ValueError("audit kind is required")
        body = canonical({"kind": kind, "actor": actor, "data": data})
        at = self.clock()

        def next_row(last: AuditRow | None) -> AuditRow:
            seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
            return AuditRow(seq, at, body, prev, entry_hash(seq, at, body, prev))

        # The store reads the tail and appends in one exclusive transaction, so writers in
        # this process and in other instances all extend one chain.
        return AuditEntry.from_row(await self.store.audit_append(next_row))

    async def try_record(self, kind: str, actor: str, /, **data: Any) -> AuditEntry | None:
        try:
            return await self.record(kind, actor, **data)
        except GatewayError:
            log.error("audit entry %s could not be written: store unavailable", kind)
            return None

    async def verify(self) -> Verdict:
        return verify_rows(await self.store.audit_rows())

    async def entries(self, since: float | None = None,
                      until: float | None = None) -> list[AuditEntry]:
        return [AuditEntry.from_row(r) for r in await self.store.audit_rows(since, until)]


# -- export

def export_json(entries: Iterable[AuditEntry]) -> str:
    return json.dumps([{"seq": e.seq, "time": iso(e.at), "kind": e.kind, "actor": e.actor,
                        "data": e.data, "hash": e.hash, "prev_hash": e.prev_hash}
                       for e in entries], indent=1)


def export_csv(entries: Iterable[AuditEntry]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["seq", "time", "kind", "actor", "data", "hash", "prev_hash"])
    for e in entries:
        w.writerow([e.seq, iso(e.at), e.kind, _csv_safe(e.actor), _csv_safe(canonical(e.data)),
                    e.hash, e.prev_hash])
    return out.getvalue()


def _csv_safe(value: str) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet (CSV injection).
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
