"""``gateway check-tenant``: is the real tenant ready for the day the gateway is needed?

ICT runs it against the council's Microsoft 365 before that day (the tests run it against
the dev stack's stand-ins, healthy and broken). One line per check, pass, warn or fail, and
each failure with the fix:

    Entra discovery        the authority's OpenID document and signing keys
    App credentials        client credentials work (secret right and not expired)
    Canary app token       an app-only token for the canary mailbox, with IMAP.AccessAsApp
                           and SMTP.SendAsApp in it
    Canary IMAP login      XOAUTH2 login and SELECT INBOX for the canary mailbox
    Canary SMTP AUTH       AUTH XOAUTH2 after STARTTLS for the canary (names 535 5.7.139)
    Graph calendar         the canary's calendar through Graph (Calendars.Read, app-only)
    Certificates           days left on the certificates of Entra, IMAP, SMTP, Graph and
                           the gateway's own
    Clock                  this machine's clock against Entra's (tokens carry nbf/exp)

Exit codes as ``gateway probe``: 0 all pass, 1 a warning, 2 a failure, 3 could not run.
Nothing is sent (SMTP stops after AUTH) and no token is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiosmtplib
import httpx
import msal
import requests

from gateway.auth.entra import CachingHttpClient
from gateway.cli.config import command_settings
from gateway.cli.health import run_plugin
from gateway.config import Settings
from gateway.errors import GatewayError, ImapDisabled, MailError, ReauthRequired
from gateway.health.probes import resource_of
from gateway.mail.imap_login import ImapTarget, connect, ssl_context

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
CERT_WARN_DAYS = 21
CLOCK_WARN_SECONDS = 60
CLOCK_FAIL_SECONDS = 300       # Entra and Exchange allow about five minutes of skew
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"
_WORD = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}
# Entra's codes for a refused client, with the fix (Microsoft identity platform error codes).
_CLIENT_FIXES = {
    7000215: "The client secret is wrong. Use the secret's Value (shown once when it was "
             "made), not its Secret ID; put it in the file GATEWAY_ENTRA_CLIENT_SECRET_FILE "
             "names.",
    7000222: "The client secret has expired. Add a new one (App registrations -> the gateway "
             "-> Certificates & secrets) and put its Value in the secret file.",
    700016: "No application with entra.client_id exists in this tenant: check entra.client_id "
            "(Application (client) ID) and the tenant id in entra.authority.",
    90002: "The tenant in entra.authority does not exist: use "
           "https://login.microsoftonline.com/<Directory (tenant) ID>.",
    7000218: "No client secret was sent: set entra.client_secret (or its _FILE variable).",
}


@dataclass
class Line:
    status: str            # pass | warn | fail
    name: str
    detail: str
    fix: str = ""


@dataclass
class _Context:
    settings: Settings
    canary: str
    now: Callable[[], float]
    lines: list[Line] = field(default_factory=list)
    # (Entra's Date header, this host's clock when the answer came), to compare the two
    server_dates: list[tuple[float, float]] = field(default_factory=list)
    certs: dict[str, float] = field(default_factory=dict)     # name -> notAfter (epoch)
    graph_token: str = ""
    app_token: str = ""

    def add(self, status: str, name: str, detail: str, fix: str = "") -> None:
        self.lines.append(Line(status, name, detail, fix))


def _claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified: only to say which roles Entra put in it."""
    try:
        part = token.split(".")[1]
        data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        return data
    except (IndexError, ValueError):
        return {}


def _note_cert(ctx: _Context, name: str, peercert: Any) -> None:
    if isinstance(peercert, dict) and peercert.get("notAfter"):
        ctx.certs[name] = ssl.cert_time_to_seconds(str(peercert["notAfter"]))


# ------------------------------------------------------------------------------ checks


