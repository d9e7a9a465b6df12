"""The probes behind ``/health`` and ``gateway probe``: one small async function per upstream,
built from the settings by ``build_probes``. They speak each protocol only as far as a monitor
needs and raise ``ProbeFailed`` with a message that names the part that failed.

- ``entra:responseTime``   discovery document fetched, then its JWKS has signing keys.
- ``imap:responseTime``    TLS handshake, greeting, CAPABILITY (XOAUTH2 offered); with a canary
                           mailbox: its XOAUTH2 login (app-only token), kept across rounds
                           and checked with NOOP (``gateway.health.kept``), and SELECT INBOX.
- ``smtp:responseTime``    EHLO, STARTTLS offered and done, AUTH XOAUTH2 offered after it.
- ``graph:responseTime``   with a canary: a light authenticated call; else Graph answers.
- ``store:responseTime``   the store answers a ping; ``sessions:count`` counts sessions.
- ``mailflow:latency``     (``gateway.health.canary``) SMTP -> IMAP round trip of a tagged message.

App-only tokens come from the client-credentials grant (``AppTokens``): this is how Exchange
Online lets an application use IMAP and SMTP for a mailbox it has been granted (the mailbox
is named in the XOAUTH2 ``user=``; the token names the application, not the mailbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote

import aiosmtplib
import httpx

from gateway.auth.apponly import AppTokens
from gateway.config import Settings
from gateway.errors import GatewayError, MailError, ReauthRequired
from gateway.health.kept import KeptLogin
from gateway.health.metrics import Metrics
from gateway.health.monitor import (
    CheckResult,
    HealthMonitor,
    Listener,
    Observation,
    Probe,
    ProbeFailed,
    instant_check,
)
from gateway.health.platform import build_platform_probes, parse_checks
from gateway.mail.imap_login import ImapTarget, ssl_context
from gateway.store.base import Store
from gateway.store.evidence import CanaryRound

OnConnect = Callable[[str], None]


def _noop(_: str) -> None:
    return None


def resource_of(scope: str) -> str:
    """``https://outlook.office.com/IMAP.AccessAsUser.All`` -> ``https://outlook.office.com``."""
    return scope.rpartition("/")[0] if "://" in scope else scope




async def probe_entra(http: httpx.AsyncClient, authority: str) -> None:
    if not authority:
        raise ProbeFailed("entra.authority is not set")
    url = f"{authority.rstrip('/')}/v2.0/.well-known/openid-configuration"
    try:
        r = await http.get(url)
        if r.status_code != 200:
            raise ProbeFailed(f"discovery document: HTTP {r.status_code}")
        jwks_uri = str(r.json().get("jwks_uri") or "")
        if not jwks_uri.startswith("https://"):
            raise ProbeFailed("discovery document names no https jwks_uri")
        k = await http.get(jwks_uri)
        if k.status_code != 200:
            raise ProbeFailed(f"signing keys: HTTP {k.status_code}")
        keys = k.json().get("keys")
    except httpx.HTTPError as exc:
        raise ProbeFailed(f"Entra ID cannot be reached: {type(exc).__name__}") from None
    except ValueError:
        raise ProbeFailed("Entra ID answered with something that is not JSON") from None
    if not isinstance(keys, list) or not keys:
        raise ProbeFailed("no signing keys published")


async def _imap_capability(target: ImapTarget, on_connect: OnConnect) -> None:
    try:
        on_connect("imap")
        reader, writer = await asyncio.open_connection(
            target.host, target.port, ssl=target.ssl_context, server_hostname=target.host)
    except ssl.SSLError as exc:
        raise ProbeFailed(f"IMAP TLS handshake failed: {exc.reason}") from None
    except OSError as exc:
        raise ProbeFailed(f"IMAP server cannot be reached: {exc.strerror or exc}") from None
    try:
        greeting = await reader.readline()
        if not greeting.startswith(b"* OK"):
            raise ProbeFailed("IMAP server sent no OK greeting")
        writer.write(b"h1 CAPABILITY\r\n")
        caps = b""
        while True:
            line = await reader.readline()
            if not line:
                raise ProbeFailed("IMAP server closed the connection during CAPABILITY")
            if line.startswith(b"* CAPABILITY"):
                caps = line.upper()
            if line.startswith(b"h1 "):
                break
        if not line.startswith(b"h1 OK"):
            raise ProbeFailed("IMAP CAPABILITY was refused")
        if b"AUTH=XOAUTH2" not in caps:
            raise ProbeFailed("IMAP server does not offer AUTH=XOAUTH2")
        writer.write(b"h2 LOGOUT\r\n")
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def probe_imap(target: ImapTarget, canary: str, tokens: AppTokens | None,
                     outlook: str, on_connect: OnConnect = _noop,
                     kept: KeptLogin | None = None) -> None:
    """Without a canary: TLS, greeting, CAPABILITY. With one: its login (kept across rounds
    in ``kept``, checked with NOOP: see gateway.health.kept) and SELECT INBOX."""
    if not canary or tokens is None:
        await _imap_capability(target, on_connect)
        return
    if kept is None:
        kept = canary_login(target, canary, tokens, outlook, on_connect)
    try:
        async with kept.use() as conn:
            if not conn.has("IMAP4REV1"):
                raise ProbeFailed("IMAP server does not speak IMAP4rev1")
            await conn.select("INBOX", readonly=True)
    except ReauthRequired:
        raise ProbeFailed("IMAP refused the canary's XOAUTH2 login") from None
    except MailError:
        raise ProbeFailed("the canary's INBOX could not be selected") from None
    except GatewayError:
        raise ProbeFailed("IMAP server cannot be reached (TLS, greeting or login did not "
                          "complete)") from None


