"""The evidence report of a period, as data: built from the store by ``build_report`` and
rendered by ``gateway.evidence.render`` (HTML, JSON, CSV). Sections:

- every upstream and platform check: availability %, each outage window (start, end,
  duration, the error seen), response time p50/p95 per day;
- the mail-flow canary: rounds, success %, delivery latency p50/p95/max per day, failures
  with the stage they failed at;
- the failover timeline: who flipped the switch when, and why;
- use of the standby route per day: distinct members, sign-ins, messages sent, pages read;
- the audit chain: verification (chain and signed checkpoints), head hash, and every entry
  of the period with its previous hash so a third party can recompute the chain.

Availability counts probe results: the share of results in the period that did not fail.
Outage windows come from the check transitions (a ``fail`` until the next non-fail). Days are
UTC days; every time is given in UTC and in ``general.timezone``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.evidence.checkpoint import ChainCheck
from gateway.health.history import day_of, member_key
from gateway.store.base import AuditRow, Store
from gateway.store.evidence import HealthSample, failures, percentile
from gateway.switch import timeline
from gateway.switch.audit import AuditEntry, iso

# Checks that are the gateway's own bookkeeping, not an upstream or the platform.
NOT_UPSTREAMS = ("sessions:count", "failover:mode", "history:writes", "notify:deliveries",
                 "mailflow:latency")
NAMES = {"entra": "Entra ID (sign-in)", "imap": "Exchange Online IMAP",
         "smtp": "Exchange Online SMTP", "graph": "Microsoft Graph (calendar)",
         "store": "Gateway store"}


@dataclass
class Outage:
    start: float
    end: float | None          # None: still failing at the end of the period
    error: str

    def duration(self, until: float) -> float:
        return (self.end if self.end is not None else until) - self.start


@dataclass
class DayStat:
    day: str
    samples: int
    failures: int
    p50: float | None
    p95: float | None
    vmax: float | None = None

    @property
    def availability(self) -> float | None:
        return None if not self.samples else 100.0 * (self.samples - self.failures) / \
            self.samples


@dataclass
class CheckSection:
    key: str
    name: str
    platform: bool
    unit: str
    samples: int
    failures: int
    outages: list[Outage]
    days: list[DayStat]

    @property
    def availability(self) -> float | None:
        return None if not self.samples else 100.0 * (self.samples - self.failures) / \
            self.samples


@dataclass
class CanaryDay:
    day: str
    rounds: int
    ok: int
    p50: float | None
    p95: float | None
    vmax: float | None


@dataclass
class CanarySection:
    rounds: int
    ok: int
    days: list[CanaryDay]
    failures: list[tuple[float, str, str]]     # at, stage, error

    @property
    def success(self) -> float | None:
        return None if not self.rounds else 100.0 * self.ok / self.rounds


@dataclass
class UsageRow:
    day: str
    members: int
    signins: int
    sends: int
    pages: int


@dataclass
class Change:
    at: float
    by: str
    old: str
    new: str
    reason: str


@dataclass
class Report:
    title: str
    service: str
    public_url: str
    tz: str
    since: float
    until: float
    generated: float
    checks: list[CheckSection]
    canary: CanarySection
    incidents: list[timeline.Incident]
    changes: list[Change]
    usage: list[UsageRow]
    chain: ChainCheck
    entries: list[AuditRow]
    key_fingerprint: str
    notes: list[str] = field(default_factory=list)
    hourly: bool = False          # the check and canary figures are per hour, not per day

    def local(self, t: float | None) -> str:
        if t is None:
            return ""
        return datetime.fromtimestamp(t, ZoneInfo(self.tz)).strftime("%Y-%m-%d %H:%M:%S %Z")

    def utc(self, t: float | None) -> str:
        return iso(t) if t is not None else ""


HOURLY_UP_TO = 2 * 86400      # a period shorter than this is shown per hour, not per day


def bucket_of(t: float, hourly: bool) -> str:
    if hourly:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:00")
    return day_of(t)


def _days(since: float, until: float, hourly: bool = False) -> list[str]:
    """The buckets of the period: UTC days, or UTC hours for a short period."""
    out: list[str] = []
    t = since
    while t < until:
        d = bucket_of(t, hourly)
        if not out or out[-1] != d:
            out.append(d)
        t += 600 if hourly else 3600
    last = bucket_of(max(since, until - 1e-6), hourly)
    if not out or out[-1] != last:
        out.append(last)
    return out


def _outages(key: str, start_state: str, transitions: Iterable[Any], since: float,
             start_output: str) -> list[Outage]:
    found: list[Outage] = []
    current = Outage(since, None, start_output) if start_state == "fail" else None
    if current:
        found.append(current)
    for t in transitions:
        if t.key != key:
            continue
        if t.status == "fail" and current is None:
            current = Outage(t.at, None, t.output)
            found.append(current)
        elif t.status != "fail" and current is not None:
            current.end, current = t.at, None
    return found


def _check_sections(samples: list[HealthSample], transitions: list[Any],
                    state: dict[str, Any], since: float, until: float,
                    hourly: bool) -> list[CheckSection]:
    by_key: dict[str, list[HealthSample]] = {}
    for s in samples:
        if s.key not in NOT_UPSTREAMS:
            by_key.setdefault(s.key, []).append(s)
    for key in state:
        if key not in NOT_UPSTREAMS:
            by_key.setdefault(key, [])
    sections = []
    days = _days(since, until, hourly)
    order = list(NAMES)
    for key in sorted(by_key, key=lambda k: (k.startswith("platform:"),
                                             order.index(k.split(":")[0])
                                             if k.split(":")[0] in order else 99, k)):
        items = by_key[key]
        per_day: dict[str, list[HealthSample]] = {d: [] for d in days}
        for s in items:
            per_day.setdefault(bucket_of(s.at, hourly), []).append(s)
        stats = []
        for d in days:
            ds = per_day.get(d, [])
            # Response times of answered probes only: a failure is counted in availability,
            # its timeout is not a response time.
            values = [float(s.value) for s in ds if s.value is not None and
                      (s.status != "fail" or s.span)]
            stats.append(DayStat(d, sum(s.n for s in ds), sum(failures(s) for s in ds),
                                 percentile(values, 0.5), percentile(values, 0.95),
                                 max(values) if values else None))
        before = state.get(key)
        prefix = key.split(":")[0]
        name = key.removeprefix("platform:") + " (supplier platform)" \
            if key.startswith("platform:") else NAMES.get(prefix, key)
        sections.append(CheckSection(
            key, name, key.startswith("platform:"),
            next((s.unit for s in items if s.unit), ""), sum(s.n for s in items),
            sum(failures(s) for s in items),
            _outages(key, before.status if before else "", transitions, since,
                     before.output if before else ""), stats))
    return sections


def _canary(rounds: list[Any], since: float, until: float, hourly: bool) -> CanarySection:
    days = _days(since, until, hourly)
    per_day: dict[str, list[Any]] = {d: [] for d in days}
    for r in rounds:
        per_day.setdefault(bucket_of(r.at, hourly), []).append(r)
    out = []
    for d in days:
        rs = per_day.get(d, [])
        lat = [float(r.latency) for r in rs if r.ok and r.latency is not None]
        out.append(CanaryDay(d, len(rs), sum(1 for r in rs if r.ok), percentile(lat, 0.5),
                             percentile(lat, 0.95), max(lat) if lat else None))
    fails = [(r.at, r.stage, r.error) for r in rounds if not r.ok]
    return CanarySection(len(rounds), sum(1 for r in rounds if r.ok), out, fails)


def _usage(rows: list[Any], entries: list[AuditEntry], since: float,
           until: float) -> list[UsageRow]:
    days = _days(since, until)
    members: dict[str, set[str]] = {d: set() for d in days}
    pages: dict[str, int] = dict.fromkeys(days, 0)
    signins: dict[str, int] = dict.fromkeys(days, 0)
    sends: dict[str, int] = dict.fromkeys(days, 0)
    for u in rows:
        if u.day in members:
            members[u.day].add(u.member)
            pages[u.day] += u.pages
    for e in entries:
        d = day_of(e.at)
        if d not in members or not since <= e.at < until:
            continue
        if e.kind == "auth.signin":
            signins[d] += 1
            members[d].add(member_key(e.actor.lower()))
        elif e.kind == "mail.sent":
            sends[d] += 1
            members[d].add(member_key(e.actor.lower()))
    return [UsageRow(d, len(members[d]), signins[d], sends[d], pages[d]) for d in days]


async def build_report(store: Store, chain: ChainCheck, *, since: float, until: float,
                       now: float, tz: str, service: str, public_url: str,
                       key_fingerprint: str, raw_days: int = 14) -> Report:
    samples = await store.history_samples(since, until)
    transitions = await store.history_transitions(since, until)
    state = await store.history_state_at(since)
    rounds = await store.canary_rounds(since, until)
    rows = await store.audit_rows(None, until)
    entries = [AuditEntry.from_row(r) for r in rows]
    found = [i for i in timeline.incidents(entries)
             if i.start < until and (i.end is None or i.end >= since)]
    changes = [Change(float(e.data.get("since") or e.at), e.actor, str(e.data.get("old", "")),
                      str(e.data.get("new", "")), str(e.data.get("reason", "")))
               for e in entries if e.kind == "failover.changed" and since <= e.at < until]
    usage = await store.usage_days(day_of(since), day_of(max(since, until - 1e-6)))
    notes = []
    if since < now - raw_days * 86400:
        notes.append(f"Results older than {raw_days} days are kept as hourly roll-ups: their "
                     "daily p50/p95 are taken over the hourly medians.")
    if not samples:
        notes.append("No probe results are stored for this period (was the gateway "
                     "running?).")
    hourly = until - since < HOURLY_UP_TO
    return Report(
        title="Mail service evidence report", hourly=hourly, service=service,
        public_url=public_url, tz=tz,
        since=since, until=until, generated=now,
        checks=_check_sections(samples, transitions, state, since, until, hourly),
        canary=_canary(rounds, since, until, hourly), incidents=found, changes=changes,
        usage=_usage(usage, entries, since, until), chain=chain,
        entries=[r for r in rows if since <= r.at < until], key_fingerprint=key_fingerprint,
        notes=notes)


def report_id(report: Report) -> str:
    """A short stable name for the period and the moment it was made."""
    text = f"{report.service}|{report.since}|{report.until}|{report.generated}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def as_dict(r: Report) -> dict[str, Any]:
    """The report as JSON-ready data (times in UTC ISO 8601 and in the council's zone)."""
    def t(x: float | None) -> dict[str, str] | None:
        return None if x is None else {"utc": r.utc(x), "local": r.local(x)}

    return {
        "report": {"title": r.title, "id": report_id(r), "service": r.service,
                   "public_url": r.public_url, "timezone": r.tz, "since": t(r.since),
                   "until": t(r.until), "generated": t(r.generated),
                   "signing_key_sha256": r.key_fingerprint, "notes": r.notes,
                   "buckets": "hour" if r.hourly else "day"},
        "checks": [{
            "key": c.key, "name": c.name, "supplier_platform": c.platform, "unit": c.unit,
            "samples": c.samples, "failures": c.failures,
            "availability_percent": _round(c.availability, 3),
            "outages": [{"start": t(o.start), "end": t(o.end),
                         "duration_seconds": round(o.duration(r.until)),
                         "ongoing": o.end is None, "error": o.error} for o in c.outages],
            "days": [{"day": d.day, "samples": d.samples, "failures": d.failures,
                      "availability_percent": _round(d.availability, 3),
                      "p50": _round(d.p50, 1), "p95": _round(d.p95, 1)} for d in c.days],
        } for c in r.checks],
        "canary": {
            "rounds": r.canary.rounds, "delivered": r.canary.ok,
            "success_percent": _round(r.canary.success, 3),
            "days": [{"day": d.day, "rounds": d.rounds, "delivered": d.ok,
                      "latency_p50_seconds": _round(d.p50, 3),
                      "latency_p95_seconds": _round(d.p95, 3),
                      "latency_max_seconds": _round(d.vmax, 3)} for d in r.canary.days],
            "failures": [{"at": t(a), "stage": s, "error": e} for a, s, e in r.canary.failures],
        },
        "failover": {
            "chain_verified": r.chain.ok,
            "incidents": [{"start": t(i.start), "end": t(i.end), "reasons": i.reasons,
                           "people": i.people, "end_reason": i.end_reason} for i in r.incidents],
            "changes": [{"at": t(c.at), "by": c.by, "from": c.old, "to": c.new,
                         "reason": c.reason} for c in r.changes],
        },
        "usage": [{"day": u.day, "members": u.members, "signins": u.signins,
                   "messages_sent": u.sends, "pages_read": u.pages} for u in r.usage],
        "audit": {"verified": r.chain.ok, "entries": r.chain.entries, "head": r.chain.head,
                  "signed_checkpoints": r.chain.checkpoints, "problems": r.chain.problems,
                  "period_entries": [{"seq": e.seq, "at": e.at, "time": iso(e.at),
                                      "body": e.body, "prev_hash": e.prev_hash,
                                      "hash": e.hash} for e in r.entries]},
    }


def _round(v: float | None, n: int) -> float | None:
    return None if v is None else round(v, n)


def fmt_duration(seconds: float) -> str:
    s = round(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h {m}m"
    if h:
        return f"{h}h {m}m"
    if m:
        return f"{m}m {s}s"
    return f"{s}s"


def parse_day(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