async def _discovery(ctx: _Context, http: httpx.AsyncClient) -> bool:
    name = "Entra discovery"
    authority = ctx.settings.entra.authority.rstrip("/")
    if not authority:
        ctx.add("fail", name, "entra.authority is not set",
                "Set entra.authority = https://login.microsoftonline.com/<tenant id>.")
        return False
    url = f"{authority}/v2.0/.well-known/openid-configuration"
    try:
        r = await http.get(url)
        stream = r.extensions.get("network_stream")
        if stream is not None:
            _note_cert(ctx, "Entra ID", stream.get_extra_info("ssl_object").getpeercert())
        if r.headers.get("date"):
            ctx.server_dates.append((parsedate_to_datetime(r.headers["date"]).timestamp(),
                                     ctx.now()))
        if r.status_code != 200:
            ctx.add("fail", name, f"{url} answered HTTP {r.status_code}",
                    "Check the tenant id in entra.authority; if Entra is having an outage, "
                    "see status.cloud.microsoft and run this again later.")
            return False
        doc = r.json()
        keys = (await http.get(str(doc.get("jwks_uri")))).json().get("keys") or []
    except (httpx.HTTPError, ValueError, TypeError) as exc:
        ctx.add("fail", name, f"{url} cannot be reached or read ({type(exc).__name__})",
                "Allow outbound HTTPS to login.microsoftonline.com from this host (firewall, "
                "proxy); check entra.ca_file if a TLS-inspecting proxy is in the way.")
        return False
    if not keys:
        ctx.add("fail", name, "the discovery document names no signing keys",
                "Check entra.authority points at Entra ID itself.")
        return False
    tenant = urlsplit(authority).path.strip("/").split("/")[0]
    if tenant in ("common", "organizations", "consumers"):
        ctx.add("warn", name, f"entra.authority uses '{tenant}', not the council's tenant",
                "Use https://login.microsoftonline.com/<Directory (tenant) ID>: the app is "
                "single-tenant.")
        return True
    ctx.add("pass", name, f"{len(keys)} signing key(s), token endpoint "
            f"{urlsplit(str(doc.get('token_endpoint', ''))).netloc}")
    return True


def _msal_app(settings: Settings) -> Any:
    http = CachingHttpClient(verify=settings.entra.ca_file or True)
    return msal.ConfidentialClientApplication(
        settings.entra.client_id, client_credential=settings.entra.client_secret,
        authority=settings.entra.authority, http_client=http, instance_discovery=False)


async def _app_token(app: Any, scope: str) -> dict[str, Any]:
    try:
        result: dict[str, Any] = await asyncio.to_thread(app.acquire_token_for_client,
                                                         scopes=[scope])
    except (ValueError, requests.RequestException) as exc:
        return {"error": "unreachable", "error_description": type(exc).__name__}
    return result


def _refusal(result: dict[str, Any]) -> tuple[str, str]:
    codes = [int(c) for c in result.get("error_codes") or [] if str(c).isdigit()]
    code = codes[0] if codes else 0
    said = f"{result.get('error', 'no token')}" + (f" AADSTS{code}" if code else "")
    fix = next((f for c, f in _CLIENT_FIXES.items() if c in codes), "")
    if not fix and (code == 65001 or result.get("error") == "invalid_scope"):
        fix = ("Add the application permissions in deploy/entra/app-registration.md, "
               "section 3, and grant admin consent.")
    if not fix and result.get("error") == "unreachable":
        fix = "Allow outbound HTTPS to login.microsoftonline.com from this host."
    return said, fix or "See the AADSTS code in Microsoft's error code reference."


async def _credentials(ctx: _Context, app: Any) -> bool:
    name = "App credentials"
    result = await _app_token(app, GRAPH_DEFAULT)
    if "access_token" not in result:
        said, fix = _refusal(result)
        ctx.add("fail", name, f"Entra refused the app's client credentials ({said})", fix)
        return False
    ctx.graph_token = str(result["access_token"])
    ctx.add("pass", name, f"client {ctx.settings.entra.client_id} signed in with its "
            "secret")
    return True


