"""The evidence report as a file: HTML (self-contained, server-drawn SVG charts, prints on
A4), JSON (every figure plus the period's audit entries with their previous hashes) or CSV
(one row per figure, spreadsheet-safe). ``render`` returns the bytes that get signed."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from gateway.evidence import charts
from gateway.evidence.report import (
    CheckSection,
    Report,
    _days,
    as_dict,
    fmt_duration,
    report_id,
)
from gateway.store.evidence import percentile
from gateway.switch.audit import AuditEntry
from gateway.web.render import env

FORMATS = ("html", "json", "csv")


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}%" if v < 100 else "100%"


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def _secs(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f} s"


def _failing(r: Report) -> Any:
    return lambda c: sum(o.duration(r.until) for o in c.outages)


def _overall(c: CheckSection, q: float) -> str:
    values = [d.p50 if q == 0.5 else d.p95 for d in c.days]
    v = percentile([x for x in values if x is not None], q)
    return "—" if v is None else f"{_num(v)} {c.unit}"


def html(r: Report, *, nonce: str = "", name: str = "report.html",
         admin: dict[str, str] | None = None) -> str:
    days = _days(r.since, r.until, r.hourly)
    per = "hour" if r.hourly else "day"

    def bars_svg(c: CheckSection) -> str:
        return charts.bars(f"{c.name}: availability per {per}", days,
                           [d.availability for d in c.days])

    def lines_svg(c: CheckSection) -> str:
        unit = f" {c.unit}" if c.unit else ""
        return charts.lines(f"{c.name}: response time per {per}", days,
                            {"p50": [d.p50 for d in c.days], "p95": [d.p95 for d in c.days]},
                            unit=unit)

    entries = []
    for row in r.entries:
        e = AuditEntry.from_row(row)
        entries.append({"seq": row.seq, "at": row.at, "kind": e.kind, "actor": e.actor,
                        "prev": row.prev_hash, "hash": row.hash})
    success = [None if d.rounds == 0 else 100.0 * d.ok / d.rounds for d in r.canary.days]
    return env.get_template("evidence-report.html").render(
        r=r, rid=report_id(r), nonce=nonce, name=name, days=days, entries=entries, admin=admin,
        per=per,
        pct=_pct, num=_num, secs=_secs, dur=fmt_duration, failing=_failing(r),
        overall=_overall, bars_svg=bars_svg, lines_svg=lines_svg,
        canary_bars=charts.bars(f"Canary: messages delivered per {per}", days, success),
        canary_lines=charts.lines(f"Canary: delivery latency per {per}", days,
                                  {"p50": [d.p50 for d in r.canary.days],
                                   "p95": [d.p95 for d in r.canary.days],
                                   "max": [d.vmax for d in r.canary.days]}, unit=" s"))


def as_json(r: Report) -> str:
    return json.dumps(as_dict(r), indent=1, ensure_ascii=False) + "\n"


def as_csv(r: Report) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["section", "item", "day_or_start", "end", "measure", "value", "detail"])
    d = as_dict(r)
    rep = d["report"]
    w.writerow(["report", rep["service"], rep["since"]["utc"], rep["until"]["utc"], "id",
                rep["id"], _safe(f"signing key sha256 {rep['signing_key_sha256']}")])
    for c in d["checks"]:
        w.writerow(["availability", c["key"], rep["since"]["utc"], rep["until"]["utc"],
                    "percent", c["availability_percent"], _safe(c["name"])])
        for o in c["outages"]:
            w.writerow(["outage", c["key"], o["start"]["utc"],
                        o["end"]["utc"] if o["end"] else "", "seconds", o["duration_seconds"],
                        _safe(o["error"])])
        for day in c["days"]:
            w.writerow(["day", c["key"], day["day"], "", "availability_percent",
                        day["availability_percent"], ""])
            w.writerow(["day", c["key"], day["day"], "", f"p50_{c['unit']}", day["p50"], ""])
            w.writerow(["day", c["key"], day["day"], "", f"p95_{c['unit']}", day["p95"], ""])
    can = d["canary"]
    w.writerow(["canary", "mailflow", rep["since"]["utc"], rep["until"]["utc"],
                "success_percent", can["success_percent"], f"{can['rounds']} rounds"])
    for day in can["days"]:
        for k in ("rounds", "delivered", "latency_p50_seconds", "latency_p95_seconds",
                  "latency_max_seconds"):
            w.writerow(["canary_day", "mailflow", day["day"], "", k, day[k], ""])
    for f in can["failures"]:
        w.writerow(["canary_failure", "mailflow", f["at"]["utc"], "", "stage", f["stage"],
                    _safe(f["error"])])
    fo = d["failover"]
    for i in fo["incidents"]:
        w.writerow(["standby_in_use", "switch", i["start"]["utc"],
                    i["end"]["utc"] if i["end"] else "", "people", _safe(", ".join(i["people"])),
                    _safe(" | ".join(i["reasons"]))])
    for c in fo["changes"]:
        w.writerow(["switch_change", _safe(c["by"]), c["at"]["utc"], "", "change",
                    f"{c['from']} -> {c['to']}", _safe(c["reason"])])
    for u in d["usage"]:
        for k in ("members", "signins", "messages_sent", "pages_read"):
            w.writerow(["usage", "standby_route", u["day"], "", k, u[k], ""])
    a = d["audit"]
    w.writerow(["audit", "chain", "", "", "verified", a["verified"],
                _safe("; ".join(a["problems"]))])
    w.writerow(["audit", "chain", "", "", "head", a["head"], f"{a['entries']} entries"])
    for e in a["period_entries"]:
        w.writerow(["audit_entry", e["seq"], e["time"], "", "prev_hash", e["prev_hash"],
                    e["hash"]])
    return out.getvalue()


def render(r: Report, fmt: str, *, name: str = "report.html", nonce: str = "") -> bytes:
    if fmt == "html":
        return html(r, nonce=nonce, name=name).encode()
    if fmt == "json":
        return as_json(r).encode()
    if fmt == "csv":
        return as_csv(r).encode()
    raise ValueError(f"unknown format {fmt!r}: use html, json or csv")


def _safe(value: str) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet (CSV injection).
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
