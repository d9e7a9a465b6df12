"""The typed bundle of long-lived services that routes use, kept on ``app.state``. Built by
``create_app``; routes reach it with ``services(request)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from gateway.auth.access import AccessPolicy
from gateway.auth.entra import Entra
from gateway.auth.sessions import SessionManager
from gateway.config import Settings
from gateway.crypto import KeyRing
from gateway.evidence.signing import Signer
from gateway.graph.client import GraphHttp
from gateway.health.history import HistoryRecorder
from gateway.mail.imap import ImapPool, ImapTarget
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
    # The Graph calendar client: built in the lifespan (it owns an httpx connection pool).
    graph: GraphHttp | None = None
    # Evidence: the probe history writer and the report/checkpoint signer (gateway.evidence).
    recorder: HistoryRecorder | None = None
    signer: Signer | None = None


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