async def _canary_token(ctx: _Context, app: Any) -> bool:
    name = "Canary app token"
    # The scope the health canary uses (health.canary_scope, Microsoft's documented
    # https://outlook.office365.com/.default): the same token is tested here.
    resource = resource_of(ctx.settings.health.canary_scope)
    result = await _app_token(app, f"{resource}/.default")
    if "access_token" not in result:
        said, fix = _refusal(result)
        ctx.add("fail", name, f"no app-only token for {resource} ({said})", fix)
        return False
    roles = set(_claims(str(result["access_token"])).get("roles") or [])
    missing = [r for r in ("IMAP.AccessAsApp", "SMTP.SendAsApp") if r not in roles]
    if missing:
        ctx.add("fail", name, f"the app-only token lacks {', '.join(missing)}",
                "API permissions -> Add a permission -> APIs my organization uses -> Office "
                f"365 Exchange Online -> Application permissions: {', '.join(missing)}; then "
                "Grant admin consent.")
        return False
    ctx.app_token = str(result["access_token"])
    ctx.add("pass", name, f"app-only token for {resource} with IMAP.AccessAsApp and "
            "SMTP.SendAsApp")
    return True


def _exchange_fix(ctx: _Context, what: str) -> str:
    c, cid = ctx.canary, ctx.settings.entra.client_id
    return (f"In Exchange Online PowerShell: New-ServicePrincipal -AppId {cid} -ObjectId "
            "<the gateway's Enterprise application Object ID>; then Add-MailboxPermission "
            f"-Identity {c} -User <that service principal's id> -AccessRights FullAccess"
            + (f"; and Set-CASMailbox -Identity {c} -ImapEnabled $true" if what == "imap"
               else ""))


async def _imap(ctx: _Context) -> None:
    name = "Canary IMAP login"
    s = ctx.settings
    target = ImapTarget(s.imap.host, s.imap.port, ssl_context(s.imap.ca_file),
                        s.imap.timeout_seconds)
    try:
        async with connect(target, ctx.canary, ctx.app_token) as conn:
            await conn.select("INBOX", readonly=True)
            stream = getattr(getattr(conn, "client", None), "protocol", None)
            transport = getattr(stream, "transport", None)
            if transport is not None:
                _note_cert(ctx, "IMAP", transport.get_extra_info("peercert"))
    except (ImapDisabled, ReauthRequired):
        ctx.add("fail", name, f"{target.host} refused XOAUTH2 for {ctx.canary}",
                _exchange_fix(ctx, "imap"))
        return
    except MailError:
        ctx.add("fail", name, f"logged in, but INBOX of {ctx.canary} could not be opened",
                f"Check the mailbox {ctx.canary} exists and is not being migrated.")
        return
    except GatewayError:
        ctx.add("fail", name, f"{target.host}:{target.port} cannot be reached over TLS",
                "Allow outbound TCP 993 to outlook.office365.com; check imap.host, imap.port "
                "and imap.ca_file.")
        return
    ctx.add("pass", name, f"{ctx.canary} logged in at {target.host} and INBOX opened")


async def _smtp(ctx: _Context) -> None:
    name = "Canary SMTP AUTH"
    s = ctx.settings
    host, port = s.smtp.host, s.smtp.port
    client = aiosmtplib.SMTP(hostname=host, port=port, start_tls=True,
                             tls_context=ssl_context(s.smtp.ca_file),
                             timeout=s.smtp.timeout_seconds)
    try:
        await client.connect()
        transport = getattr(getattr(client, "protocol", None), "transport", None)
        if transport is not None:
            _note_cert(ctx, "SMTP", transport.get_extra_info("peercert"))
        await client.auth_xoauth2(ctx.canary, ctx.app_token)
    except aiosmtplib.SMTPAuthenticationError as exc:
        if "5.7.139" in exc.message:
            ctx.add("fail", name, f"535 5.7.139: SMTP AUTH is disabled for {ctx.canary} (the "
                    "default for tenants created since 2020)",
                    f"Set-CASMailbox -Identity {ctx.canary} -SmtpClientAuthenticationDisabled "
                    "$false (per mailbox, as for each member's mailbox; the tenant-wide "
                    "setting may stay off).")
        else:
            ctx.add("fail", name, f"{host} refused AUTH XOAUTH2 for {ctx.canary} "
                    f"({exc.code})", _exchange_fix(ctx, "smtp"))
        return
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        ctx.add("fail", name, f"{host}:{port} STARTTLS/AUTH did not complete "
                f"({type(exc).__name__})",
                "Allow outbound TCP 587 to smtp.office365.com; check smtp.host, smtp.port and "
                "smtp.ca_file.")
        return
    finally:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            if client.is_connected:
                await client.quit()
        client.close()
    ctx.add("pass", name, f"{ctx.canary} authenticated at {host}:{port} (nothing sent)")


