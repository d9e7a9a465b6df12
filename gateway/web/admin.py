"""The ICT admin page (role ``Gateway.Admin``): the switch as it stands (mode, since, by whom,
why), the flip form with its confirmation step, who is signed in now, the incident timeline
with its monthly summary, recent audit entries and notification deliveries, and exports.

A flip needs a reason, a confirmation, and a sign-in within ``failover.reauth_minutes``
(``SessionRecord.auth_time`` against the injected clock). The form carries the switch
version it showed, so an admin who confirms after a colleague's change gets ``Conflict``
with that change named, never a silent overwrite.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.errors import BadRequest, Conflict, Forbidden, GatewayError, StaleSignIn
from gateway.evidence import render as evidence_render
from gateway.evidence.checkpoint import ChainCheck
from gateway.evidence.export import make_report, parse_period
from gateway.evidence.signing import checkpoint_path, store_id
from gateway.services import Services, services
from gateway.store.base import SessionRecord
from gateway.switch import audit, controls, directory, timeline
from gateway.switch.machine import (
    Flip,
    Mode,
    SwitchState,
    apply,
    duration_text,
    local,
    parse_mode,
    parse_time,
)
from gateway.web.member import csp_nonce, member, signed_in
from gateway.web.render import render

AUDIT_ROWS = 25


@dataclass(frozen=True)
class StateView:
    mode: str
    since: str
    by: str
    reason: str
    until: str
    group: str
    message: str
    version: int


@dataclass(frozen=True)
class PersonView:
    name: str
    email: str
    admin: bool
    admitted: bool
    last_seen: str


@dataclass(frozen=True)
class IncidentView:
    start: str
    end: str
    duration: str
    reasons: str
    people: str


@dataclass(frozen=True)
class MonthView:
    month: str
    incidents: int
    active: str


@dataclass(frozen=True)
class AuditView:
    seq: int
    at: str
    kind: str
    actor: str
    details: str


@dataclass(frozen=True)
class FlipForm:
    mode: str = ""
    reason: str = ""
    until: str = ""
    group: str = ""
    message: str = ""
    version: str = ""


def _admin(request: Request) -> SessionRecord:
    session = signed_in(request)
    if session is None or not session.is_admin:
        raise Forbidden("This page is for ICT administrators.")
    return session


def _fresh(svc: Services, session: SessionRecord) -> None:
    limit = svc.settings.failover.reauth_minutes * 60
    if svc.clock() - session.auth_time > limit:
        raise StaleSignIn()


def state_view(s: SwitchState, tz: str) -> StateView:
    return StateView(mode=str(s.mode), since=local(s.since, tz) if s.since else "first start",
                     by=s.by, reason=s.reason, until=local(s.until, tz) if s.until else "",
                     group=s.group, message=s.message, version=s.version)


async def _people(svc: Services, state: SwitchState, tz: str) -> list[PersonView]:
    found = await controls.people(svc.store, state, now=svc.clock(), idle=svc.sessions.idle,
                                  absolute=svc.sessions.absolute,
                                  pilot_groups=svc.settings.failover.pilot_groups)
    return [PersonView(p.name, p.email, p.is_admin, p.admitted, local(p.last_seen, tz))
            for p in found]


def _details(e: audit.AuditEntry) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(e.data.items()) if v not in (None, ""))


async def _page(request: Request, *, form: FlipForm | None = None, error: str = "",
                status: int = 200) -> Response:
    svc = services(request)
    tz = svc.settings.general.timezone
    state = await svc.failover.current()
    now = svc.clock()
    verdict = await _chain(svc)
    watch = svc.chain_watch
    found = timeline.incidents(watch.switches)
    people = await _people(svc, state, tz)
    session = member(request)
    return render(request, "admin.html", {
        "state": state_view(state, tz),
        "store_ok": svc.failover.store_ok,
        "people": people,
        "incidents": [IncidentView(local(i.start, tz), local(i.end, tz) if i.end else "ongoing",
                                   duration_text(i.duration(now)), " | ".join(i.reasons),
                                   ", ".join(i.people)) for i in reversed(found)],
        "months": [MonthView(m.month, m.incidents, duration_text(m.active_seconds))
                   for m in reversed(timeline.monthly(found, now, tz))],
        "audit": [AuditView(e.seq, local(e.at, tz), e.kind, e.actor, _details(e))
                  for e in reversed(watch.recent[-AUDIT_ROWS:])],
        "verdict": verdict,
        "checked": CheckedView(
            local(watch.checked_at or now, tz), watch.read_last, watch.full_last,
            local(watch.full_at or now, tz),
            local((watch.full_at or now) + watch.interval, tz)),
        "rechecked": request.query_params.get("rechecked") == "1",
        "deliveries": await _deliveries(svc, tz),
        "form": form or FlipForm(version=str(state.version)),
        "error": error,
        "fresh_minutes": svc.settings.failover.reauth_minutes,
        "fresh": now - session.auth_time <= svc.settings.failover.reauth_minutes * 60,
        "reauth_url": "/auth/start?fresh=1&next=" + quote("/admin", safe=""),
        "changed": request.query_params.get("changed") == "1",
        "modes": [str(m) for m in Mode],
    }, status=status)


async def _chain(svc: Services, full: bool = False) -> ChainCheck:
    """The audit chain and its signed checkpoints, read from where this process last
    verified it (``ChainWatch``: only new entries, the whole chain at a bounded interval)."""
    return await svc.chain_watch.check(
        svc.store, svc.signer, svc.clock(), full=full,
        file=str(checkpoint_path(svc.settings)), store_id=store_id(svc.settings))


@dataclass(frozen=True)
class CheckedView:
    at: str          # when this page's check ran
    read: int        # entries it read
    full: bool       # whether it read the whole chain
    full_at: str     # when the whole chain was last read
    next_full: str   # when it is next read in full (or press the button)


async def recheck(request: Request) -> Response:
    """Read and verify the whole chain now (the button beside the verdict; CSRF-checked
    as every unsafe request is)."""
    session = _admin(request)
    svc = services(request)
    check = await _chain(svc, full=True)
    await svc.audit.try_record("admin.audit.verified", session.email, ok=check.ok,
                               entries=check.entries)
    return RedirectResponse("/admin?rechecked=1#audit", status_code=303)


@dataclass(frozen=True)
class DeliveryView:
    at: str
    change: str
    target: str
    state: str
    attempts: int
    detail: str
    next_try: str


async def _deliveries(svc: Services, tz: str) -> list[DeliveryView]:
    """Kept deliveries, newest first, with the change each belongs to (from the page, the
    API or the command line, on any instance)."""
    try:
        kept = await svc.store.notifications_recent(50)
    except GatewayError:
        kept = []
    out = [DeliveryView(local(n.created_at, tz), n.change, _target_label(n.target), n.state,
                        n.attempts, n.last_error,
                        local(n.next_at, tz) if n.state == "pending" else "")
           for n in kept]
    if not out:   # no store-kept deliveries (or the store is down): what this instance saw
        out = [DeliveryView(local(d.at, tz), d.change, d.target,
                            "delivered" if d.ok else "failed", d.attempts, d.detail, "")
               for d in reversed(svc.notifier.recent)]
    return out


def _target_label(target: str) -> str:
    return "webhook " + target.split(":", 2)[2] if target.startswith("webhook:") else target


async def evidence_page(request: Request) -> Response:
    """The evidence report of a period, on screen (prints on A4 as the exported file)."""
    _admin(request)
    svc = services(request)
    q = request.query_params
    since_q, until_q = q.get("since", "7d")[:40], q.get("until", "")[:40]
    now, tz = svc.clock(), svc.settings.general.timezone
    error = ""
    try:
        since, until = parse_period(since_q, until_q or None, now, tz)
    except BadRequest as err:
        error, (since, until) = err.message, parse_period("7d", None, now, tz)
        since_q, until_q = "7d", ""
    report = await make_report(svc.settings, svc.store, svc.signer, since=since, until=until,
                               now=now, clock=svc.clock)
    query = urlencode({"since": since_q, **({"until": until_q} if until_q else {})})
    nonce = csp_nonce(request)
    page = evidence_render.html(report, nonce=nonce, admin={
        "since": since_q, "until": until_q, "query": query, "error": error})
    return HTMLResponse(page, status_code=400 if error else 200)


async def evidence_download(request: Request) -> Response:
    """The signed report as a ZIP: the file, its .sig and the public key to check it."""
    session = _admin(request)
    svc = services(request)
    q = request.query_params
    fmt = q.get("format", "html")
    if fmt not in evidence_render.FORMATS:
        raise BadRequest("Ask for html, json or csv.")
    now, tz = svc.clock(), svc.settings.general.timezone
    since, until = parse_period(q.get("since", "7d")[:40], (q.get("until") or "")[:40] or None,
                                now, tz)
    report = await make_report(svc.settings, svc.store, svc.signer, since=since, until=until,
                               now=now, clock=svc.clock)
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"evidence-{stamp}.{fmt}"
    data = evidence_render.render(report, fmt, name=name)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
        z.writestr(name + ".sig", svc.signer.sign(data))
        z.writestr("evidence-public.pem", svc.signer.public_pem())
        z.writestr("HOW-TO-VERIFY.txt",
                   "openssl pkey -pubin -in evidence-public.pem -outform DER | "
                   "openssl dgst -sha256\n"
                   f"openssl pkeyutl -verify -pubin -inkey evidence-public.pem -rawin "
                   f"-in {name} -sigfile {name}.sig\n")
    await svc.audit.try_record("admin.evidence.exported", session.email, since=since,
                               until=until, format=fmt, chain_ok=report.chain.ok)
    return Response(buf.getvalue(), media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="evidence-{stamp}-{fmt}.zip"'})


async def admin_page(request: Request) -> Response:
    _admin(request)
    return await _page(request)


def _flip_from(svc: Services, session: SessionRecord, form: FlipForm) -> Flip:
    try:
        version = int(form.version)
    except ValueError:
        raise BadRequest("The form is incomplete; reload the page.") from None
    tz = svc.settings.general.timezone
    until = parse_time(form.until, svc.clock(), tz) if form.until.strip() else None
    return Flip(mode=form.mode, reason=form.reason, by=f"{session.user_name} <{session.email}>",
                until=until, group=form.group, message=form.message, expected_version=version)


async def switch(request: Request) -> Response:
    session = _admin(request)
    svc = services(request)
    data = await request.form(max_files=0, max_fields=20)
    fields = {k: v if isinstance(v, str) else "" for k, v in data.items()}
    form = FlipForm(**{k: fields.get(k, "") for k in FlipForm.__dataclass_fields__})
    try:
        _fresh(svc, session)
        change = _flip_from(svc, session, form)
        current = await svc.failover.current()
        if fields.get("confirm") != "yes":
            apply(current, change, svc.clock())   # bad input first, cheaply
        # A drill for a mistyped, foreign or empty group admits nobody and proves nothing:
        # looked up in the directory at both steps, as the CLI and the API do; refused here
        # (the API's "force" is for scripts that know better).
        group = (await directory.lookup_group(svc.settings, change.group)
                 if parse_mode(change.mode) is Mode.DRILL else None)
        if fields.get("confirm") != "yes":
            # Step one: check the change as the switch would, then ask to confirm it.
            tz = svc.settings.general.timezone
            return render(request, "admin_confirm.html", {
                "form": form, "state": state_view(current, tz),
                "until": local(change.until, tz) if change.until else "",
                "group": group,
                "affected": len(await _people(svc, current, tz))})
        await svc.failover.flip(change)
    except StaleSignIn as err:
        return render(request, "admin_reauth.html", {
            "message": err.message, "minutes": svc.settings.failover.reauth_minutes,
            "reauth_url": "/auth/start?fresh=1&next=" + quote("/admin", safe="")},
            status=err.status)
    except (BadRequest, Conflict, directory.DirectoryUnavailable) as err:
        if isinstance(err, directory.GroupNotFound | directory.GroupEmpty |
                      directory.DirectoryUnavailable):
            err.message += " Nothing was changed."
        return await _page(request, form=form, error=err.message, status=err.status)
    return RedirectResponse("/admin?changed=1", status_code=303)


async def _export(request: Request, what: str, fmt: str) -> Response:
    session = _admin(request)
    svc = services(request)
    now, tz = svc.clock(), svc.settings.general.timezone
    headers = {"Content-Disposition": f'attachment; filename="{what}.{fmt}"'}
    chain = await _chain(svc)
    if not chain.ok:
        # Never hand over altered entries as if they were sound: refused, unless asked for
        # knowingly, and then the response says so.
        if request.query_params.get("force") != "1":
            raise Conflict("The audit chain does not verify (" + "; ".join(chain.problems) +
                           "): this export could carry altered entries. Add ?force=1 to "
                           "export it anyway.")
        headers["X-Audit-Chain"] = "does-not-verify"
    if what == "incidents":
        done = await controls.export_incidents(svc.audit, fmt, now, tz)
        return Response(done.body, media_type=done.media_type, headers=headers)
    q = request.query_params
    since = parse_time(q["since"], now, tz) if q.get("since") else None
    until = parse_time(q["until"], now, tz) if q.get("until") else None
    done = await controls.export_audit(svc.audit, fmt, session.email, since, until)
    return Response(done.body, media_type=done.media_type, headers=headers)


async def export(request: Request) -> Response:
    what, fmt = request.path_params["what"], request.path_params["fmt"]
    if what not in ("incidents", "audit") or fmt not in ("csv", "json"):
        raise BadRequest("Export incidents or audit, as csv or json.")
    return await _export(request, what, fmt)


routes = [
    Route("/admin", admin_page, methods=["GET"]),
    Route("/admin/switch", switch, methods=["POST"]),
    Route("/admin/audit/verify", recheck, methods=["POST"]),
    Route("/admin/evidence", evidence_page, methods=["GET"]),
    Route("/admin/evidence/download", evidence_download, methods=["GET"]),
    Route("/admin/{what}.{fmt}", export, methods=["GET"]),
]
