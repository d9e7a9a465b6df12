"""Faults only ICT can fix, named and not looped.

A mailbox with IMAP turned off, SMTP AUTH turned off (``535 5.7.139``), a permission missing
from the app registration (AADSTS65001), or Entra refusing the app itself (an expired client
secret): signing in again cannot fix any of them. This module owns what happens instead: the
member sees a page saying in plain words what is wrong and that ICT has been told; the cause is
written once to the audit trail, counted in ``/metrics`` (``gateway_ict_faults_total{kind}``)
and shown in ``/health`` (check ``tenant:faults``, warn, naming each kind and the fix).

The loop rule: Exchange words "IMAP off" exactly like a bad token, so the first time a member
meets it the gateway tries one fresh sign-in. If the same fault comes back on a session that
signed in after the fault was first seen, the gateway stops retrying and shows the page,
keeping the session (the calendar may still work). The memory is per member and kind in the
store's key-value table, so every instance agrees; it lapses after ``MEMORY_SECONDS`` so that,
once ICT has fixed the mailbox, one more try picks the fix up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import Conflict, GatewayError, StoreUnavailable
from gateway.health.monitor import Observation
from gateway.store.base import SessionRecord, Store

log = logging.getLogger(__name__)

MEMORY_SECONDS = 15 * 60
HEALTH_WINDOW_SECONDS = 60 * 60


@dataclass(frozen=True)
class Kind:
    title: str
    member: str        # what the member reads
    ict: str           # what /health, the audit trail and check-tenant tell ICT


KINDS: dict[str, Kind] = {
    "imap_disabled": Kind(
        "Mail access is turned off",
        "Mail access (IMAP) is turned off for your mailbox, so the gateway cannot show your "
        "mail. ICT has been told; they need to turn it on. Your calendar may still work.",
        "Exchange refused IMAP for a mailbox with a valid token: IMAP is disabled for it "
        "(Set-CASMailbox -Identity <member> -ImapEnabled $true) or IMAP.AccessAsUser.All is "
        "not consented (deploy/entra/app-registration.md, section 3)."),
    "smtp_auth_disabled": Kind(
        "Sending is turned off",
        "Sending mail from the gateway (SMTP AUTH) is turned off for your mailbox. ICT has "
        "been told; they need to turn it on. Your message has been kept.",
        "535 5.7.139 SmtpClientAuthentication is disabled for a mailbox: "
        "Set-CASMailbox -Identity <member> -SmtpClientAuthenticationDisabled $false "
        "(or allow SMTP AUTH for the tenant)."),
    "consent_missing": Kind(
        "The gateway is not allowed in yet",
        "The council's Microsoft 365 has not yet given the gateway permission to reach your "
        "mailbox or calendar. ICT has been told; they need to grant it.",
        "AADSTS65001: a scope the gateway asks for is not admin-consented. Fix the API "
        "permissions as in deploy/entra/app-registration.md (section 3) and grant admin "
        "consent."),
    "app_refused": Kind(
        "Sign-in is not working",
        "Microsoft Entra ID is refusing the gateway itself, so nobody can sign in. ICT has "
        "been told; they need to fix the gateway's registration.",
        "Entra refused the app's client credentials (AADSTS7000215/7000222: secret wrong or "
        "expired; AADSTS700016: wrong client id): renew entra.client_secret."),
}


class IctFault(GatewayError):
    """A fault only ICT can fix, as the member sees it. The page keeps the session."""

    status = 503

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.title = KINDS[kind].title
        super().__init__(KINDS[kind].member)


@dataclass
class _Seen:
    members: set[str]
    last: float
    count: int


class Blockers:
    """Records ICT faults and decides between one fresh sign-in and the fault page."""

    def __init__(self, store: Store, audit: object, clock: Callable[[], float],
                 count: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.audit = audit
        self.clock = clock
        self._count = count or (lambda kind: None)
        self._lock = threading.Lock()
        self._recent: dict[str, _Seen] = {}

    @staticmethod
    def _key(kind: str, user_oid: str) -> str:
        # The member's object id is not secret, but there is no need to spell it in keys.
        return "ict-fault:" + kind + ":" + hashlib.sha256(user_oid.encode()).hexdigest()[:32]

    async def report(self, kind: str, session: SessionRecord | None, email: str = "",
                     oid: str = "") -> bool:
        """Record one occurrence. Returns True when the gateway must stop retrying: the
        member has already signed in afresh since this fault was first seen."""
        now = self.clock()
        who = session.user_oid if session else oid
        email = session.email if session else email
        self._count(kind)
        with self._lock:
            seen = self._recent.setdefault(kind, _Seen(set(), now, 0))
            seen.members.add(hashlib.sha256(who.encode()).hexdigest())
            seen.last, seen.count = now, seen.count + 1
        first = None
        stop = False
        try:
            rec = await self.store.kv_get(self._key(kind, who))
            if rec is not None:
                first = float(json.loads(rec.value).get("first", 0))
                if now - first > MEMORY_SECONDS:
                    first = None
            if first is not None and session is not None and session.created_at > first:
                stop = True
            if first is None:
                await self.store.kv_put(self._key(kind, who), json.dumps({"first": now}),
                                        rec.version if rec is not None else 0)
        except (Conflict, StoreUnavailable, ValueError):
            # Another instance wrote it meanwhile, or the store is down: at worst one more
            # sign-in is tried; never a loop (the next occurrence sees the record).
            log.info("ict fault memory not updated (%s)", kind)
        if first is None:
            await self.audit.try_record(  # type: ignore[attr-defined]
                "ict.fault", email, kind=kind, fix=KINDS[kind].ict)
            log.warning("ICT fault %s for a member: %s", kind, KINDS[kind].ict)
        return stop or session is None

    def observation(self) -> Observation:
        """The ``tenant:faults`` health check: warn while any fault was seen in the last hour."""
        now = self.clock()
        with self._lock:
            live = {k: v for k, v in self._recent.items() if now - v.last < HEALTH_WINDOW_SECONDS}
        if not live:
            return Observation(0, "members", "pass", "")
        parts = [f"{k}: {len(v.members)} member(s), last {int(now - v.last)} s ago. "
                 f"{KINDS[k].ict}" for k, v in sorted(live.items())]
        return Observation(sum(len(v.members) for v in live.values()), "members", "warn",
                           " | ".join(parts))