def canary_login(target: ImapTarget, canary: str, tokens: AppTokens, resource: str,
                 on_connect: OnConnect = _noop) -> KeptLogin:
    """The canary mailbox's kept IMAP login, with app-only tokens for ``resource``."""
    async def token() -> str:
        return await tokens.token(resource)
    return KeptLogin(target, canary, token, lambda: on_connect("imap"))


async def probe_smtp(host: str, port: int, ctx: ssl.SSLContext, timeout: float,
                     on_connect: OnConnect = _noop) -> None:
    smtp = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, tls_context=ctx,
                           timeout=timeout)
    try:
        on_connect("smtp")
        await smtp.connect()
        await smtp.ehlo()
        if not smtp.supports_extension("starttls"):
            raise ProbeFailed("SMTP server does not offer STARTTLS")
        await smtp.starttls()
        await smtp.ehlo()
        if "xoauth2" not in (m.lower() for m in smtp.server_auth_methods):
            raise ProbeFailed("SMTP server does not offer AUTH XOAUTH2 after STARTTLS")
        with contextlib.suppress(aiosmtplib.SMTPException):
            await smtp.quit()
    except aiosmtplib.SMTPConnectError:
        raise ProbeFailed("SMTP server cannot be reached") from None
    except aiosmtplib.SMTPException as exc:
        raise ProbeFailed(f"SMTP exchange failed: {type(exc).__name__}") from None
    except (OSError, ssl.SSLError) as exc:
        raise ProbeFailed(f"SMTP connection failed: {type(exc).__name__}") from None
    finally:
        smtp.close()


async def probe_graph(http: httpx.AsyncClient, base_url: str, canary: str,
                      tokens: AppTokens | None, graph: str) -> Observation | None:
    base = base_url.rstrip("/")
    try:
        if canary and tokens is not None:
            token = await tokens.token(graph)
            r = await http.get(f"{base}/users/{quote(canary)}/calendar",
                               params={"$select": "id"},
                               headers={"Authorization": f"Bearer {token}"})
            if r.status_code in (401, 403):
                raise ProbeFailed(f"Graph refused the canary's token (HTTP {r.status_code})")
        else:
            r = await http.get(base + "/")
    except httpx.HTTPError as exc:
        raise ProbeFailed(f"Graph cannot be reached: {type(exc).__name__}") from None
    if r.status_code == 429:
        return Observation(status="warn", output="Graph is throttling (HTTP 429)")
    if r.status_code >= 500 or (canary and r.status_code >= 400):
        raise ProbeFailed(f"Graph answered HTTP {r.status_code}")
    return None


async def probe_store(store: Store) -> None:
    try:
        await store.ping()
    except GatewayError:
        raise ProbeFailed("the store does not answer") from None


async def count_sessions(store: Store) -> Observation:
    try:
        return Observation(value=len(await store.list_sessions()))
    except GatewayError:
        raise ProbeFailed("the store does not answer") from None


