"""The typed bundle of long-lived services that routes use, and the typed app state that
holds it (``app.state.gateway``, the only attribute the gateway puts on Starlette's untyped
``app.state``). Built by ``create_app``; routes reach them with ``services(request)`` and
``app_state(request)``."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request

from gateway.auth.access import AccessPolicy
from gateway.auth.blockers import Blockers
from gateway.auth.entra import Entra
from gateway.auth.sessions import SessionManager
from gateway.auth.throttle import Limits
from gateway.config import Settings
from gateway.crypto import KeyRing
from gateway.evidence.checkpoint import ChainWatch
from gateway.evidence.signing import Signer
from gateway.graph.client import GraphHttp
from gateway.health.history import HistoryRecorder
from gateway.health.metrics import Metrics
from gateway.health.monitor import HealthMonitor
from gateway.mail.imap_login import ImapTarget
from gateway.mail.imap_pool import ImapPool
from gateway.mail.smtp import SmtpTarget
from gateway.store.base import Store
from gateway.switch.audit import AuditLog
from gateway.switch.machine import Switch
from gateway.switch.notify import Notifier


@dataclass
class Services:
    settings: Settings
    store: Store
    sessions: SessionManager
    entra: Entra
    keyring: KeyRing
    imap: ImapTarget
    clock: Callable[[], float]
    policy: AccessPolicy
    audit: AuditLog          # the audit trail: await svc.audit.record(kind, actor, **meta)
    failover: Switch         # the failover switch (gateway.switch.machine)
    notifier: Notifier       # switch-change notifications (gateway.switch.notify)
    imap_pool: ImapPool
    smtp: SmtpTarget
    # The one Graph client (calendar, automatic replies, people, group overage): made with
    # the app; the lifespan closes its connection pool at stop and makes a fresh client if
    # the app is started again.
    graph: GraphHttp
    # Evidence: the probe history writer and the report/checkpoint signer (gateway.evidence).
    recorder: HistoryRecorder
    signer: Signer
    # The audit chain as this process last verified it, so /admin reads only new entries.
    chain_watch: ChainWatch = field(default_factory=ChainWatch)


@dataclass(frozen=True)
class Running:
    """What exists only while the app runs, made whole by the lifespan at start-up (never a
    part of it missing) and dropped as a whole when it stops."""

    health: HealthMonitor                      # the running probe loop behind /health
    purge_once: Callable[[], Coroutine[Any, Any, None]]  # one round of the purges


@dataclass
class AppState:
    """What the app keeps between requests. ``running`` is the lifespan's: set while the app
    runs, None while it starts or stops (so /readyz and /health answer 503 then)."""

    services: Services
    limits: Limits           # per-address throttles (gateway.auth.throttle)
    blockers: Blockers       # faults only ICT can fix (gateway.auth.blockers)
    metrics: Metrics
    running: Running | None = None

    @property
    def ready(self) -> bool:
        return self.running is not None


def app_state(where: Request | Starlette) -> AppState:
    app = where.app if isinstance(where, Request) else where
    state: AppState = app.state.gateway
    return state


def services(request: Request) -> Services:
    return app_state(request).services
