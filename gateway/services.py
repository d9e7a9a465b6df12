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
from gateway.mail.imap import ImapTarget
from gateway.store.base import Store


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


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