def probe_http_client(settings: Settings, timeout: float,
                      transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The probes' own HTTP client: no proxy settings from the environment, the Entra CA."""
    return httpx.AsyncClient(verify=ssl_context(settings.entra.ca_file), trust_env=False,
                             timeout=timeout, transport=transport, follow_redirects=False)


def build_probes(settings: Settings, store: Store, http: httpx.AsyncClient, *,
                 tokens: AppTokens | None = None, on_connect: OnConnect = _noop,
                 clock: Callable[[], float] | None = None,
                 on_round: Callable[[CanaryRound], None] | None = None,
                 kept: list[KeptLogin] | None = None) -> list[Probe]:
    """Every probe the settings call for, in the order the document lists them. The IMAP
    logins they keep across rounds are added to ``kept`` (the caller closes them)."""
    kept = [] if kept is None else kept
    timeout = settings.health.timeout_seconds
    canary = settings.health.canary_mailbox
    if canary and tokens is None:
        tokens = AppTokens(settings)
    # App-only access to Exchange Online is granted on its own resource (the documented
    # scope is https://outlook.office365.com/.default), not the delegated scopes' one.
    outlook = resource_of(settings.health.canary_scope)
    graph = resource_of(settings.entra.graph_scope)
    imap = ImapTarget(settings.imap.host, settings.imap.port,
                      ssl_context(settings.imap.ca_file), timeout)
    smtp_ctx = ssl_context(settings.smtp.ca_file)

    async def entra() -> None:
        on_connect("entra")
        await probe_entra(http, settings.entra.authority)

    probe_login = (canary_login(imap, canary, tokens, outlook, on_connect)
                   if canary and tokens is not None else None)
    if probe_login is not None:
        kept.append(probe_login)

    async def imap_() -> None:
        await probe_imap(imap, canary, tokens, outlook, on_connect, probe_login)

    async def smtp() -> None:
        await probe_smtp(settings.smtp.host, settings.smtp.port, smtp_ctx,
                         timeout, on_connect)

    async def graph_() -> Observation | None:
        on_connect("graph")
        return await probe_graph(http, settings.graph.base_url, canary, tokens, graph)

    async def store_() -> None:
        await probe_store(store)

    async def sessions() -> Observation:
        return await count_sessions(store)

    probes = [
        Probe("entra:responseTime", entra, timeout),
        Probe("imap:responseTime", imap_, timeout, component_type="datastore"),
        Probe("smtp:responseTime", smtp, timeout),
        Probe("graph:responseTime", graph_, timeout),
        Probe("store:responseTime", store_, timeout, component_type="datastore"),
        Probe("sessions:count", sessions, timeout, component_type="system"),
    ]
    every = settings.health.mailflow_interval_seconds
    if canary and every > 0 and tokens is not None:
        from gateway.health.canary import MailFlowCanary

        # Its own kept login: a round holds its connection for up to mailflow_fail_seconds,
        # which the IMAP probe must not wait behind.
        flow_login = canary_login(imap, canary, tokens, outlook, on_connect)
        kept.append(flow_login)
        flow = MailFlowCanary(settings, imap, smtp_ctx, canary, tokens, outlook, on_connect,
                              clock=clock or time.time, on_round=on_round, kept=flow_login)
        probes.append(Probe("mailflow:latency", flow.run,
                            settings.health.mailflow_fail_seconds + 2 * timeout,
                            interval=every))
    return probes


@contextlib.asynccontextmanager
async def running_monitor(settings: Settings, store: Store, *, metrics: Metrics | None = None,
                          clock: Callable[[], float] = time.time,
                          failover_mode: Callable[[], str] | None = None,
                          transport: httpx.AsyncBaseTransport | None = None,
                          start: bool = True, listeners: tuple[Listener, ...] = (),
                          instant: dict[str, Callable[[], CheckResult]] | None = None,
                          on_round: Callable[[CanaryRound], None] | None = None,
                          ) -> AsyncIterator[HealthMonitor]:
    """The probe loop for the app's lifespan (and, with ``start=False``, for ``gateway
    probe``): probes built from the settings, results fed to the metrics, stopped on exit."""
    timeout = settings.health.timeout_seconds
    http = probe_http_client(settings, timeout, transport)
    mode_of = failover_mode or (lambda: "standby")
    on_connect = metrics.connection_opened if metrics is not None else _noop

    def mode() -> Observation:
        return Observation(value=str(mode_of()))

    platform_probes, platform_http = build_platform_probes(
        parse_checks(settings.platform.checks), ca_file=settings.platform.ca_file,
        timeout=settings.platform.timeout_seconds,
        interval=settings.platform.interval_seconds, clock=clock)
    kept: list[KeptLogin] = []
    # Made here, not in build_probes, so that its HTTP session is closed with the rest.
    tokens = AppTokens(settings) if settings.health.canary_mailbox else None
    monitor = HealthMonitor(
        [*build_probes(settings, store, http, tokens=tokens, on_connect=on_connect,
                       clock=clock, on_round=on_round, kept=kept), *platform_probes],
        interval=settings.health.interval_seconds, warn_ms=settings.health.warn_ms,
        clock=clock, instant={"failover:mode": instant_check("failover:mode", mode, clock,
                                                             "system"), **(instant or {})},
        listeners=[*([metrics.record_check] if metrics is not None else []), *listeners],
        reprobe_after=settings.health.reprobe_seconds)
    if metrics is not None:
        metrics.watch_mode(lambda: str(mode_of()))
    try:
        if start:
            monitor.start()
        yield monitor
    finally:
        await monitor.stop()
        for login in kept:
            await login.close()
        await http.aclose()
        await platform_http.aclose()
        if tokens is not None:
            tokens.close()
