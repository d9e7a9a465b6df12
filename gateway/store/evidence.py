"""What the store keeps as evidence: the records and the interface both stores implement.

- ``HealthSample``  one probe result (``span`` 0), or one hour of them rolled up (``span``
  3600: ``n`` results, ``fails`` of them failing, median/p95/max of the values).
- ``HealthTransition``  a check changed status (pass/warn/fail), with what it said.
- ``CanaryRound``  one round of the mail-flow canary: sent, arrived, latency, or where it failed.
- ``UsageDay``  one member's use of the standby route on one day (the member by hash only).
- ``NotificationRecord``  one delivery (webhook or email) kept until delivered or given up.
- ``AuditCheckpoint``  the audit chain's head on a day, signed (``gateway.evidence.signing``).

``rollup`` is pure, so both stores aggregate the same way. Times are Unix seconds (UTC).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

HOUR = 3600.0
_RANK = {"pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class HealthSample:
    key: str
    at: float
    status: str
    value: float | None
    unit: str = ""
    output: str = ""
    span: float = 0.0
    n: int = 1
    fails: int = 0
    p95: float | None = None
    vmax: float | None = None


@dataclass(frozen=True)
class HealthTransition:
    key: str
    at: float
    status: str
    previous: str
    output: str = ""


@dataclass(frozen=True)
class CanaryRound:
    at: float                  # when the round started
    ok: bool
    stage: str                 # "" when ok; else token | imap login | smtp accept | imap arrival
    latency: float | None      # seconds from SMTP accept to IMAP arrival
    sent_at: float | None
    arrived_at: float | None
    error: str = ""


@dataclass(frozen=True)
class UsageDay:
    day: str                   # YYYY-MM-DD in UTC
    member: str                # sha256 of the member's object id
    signins: int = 0
    sends: int = 0
    pages: int = 0


@dataclass(frozen=True)
class NotificationRecord:
    id: str
    change: str                # what it belongs to, e.g. "failover v12 -> active by cli:jo"
    target: str                # "webhook:<n>:<host>" or "email" (never a webhook's URL)
    payload: str               # JSON
    state: str                 # pending | delivered | failed
    attempts: int
    next_at: float
    created_at: float
    updated_at: float
    last_error: str = ""


@dataclass(frozen=True)
class AuditCheckpoint:
    day: str                   # YYYY-MM-DD in UTC
    seq: int                   # entries in the chain when it was taken
    head: str                  # hash of entry ``seq``
    at: float
    signature: str             # base64 Ed25519 over ``checkpoint_message``


def checkpoint_message(day: str, seq: int, head: str, at: float) -> bytes:
    return f"gateway-audit-checkpoint\n{day}\n{seq}\n{head}\n{at:.3f}\n".encode()


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (not empty)."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def rollup(samples: Iterable[HealthSample], span: float = HOUR) -> list[HealthSample]:
    """Raw samples grouped per key and per ``span`` seconds: counts, the worst status, the last
    failure's output, and median / p95 / max of the numeric values."""
    groups: dict[tuple[str, float], list[HealthSample]] = {}
    for s in samples:
        groups.setdefault((s.key, math.floor(s.at / span) * span), []).append(s)
    out = []
    for (key, start), items in sorted(groups.items()):
        values = sorted(v for s in items for v in _values(s))
        fails = [s for s in items if s.status == "fail"]
        worst = max((s.status for s in items), key=lambda st: _RANK.get(st, 2))
        out.append(HealthSample(
            key, start, worst, _percentile(values, 0.5) if values else None,
            next((s.unit for s in items if s.unit), ""),
            fails[-1].output if fails else "", span, sum(s.n for s in items),
            sum(failures(s) for s in items),
            _percentile(values, 0.95) if values else None, values[-1] if values else None))
    return out


def failures(s: HealthSample) -> int:
    """Failing results a sample stands for (a raw one is one result)."""
    return s.fails if s.span else int(s.status == "fail")


def _values(s: HealthSample) -> list[float]:
    return [] if s.value is None else [float(s.value)]


def percentile(values: Iterable[float], q: float) -> float | None:
    ordered = sorted(values)
    return _percentile(ordered, q) if ordered else None


class EvidenceStore(Protocol):
    # health history
    async def history_write(self, samples: list[HealthSample],
                            transitions: list[HealthTransition],
                            rounds: list[CanaryRound]) -> None:
        """All in one transaction."""
        ...
    async def history_samples(self, since: float, until: float) -> list[HealthSample]: ...
    async def history_transitions(self, since: float | None,
                                  until: float) -> list[HealthTransition]: ...
    async def history_state_at(self, at: float) -> dict[str, HealthTransition]:
        """The last transition of each check before ``at``."""
        ...
    async def canary_rounds(self, since: float, until: float) -> list[CanaryRound]: ...
    async def history_rollup(self, before: float) -> int:
        """Replace raw samples older than ``before`` by hourly ones; returns rows rolled up."""
        ...
    async def history_purge(self, before: float) -> int: ...

    # use of the standby route
    async def usage_add(self, rows: list[UsageDay]) -> None:
        """Add the counts to what is stored for each (day, member)."""
        ...
    async def usage_days(self, since_day: str, until_day: str) -> list[UsageDay]: ...

    # notifications
    async def notification_put(self, rec: NotificationRecord) -> None: ...
    async def notifications_due(self, now: float, lease_seconds: float,
                                limit: int = 20) -> list[NotificationRecord]:
        """Pending deliveries whose time has come, each claimed (pushed ``lease_seconds``
        into the future) so that one instance only attempts it."""
        ...
    async def notifications_recent(self, limit: int = 50) -> list[NotificationRecord]: ...
    async def notifications_failed_since(self, since: float) -> int: ...

    # audit checkpoints
    async def checkpoint_put(self, cp: AuditCheckpoint) -> bool:
        """Insert if there is none for that day; False if there was."""
        ...
    async def checkpoints(self) -> list[AuditCheckpoint]: ...