async def _graph(ctx: _Context, http: httpx.AsyncClient) -> None:
    name = "Graph calendar"
    base = ctx.settings.graph.base_url.rstrip("/")
    url = f"{base}/users/{quote(ctx.canary)}/calendar"
    try:
        r = await http.get(url, params={"$select": "id"},
                           headers={"Authorization": f"Bearer {ctx.graph_token}"})
        stream = r.extensions.get("network_stream")
        if stream is not None:
            _note_cert(ctx, "Graph", stream.get_extra_info("ssl_object").getpeercert())
    except httpx.HTTPError as exc:
        ctx.add("fail", name, f"{urlsplit(base).netloc} cannot be reached "
                f"({type(exc).__name__})",
                "Allow outbound HTTPS to graph.microsoft.com; check graph.base_url and "
                "graph.ca_file.")
        return
    if r.status_code == 200:
        ctx.add("pass", name, f"the calendar of {ctx.canary} answered")
    elif r.status_code in (401, 403):
        ctx.add("fail", name, f"Graph refused the app (HTTP {r.status_code})",
                "Add the Microsoft Graph application permission Calendars.Read and grant "
                "admin consent; an application access policy must include the canary "
                "mailbox if one limits the app.")
    elif r.status_code == 404:
        ctx.add("fail", name, f"Graph does not know the mailbox {ctx.canary}",
                "Check health.canary_mailbox names an existing mailbox.")
    else:
        ctx.add("fail", name, f"Graph answered HTTP {r.status_code}",
                "Run this again later; if it persists, see status.cloud.microsoft.")


def _certificates(ctx: _Context) -> None:
    name = "Certificates"
    now = ctx.now()
    own = ctx.settings.server.tls_cert
    if own:
        try:
            from cryptography import x509
            cert = x509.load_pem_x509_certificate(Path(own).read_bytes())
            ctx.certs["gateway (server.tls_cert)"] = cert.not_valid_after_utc.timestamp()
        except (OSError, ValueError):
            ctx.add("fail", name, f"server.tls_cert {own} cannot be read as a PEM certificate",
                    "Point server.tls_cert at the certificate chain file (PEM).")
            return
    if not ctx.certs:
        ctx.add("warn", name, "no certificate could be read", "Run this again once the "
                "endpoints above answer.")
        return
    days = {k: (v - now) / 86400 for k, v in ctx.certs.items()}
    expired = [k for k, d in days.items() if d < 0]
    soon = [k for k, d in days.items() if 0 <= d < CERT_WARN_DAYS]
    listing = ", ".join(f"{k} {int(d)} days" for k, d in days.items())
    if expired:
        ctx.add("fail", name, f"expired: {', '.join(expired)} ({listing})",
                "Renew the gateway's certificate (server.tls_cert); an expired Microsoft "
                "certificate means a TLS-inspecting proxy is in the way.")
    elif soon:
        ctx.add("warn", name, f"expiring within {CERT_WARN_DAYS} days: {', '.join(soon)} "
                f"({listing})", "Renew it before the day the gateway is needed.")
    else:
        ctx.add("pass", name, listing)


