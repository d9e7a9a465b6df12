"""``create_app``: the only place that knows the middleware order and wires the services.

Middleware, outermost first (seven layers): request id and access log -> security headers ->
metrics -> gzip -> error boundary -> the gate (body limit, session, CSRF, access: four steps
of one layer) -> standby-use counter -> routes. Long-lived objects (store, msal http client,
key ring) are built here and handed to routes as one typed ``AppState`` (``gateway.services``:
the ``Services``, limits, blockers, metrics); what exists only while the app runs (the probe
loop, the purges) the lifespan builds whole as ``AppState.running``.
Seams for tests and the dev stack are keyword arguments, never patches.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.auth.access import AccessPolicy
from gateway.auth.blockers import Blockers, IctFault
from gateway.auth.entra import Entra
from gateway.auth.sessions import SESSION_COOKIE, SessionManager, clear_cookie_header
from gateway.auth.throttle import Limits
from gateway.config import Settings
from gateway.crypto import KeyRing
from gateway.errors import (
    ClaimsChallenge,
    GatewayError,
    ImapDisabled,
    MethodNotAllowed,
    NotFound,
    NotSignedIn,
)
from gateway.evidence.checkpoint import take_checkpoint
from gateway.evidence.signing import Signer, checkpoint_path, key_path, store_id
from gateway.graph.client import GraphHttp
from gateway.health.alerts import Alerts
from gateway.health.history import HistoryRecorder, UsageMiddleware
from gateway.health.metrics import Metrics, MetricsMiddleware
from gateway.health.monitor import Observation, instant_check
from gateway.health.probes import running_monitor
from gateway.logging import RequestIdMiddleware
from gateway.mail.imap_login import ImapTarget, ssl_context
from gateway.mail.imap_pool import ImapPool
from gateway.mail.outbox import Outbox
from gateway.mail.smtp import SmtpTarget
from gateway.services import AppState, Running, Services
from gateway.store.base import Store
from gateway.store.factory import build_store, follow_switch
from gateway.switch.audit import AuditLog
from gateway.switch.machine import STATE_KEY, AuditTrail, FailoverPolicy, Mode, Switch
from gateway.switch.notify import Notifier, NotifyConfig
from gateway.web import admin as admin_routes
from gateway.web import api as api_routes
from gateway.web import auth as auth_routes
from gateway.web import calendar as calendar_routes
from gateway.web import compose as compose_routes
from gateway.web import events as event_routes
from gateway.web import health as health_routes
from gateway.web import mail as mail_routes
from gateway.web import outbox as outbox_routes
from gateway.web import people as people_routes
from gateway.web import replies as replies_routes
from gateway.web import search as search_routes
from gateway.web import send as send_routes
from gateway.web import status as status_routes
from gateway.web.member import sign_in_redirect
from gateway.web.middleware.boundary import ErrorBoundaryMiddleware
from gateway.web.middleware.gates import CompressMiddleware, GateMiddleware
from gateway.web.middleware.paths import rule_for
from gateway.web.middleware.security import SecurityHeadersMiddleware
from gateway.web.render import error_response, render_error, render_refusal

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "web" / "static"
PURGE_INTERVAL = 300.0
NOTIFY_POLL = 5.0


async def _checkpoint(store: Store, signer: Signer, clock: Callable[[], float],
                      settings: Settings) -> None:
    await take_checkpoint(store, signer, clock, str(checkpoint_path(settings)),
                          store_id(settings))


def _keyring(settings: Settings) -> KeyRing:
    keys = settings.crypto_keys
    if not keys:
        # Development only (production refuses to start without keys): an ephemeral key,
        # so token caches do not survive a restart and members simply sign in again.
        import os
        log.warning("crypto.keys is empty: using a temporary key (development only)")
        keys = [os.urandom(32)]
    return KeyRing(keys)


def create_app(settings: Settings, *, store: Store | None = None,
               clock: Callable[[], float] = time.time, entra_http: Any = None,
               policy: AccessPolicy | None = None,
               failover_mode: Callable[[], str] | None = None,
               graph_transport: httpx.AsyncBaseTransport | None = None,
               freeze_heap: bool = False) -> Starlette:
    """The whole app. ``freeze_heap`` (``gateway serve`` only, where the process is the
    gateway) moves what start-up built out of the garbage collector's sight once it is up:
    modules, templates, settings and services live as long as the process, and each full
    collection walked them all again, a pause every in-flight page waited out
    (``bench/throughput.py`` p99 120-137 ms before, 72-85 ms after, 2026-12-04)."""
    keyring = _keyring(settings)
    the_store: Store = store or build_store(settings)
    sessions = SessionManager(the_store, settings, clock)
    entra = Entra(settings, the_store, keyring, http_client=entra_http, clock=clock)
    imap = ImapTarget(settings.imap.host, settings.imap.port,
                      ssl_context(settings.imap.ca_file),
                      settings.imap.timeout_seconds)
    smtp = SmtpTarget(settings.smtp.host, settings.smtp.port,
                      ssl_context(settings.smtp.ca_file),
                      settings.smtp.timeout_seconds,
                      settings.smtp.send_deadline_seconds)
    imap_pool = ImapPool(imap, entra.imap_token)
    # The failover switch: state machine + store, audit trail and notifications as listeners;
    # its policy is what the access gate asks on every request (unless a test passes one).
    audit_log = AuditLog(the_store, clock)
    notifier = Notifier(NotifyConfig.from_settings(settings), clock, store=the_store)
    switch = Switch(the_store, clock, initial_mode=Mode(settings.failover.initial_mode),
                    refresh_seconds=settings.failover.refresh_seconds,
                    listeners=[AuditTrail(audit_log), notifier])
    follow_switch(the_store, switch, STATE_KEY)
    policy = policy or FailoverPolicy(
        switch, settings.failover.pilot_groups,
        on_refusal=lambda s, st: audit_log.try_record("access.refused", s.email,
                                                      mode=str(st.mode)))
    failover_mode = failover_mode or (lambda: str(switch.last_known().mode))
    # Per-address limits on anonymous work (gateway.auth.throttle), shared by the routes.
    limits = Limits.from_settings(settings, clock, auth_routes.FLOW_LIFETIME)
    metrics = Metrics()
    # Faults only ICT can fix (gateway.auth.blockers): counted, audited, in /health.
    from prometheus_client import Counter
    ict_faults = Counter("gateway_ict_faults_total", "Faults only ICT can fix, by kind "
                         "(imap_disabled, smtp_auth_disabled, consent_missing, app_refused).",
                         ["kind"], registry=metrics.registry)
    blockers = Blockers(the_store, audit_log, clock,
                        count=lambda kind: ict_faults.labels(kind=kind).inc())
    imap_pool.on_open = lambda: metrics.connection_opened("imap")
    metrics.imap_open.set_function(lambda: imap_pool.open_connections)
    # Evidence (gateway.health.history and .alerts, gateway.evidence): the probe history, ICT
    # alerts with hysteresis, signed daily audit checkpoints, re-probes on member failures.
    signer = Signer.from_file(key_path(settings))
    recorder = HistoryRecorder(
        the_store, clock, queue_size=settings.health.history_queue,
        history_days=settings.health.history_days,
        raw_days=settings.health.history_raw_days,
        daily=lambda: _checkpoint(the_store, signer, clock, settings))
    alerts = Alerts(notifier.send, alert_after=settings.health.alert_after_seconds,
                    recover_after=settings.health.recover_after_seconds,
                    service=settings.health.service_id)
    notifier.on_given_up.append(lambda _target: metrics.notifications_failed.inc())
    metrics.history_dropped.set_function(lambda: recorder.dropped)
    svc = Services(settings=settings, store=the_store, sessions=sessions, entra=entra,
                   keyring=keyring, imap=imap, clock=clock, policy=policy,
                   imap_pool=imap_pool, smtp=smtp, audit=audit_log, failover=switch,
                   notifier=notifier, recorder=recorder, signer=signer,
                   graph=GraphHttp.from_settings(settings, transport=graph_transport))
    state = AppState(svc, limits, blockers, metrics)

    def notify_status() -> Observation:
        if notifier.given_up_recently():
            return Observation("failed", None, "warn",
                               "a notification was given up in the last 24 h (see /admin)")
        return Observation("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await the_store.open()
        if svc.graph.client.is_closed:
            # Started again after a stop (which closed the client's connection pool).
            svc.graph = GraphHttp.from_settings(settings, transport=graph_transport)
        # The probe loop behind /health (gateway.health.monitor); /metrics on its own port if set.
        health_stack = contextlib.AsyncExitStack()
        monitor = await health_stack.enter_async_context(running_monitor(
            settings, the_store, metrics=metrics, clock=clock, failover_mode=failover_mode,
            listeners=(recorder.observe, alerts.observe), on_round=recorder.canary_round,
            instant={"history:writes": instant_check("history:writes", recorder.status, clock,
                                                     "system"),
                     "notify:deliveries": instant_check("notify:deliveries", notify_status,
                                                        clock, "system"),
                     "tenant:faults": instant_check("tenant:faults", blockers.observation,
                                                    clock, "system")}))
        metrics.on_upstream_failure.append(
            lambda upstream: monitor.reprobe(f"{upstream}:responseTime"))
        recorder.start()
        await notifier.load_state()
        stop_metrics_port = metrics.serve_port(settings.metrics.host,
                                               settings.metrics.port)

        async def purge_once() -> None:
            steps: list[Callable[[], Awaitable[int]]] = [
                imap_pool.reap, sessions.purge,
                lambda: the_store.purge_flows(clock() - auth_routes.FLOW_LIFETIME),
                # Outbox records past MAX_AGE: encrypted drafts and failed sends do not
                # pile up (rule: anonymous or not, nothing grows without bound).
                lambda: Outbox(the_store, keyring).purge(clock()),
                lambda: api_routes.flush_refusals(audit_log, limits)]
            for step in steps:   # one failing step does not skip the others
                with contextlib.suppress(GatewayError):
                    await step()
        state.running = Running(health=monitor, purge_once=purge_once)

        async def purge_loop() -> None:
            while True:
                await asyncio.sleep(PURGE_INTERVAL)
                await purge_once()

        async def switch_loop() -> None:
            # Re-reads the switch and settles an expired drill even when nobody is asking.
            while True:
                with contextlib.suppress(GatewayError):
                    await switch.current()
                await asyncio.sleep(settings.failover.refresh_seconds)

        async def notify_loop() -> None:
            # Kept deliveries (from any instance or the CLI) retried when their time comes.
            while True:
                await asyncio.sleep(NOTIFY_POLL)
                with contextlib.suppress(GatewayError):
                    await notifier.run_due()

        task = asyncio.create_task(purge_loop())
        switch_task = asyncio.create_task(switch_loop())
        notify_task = asyncio.create_task(notify_loop())
        if freeze_heap:
            gc.collect()    # garbage first: what is frozen is never collected
            gc.freeze()
        try:
            yield
        finally:
            if freeze_heap:
                gc.unfreeze()
            state.running = None
            metrics.on_upstream_failure.clear()
            await health_stack.aclose()
            await recorder.stop()
            notify_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await notify_task
            stop_metrics_port()
            task.cancel()
            switch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(asyncio.CancelledError):
                await switch_task
            await notifier.aclose()
            await imap_pool.close_all()
            entra.close()
            await the_store.close()
            await svc.graph.aclose()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        err: GatewayError
        if exc.status_code == 404:
            err = NotFound()
        elif exc.status_code == 405:
            err = MethodNotAllowed()
        else:
            err = GatewayError()
            err.status = exc.status_code
        return error_response(request.scope, err)

    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        session = request.scope.get("state", {}).get("session")
        is_page = request.method == "GET" and rule_for(request.url.path).sign_in_redirect
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if isinstance(exc, IctFault):
            # Named, counted and audited; the session stays (other parts may work).
            await blockers.report(exc.kind, session)
            return error_response(request.scope, exc)
        if isinstance(exc, ImapDisabled) and session is not None and \
                await blockers.report("imap_disabled", session):
            # A fresh sign-in was tried and Exchange still refuses: stop the loop here.
            return error_response(request.scope, IctFault("imap_disabled"))
        if isinstance(exc, ClaimsChallenge) and session is not None:
            # Conditional access wants a sign-in with these claims: straight to Entra with
            # them, and back to this page. The session is replaced at the callback. A form
            # post keeps the session: the next page the member opens takes them through.
            if is_page:
                return RedirectResponse(
                    auth_routes.claims_start_url(keyring, exc.claims, target), 303)
            return error_response(request.scope, exc)
        if isinstance(exc, NotSignedIn) and session is not None:
            # The member's tokens can no longer be refreshed: end this session and send them
            # through sign-in, back to the page they wanted.
            await sessions.end(session)
            request.scope["state"]["session"] = None
            if is_page:
                response = sign_in_redirect(target)
                response.headers.append("Set-Cookie", clear_cookie_header(SESSION_COOKIE))
                return response
        return error_response(request.scope, exc)

    routes = [
        *health_routes.routes,
        *auth_routes.routes,
        *status_routes.routes,
        *admin_routes.routes,
        *api_routes.routes,
        *mail_routes.routes,
        *compose_routes.routes,
        *send_routes.routes,
        *outbox_routes.routes,
        *search_routes.routes,
        *event_routes.routes,
        *calendar_routes.routes,
        *replies_routes.routes,
        *people_routes.routes,
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        Route("/favicon.ico", lambda r: Response(status_code=204)),
    ]
    middleware = [
        Middleware(RequestIdMiddleware, trusted_proxies=settings.server.trusted_proxies),
        Middleware(SecurityHeadersMiddleware, entra_authority=settings.entra.authority),
        Middleware(MetricsMiddleware, metrics=metrics, routes=routes,
                   serve_path=None if settings.metrics.port else "/metrics",
                   allow=lambda scope: health_routes.metrics_allowed(settings, scope)),
        Middleware(CompressMiddleware),
        Middleware(ErrorBoundaryMiddleware),
        Middleware(GateMiddleware, max_bytes=settings.server.max_body_bytes,
                   sessions=sessions, public_origin=settings.public_url,
                   policy_source=lambda: svc.policy, render_error=render_error,
                   render_refusal=render_refusal),
        Middleware(UsageMiddleware, recorder=lambda: svc.recorder),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error, GatewayError: gateway_error})
    app.state.gateway = state
    return app


def from_environment() -> Starlette:
    """The app for each worker process of ``gateway serve`` with ``server.workers`` > 1:
    settings from ``GATEWAY_CONFIG`` and the environment, logging as the parent does."""
    from gateway.config import load_settings
    from gateway.logging import setup_logging
    from gateway.server.limits import configure

    settings = load_settings()
    setup_logging(settings.general.log_level)
    configure(settings)      # this worker's connection limits (gateway.server.limits)
    return create_app(settings, freeze_heap=True)
