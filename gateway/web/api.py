"""The ICT automation API: the failover switch, the incident timeline and the audit trail
over HTTP, JSON in and out, for runbooks and monitors. Authenticated by a named bearer API
key (``gateway.auth.apikeys``), never by a session; documented in ``docs/api.md``.

A request here with a bearer header (or without a cookie) skips the session gate, and with
a bearer header also the CSRF check (a cross-site page cannot make a browser send one); the
routes then check the key themselves, whatever cookie came along.
The rules of a flip are the switch's, the same as for the page and the CLI; the version guard
(``version`` or ``If-Match``, else the version this key last saw) is ``gateway.switch.seen``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.auth import apikeys
from gateway.auth.throttle import Limits, address_of
from gateway.errors import BadApiKey, BadRequest, Conflict, TooManyRequests
from gateway.services import app_state, services
from gateway.store.base import ApiKeyRecord
from gateway.switch import controls, directory
from gateway.switch import seen as failover_seen
from gateway.switch.audit import AuditLog
from gateway.switch.machine import Flip, Mode, apply, parse_mode, parse_time

MAX_JSON = 16_384
_ETAG = re.compile(r'^"(\d{1,18})"$')


async def _key(request: Request) -> ApiKeyRecord:
    svc = services(request)
    limits = app_state(request).limits
    address = address_of(request.scope)
    # Rule: anonymous clients cannot make the gateway do unbounded work or storage. An
    # address that has sent too many bad keys gets 429 before any store work.
    wait = limits.api_refused.over(address)
    if wait is not None:
        limits.api_digest.note(address)    # counted for the aggregated entry, no row now
        await flush_refusals(svc.audit, limits)
        raise TooManyRequests("Too many refused API keys from your address. Wait and try "
                              "again.", retry_after=wait)
    try:
        return await apikeys.authenticate(svc.store, request.headers.get("authorization"),
                                          svc.clock())
    except BadApiKey:
        limits.api_refused.hit(address)
        if limits.api_digest.note(address):
            await svc.audit.try_record("api.refused", "api", path=request.url.path,
                                       address=address)
        await flush_refusals(svc.audit, limits)
        raise


async def flush_refusals(audit_log: AuditLog, limits: Limits) -> int:
    """Write the refusals folded since the last aggregated entry, once a window has passed
    (one audit row a minute at most, however many bad keys came)."""
    if not limits.api_digest.due():
        return 0
    await audit_log.try_record("api.refused", "api", **limits.api_digest.take())
    return 1


async def _json_body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise BadRequest("Send JSON (Content-Type: application/json).")
    raw = await request.body()
    if len(raw) > MAX_JSON:
        raise BadRequest("The JSON body is too large.")
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequest("The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string.")
    return value


def _range(request: Request) -> tuple[float | None, float | None]:
    svc = services(request)
    tz, now = svc.settings.general.timezone, svc.clock()
    q = request.query_params
    since = parse_time(q["since"], now, tz) if q.get("since") else None
    until = parse_time(q["until"], now, tz) if q.get("until") else None
    return since, until


def _format(request: Request) -> str:
    fmt = request.query_params.get("format", "json")
    if fmt not in ("json", "csv"):
        raise BadRequest("format must be json or csv.")
    return fmt


def _etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def _if_match(request: Request) -> int | None:
    """The version in ``If-Match: "N"`` (``*`` or absent: none)."""
    raw = request.headers.get("if-match", "").strip()
    if not raw or raw == "*":
        return None
    m = _ETAG.match(raw)
    if not m:
        raise BadRequest('If-Match must be the ETag of GET /api/failover, e.g. "7".')
    return int(m.group(1))


async def state(request: Request) -> Response:
    key = await _key(request)
    svc = services(request)
    current = await svc.failover.current()
    await failover_seen.remember(svc.store, f"api:{key.name}", current.version)
    return JSONResponse({**current.public(), "store_ok": svc.failover.store_ok},
                        headers=_etag(current.version))


async def flip(request: Request) -> Response:
    key = await _key(request)
    svc = services(request)
    body = await _json_body(request)
    version = body.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise BadRequest("version must be an integer.")
    header = _if_match(request)
    if version is not None and header is not None and version != header:
        raise BadRequest("version and If-Match disagree: send one of them.")
    caller = f"api:{key.name}"
    # The version guard: the one sent, else the one this key last saw (GET or its own last
    # change); a key that never looked is not guarded.
    expected = version if version is not None else header
    seen = None
    if expected is None:
        expected = seen = await failover_seen.last_seen(svc.store, caller)
    until = _text(body, "until")
    change = Flip(mode=_text(body, "mode"), reason=_text(body, "reason"), by=caller,
                  until=parse_time(until, svc.clock(), svc.settings.general.timezone)
                  if until else None,
                  group=_text(body, "group"), message=_text(body, "message"),
                  expected_version=expected)
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise BadRequest("force must be true or false.")
    try:
        apply(await svc.failover.current(), change, svc.clock())   # bad input first, cheaply
        check = (await _group_check(request, change.group, force)
                 if parse_mode(change.mode) is Mode.DRILL else None)
        new = await svc.failover.flip(change)
    except Conflict:
        if seen is None:
            raise
        raise Conflict(failover_seen.stale_view(await svc.failover.current(), seen) +
                       " GET /api/failover again, then send its version.") from None
    await failover_seen.remember(svc.store, caller, new.version)
    if check is not None and not check["confirmed"]:
        await svc.audit.try_record("failover.drill.group_unconfirmed", caller, group=new.group,
                                   problem=check["problem"], version=new.version)
    answer = new.public() if check is None else {**new.public(), "group_check": check}
    return JSONResponse(answer, headers=_etag(new.version))


async def _group_check(request: Request, group: str, force: bool) -> dict[str, Any]:
    """The drill group in the directory; refused if it matches nobody or cannot be
    confirmed, unless ``force`` (then audited once the drill has started)."""
    svc = services(request)
    try:
        info = await directory.lookup_group(svc.settings, group)
    except (directory.GroupNotFound, directory.GroupEmpty,
            directory.DirectoryUnavailable) as err:
        if not force:
            err.message += ' Nothing was changed. To start the drill anyway, send "force": true.'
            raise
        found = err.info if isinstance(err, directory.GroupEmpty) else None
        return {"confirmed": False, "problem": err.message,
                "name": found.name if found else None,
                "members": found.members if found else None}
    return {"confirmed": True, "name": info.name, "members": info.members}


async def incidents(request: Request) -> Response:
    await _key(request)
    svc = services(request)
    done = await controls.export_incidents(svc.audit, _format(request), svc.clock(),
                                           svc.settings.general.timezone)
    return Response(done.body, media_type=done.media_type)


async def audit_export(request: Request) -> Response:
    key = await _key(request)
    svc = services(request)
    since, until = _range(request)
    fmt = _format(request)
    done = await controls.export_audit(svc.audit, fmt, f"api:{key.name}", since, until)
    return Response(done.body, media_type=done.media_type)


async def audit_verify(request: Request) -> Response:
    await _key(request)
    verdict = await services(request).audit.verify()
    return JSONResponse({"ok": verdict.ok, "entries": verdict.entries, "head": verdict.head,
                         "broken_entry": verdict.broken_seq, "problem": verdict.problem},
                        status_code=200 if verdict.ok else 409)


routes = [
    Route("/api/failover", state, methods=["GET"]),
    Route("/api/failover", flip, methods=["POST"]),
    Route("/api/failover/incidents", incidents, methods=["GET"]),
    Route("/api/audit", audit_export, methods=["GET"]),
    Route("/api/audit/verify", audit_verify, methods=["GET"]),
]