def _clock(ctx: _Context) -> None:
    name = "Clock"
    if not ctx.server_dates:
        ctx.add("warn", name, "Entra sent no Date header to compare with",
                "Check this host syncs its clock (timedatectl status).")
        return
    theirs, ours = ctx.server_dates[0]
    # The Date header has whole seconds: up to one second of "skew" is its rounding.
    skew = ours - theirs - 0.5
    detail = f"this host is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} Entra ID"
    fix = "Turn on time sync (timedatectl set-ntp true, or chrony) and check the time zone."
    if abs(skew) > CLOCK_FAIL_SECONDS:
        ctx.add("fail", name, detail + ": tokens will look not yet valid or expired", fix)
    elif abs(skew) > CLOCK_WARN_SECONDS:
        ctx.add("warn", name, detail, fix)
    else:
        ctx.add("pass", name, detail)


async def check_tenant(settings: Settings, now: Callable[[], float] = time.time) -> list[Line]:
    """Every check, in order; a check that needs an earlier one which failed is a fail that
    says so, never skipped silently."""
    ctx = _Context(settings, settings.health.canary_mailbox.strip(), now)
    async with httpx.AsyncClient(verify=ssl_context(settings.entra.ca_file),
                                 trust_env=False, timeout=settings.health.timeout_seconds,
                                 follow_redirects=False) as http, \
            httpx.AsyncClient(verify=ssl_context(settings.graph.ca_file
                                                 or settings.entra.ca_file),
                              trust_env=False, timeout=settings.graph.timeout_seconds,
                              follow_redirects=False) as graph_http:
        reached = await _discovery(ctx, http)
        app = None
        if reached:
            try:
                app = await asyncio.to_thread(_msal_app, settings)
            except (ValueError, requests.RequestException) as exc:
                ctx.add("fail", "App credentials", f"msal could not use entra.authority "
                        f"({type(exc).__name__})", "Check entra.authority and entra.ca_file.")
        creds = app is not None and await _credentials(ctx, app)
        after = "needs a working Entra discovery and app credentials (above)"
        if not ctx.canary:
            for check in ("Canary app token", "Canary IMAP login", "Canary SMTP AUTH",
                          "Graph calendar"):
                ctx.add("warn", check, "no canary mailbox (health.canary_mailbox)",
                        "Set health.canary_mailbox to a dedicated mailbox (docs/"
                        "configuration.md, Health and monitoring) to check mail end to end.")
        elif not creds:
            for check in ("Canary app token", "Canary IMAP login", "Canary SMTP AUTH",
                          "Graph calendar"):
                ctx.add("fail", check, "not checked: " + after, "Fix the checks above first.")
        else:
            assert app is not None
            if await _canary_token(ctx, app):
                await _imap(ctx)
                await _smtp(ctx)
            else:
                for check in ("Canary IMAP login", "Canary SMTP AUTH"):
                    ctx.add("fail", check, "not checked: needs the canary app token (above)",
                            "Fix the canary app token first.")
            await _graph(ctx, graph_http)
    _certificates(ctx)
    _clock(ctx)
    return ctx.lines


def render(lines: list[Line]) -> tuple[int, str]:
    code = OK
    out = []
    for line in lines:
        code = max(code, {"pass": OK, "warn": WARNING, "fail": CRITICAL}[line.status])
        out.append(f"{_WORD[line.status]}  {line.name:<18} {line.detail}")
        if line.fix and line.status != "pass":
            out.append(f"      {'':<18} fix: {line.fix}")
    counts = {s: sum(1 for x in lines if x.status == s) for s in ("pass", "warn", "fail")}
    word = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL"}[code]
    out.append(f"TENANT {word} - {counts['pass']} pass, {counts['warn']} warn, "
               f"{counts['fail']} fail")
    return code, "\n".join(out)


def cmd_check_tenant(args: argparse.Namespace) -> int:
    async def check(settings: Settings) -> tuple[int, str]:
        return render(await check_tenant(settings))

    return run_plugin("TENANT", lambda: command_settings(args, announce=False), check)


def register(subparsers: Any) -> None:
    """Add ``check-tenant`` to the ``gateway`` command's subparsers."""
    p = subparsers.add_parser("check-tenant", help="check the Microsoft 365 tenant is ready "
                              "(one line per check, each failure with its fix)")
    p.set_defaults(fn=cmd_check_tenant)

