"""The whole dev stack in one object: dev certificates, the token signer, the Entra ID
stand-in over HTTPS, Dovecot and the SMTP server with seeded council mailboxes, and the
gateway settings that point at all of them. Used by ``gateway demo`` and by the tests.

Everything lives under one working directory and is stopped by ``stop()``; nothing is left
running or written elsewhere."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from gateway.config import Settings, load_settings
from gateway.crypto import new_key
from gateway.devstack.entra import APP_SERVICE_PRINCIPAL_OID, EntraStandIn
from gateway.devstack.exchange_imap import IDLE_TIMEOUT
from gateway.devstack.graph import GraphStandIn
from gateway.devstack.mailserver import MailServer
from gateway.devstack.runner import TLSServer
from gateway.devstack.seed import SeedSummary, invitation_ics, make_message, seed
from gateway.devstack.tokens import TokenSigner
from gateway.devstack.users import CLIENT_ID, DEV_CLIENT_SECRET, PILOT_GROUP, USERS
from gateway.server.certs import DevCerts, make_dev_certs

log = logging.getLogger(__name__)

T = TypeVar("T")


def _started(part: T | None) -> T:
    if part is None:
        raise RuntimeError("start() the dev stack first")
    return part


@dataclass
class DevStack:
    workdir: Path
    exchange_capabilities: bool = False
    # Exchange Online's IMAP personality (gateway.devstack.exchange_imap) in front of Dovecot.
    exchange_proxy: bool = False
    seed_messages: int = 300
    # Mailboxes the app's service principal may open app-only (the demo's canary).
    app_mailboxes: tuple[str, ...] = ()
    # The Exchange proxy's timings (IDLE cut, the login-burst rule).
    imap_idle_timeout: float = 0.0   # 0: Exchange's 30 minutes
    login_burst: tuple[int, float] | None = None
    signer: TokenSigner = field(default_factory=TokenSigner)
    summary: SeedSummary | None = None
    # Made by start(); read them through the properties below, which never give None.
    _certs: DevCerts | None = field(default=None, init=False, repr=False)
    _entra: EntraStandIn | None = field(default=None, init=False, repr=False)
    _mail: MailServer | None = field(default=None, init=False, repr=False)
    _graph: GraphStandIn | None = field(default=None, init=False, repr=False)
    _entra_server: TLSServer | None = field(default=None, init=False, repr=False)
    _graph_server: TLSServer | None = field(default=None, init=False, repr=False)

    @property
    def certs(self) -> DevCerts:
        return _started(self._certs)

    @property
    def entra(self) -> EntraStandIn:
        return _started(self._entra)

    @property
    def mail(self) -> MailServer:
        return _started(self._mail)

    @property
    def graph(self) -> GraphStandIn:
        return _started(self._graph)

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._certs = make_dev_certs(self.workdir / "certs")
        self._entra = EntraStandIn(self.signer)
        self._entra_server = TLSServer(self.entra.app, self.certs)
        await self._entra_server.start()
        self.entra.base_url = self._entra_server.url
        self._graph = GraphStandIn(self.signer)
        self._graph_server = TLSServer(self.graph.app, self.certs)
        await self._graph_server.start()
        self.graph.base_url = self._graph_server.url
        self._mail = MailServer(self.workdir / "mail", self.certs, self.signer,
                               exchange_capabilities=self.exchange_capabilities,
                               exchange_proxy=self.exchange_proxy,
                               app_mailboxes=self.app_mailboxes,
                               app_principal=APP_SERVICE_PRINCIPAL_OID,
                               login_burst=self.login_burst,
                               idle_timeout=self.imap_idle_timeout or IDLE_TIMEOUT)
        try:
            await self.mail.start()
            if self.seed_messages:
                self.summary = await asyncio.to_thread(
                    seed, self.mail, messages_per_user=self.seed_messages)
                self.mail_invitations()
        except BaseException:
            await self.stop()
            raise

    def mail_invitations(self) -> int:
        """Send each member the invitation email for every meeting in their Graph calendar
        still awaiting an answer, with the same iCalendar UID, so that answering from the
        Inbox acts on the calendar event (as Exchange does)."""
        sent = 0
        for u in USERS:
            for stored in list(self.graph.calendar(u.oid).events.values()):
                sd = stored.seed
                if stored.is_organizer or sd.organizer is None or sd.response not in (
                        "none", "notResponded"):
                    continue
                start = sd.start.replace(tzinfo=ZoneInfo(sd.tz))
                end = sd.end.replace(tzinfo=ZoneInfo(sd.tz))
                # An outside organiser's invitation carries their own UID, not Graph's.
                ics = invitation_ics(uid=sd.ics_uid or stored.ical_uid, organizer=sd.organizer,
                                     attendees=[(u.name, u.email)], summary=sd.subject,
                                     location=sd.location, start=start, end=end,
                                     stamp=datetime.now(UTC))
                raw = make_message(sender=f"{sd.organizer[0]} <{sd.organizer[1]}>",
                                   to=[f"{u.name} <{u.email}>"], subject=sd.subject,
                                   date=datetime.now(UTC),
                                   text=f"You are invited: {sd.subject}", calendar=ics)
                self.mail.deliver(u.email, raw)
                sent += 1
        return sent

    async def stop(self) -> None:
        if self._mail is not None:
            await self._mail.stop()
        if self._entra_server is not None:
            await self._entra_server.stop()
            self._entra_server = None
        if self._graph_server is not None:
            await self._graph_server.stop()
            self._graph_server = None

    def gateway_settings(self, port: int, host: str = "127.0.0.1",
                         **overrides: Any) -> Settings:
        """Settings for a gateway at https://host:port that uses this stack."""
        settings = load_settings(environ=self.gateway_env(port, host))
        return settings.replace(**overrides) if overrides else settings

    def gateway_env(self, port: int, host: str = "127.0.0.1") -> dict[str, str]:
        """The same settings as ``GATEWAY_*`` variables, for a gateway run as its own
        process (``gateway serve``); each call makes a new crypto key."""
        ca = str(self.certs.ca_cert)
        env = {
            "GATEWAY_GENERAL_ENVIRONMENT": "development",
            "GATEWAY_SERVER_HOST": host,
            "GATEWAY_SERVER_PORT": str(port),
            "GATEWAY_SERVER_PUBLIC_URL": f"https://{host}:{port}",
            "GATEWAY_SERVER_TLS_CERT": str(self.certs.server_cert),
            "GATEWAY_SERVER_TLS_KEY": str(self.certs.server_key),
            "GATEWAY_ENTRA_AUTHORITY": self.entra.authority,
            "GATEWAY_ENTRA_CLIENT_ID": CLIENT_ID,
            "GATEWAY_ENTRA_CLIENT_SECRET": DEV_CLIENT_SECRET,
            "GATEWAY_ENTRA_CA_FILE": ca,
            "GATEWAY_GRAPH_BASE_URL": f"{self.graph.base_url}/v1.0" if self.graph else "",
            "GATEWAY_GRAPH_CA_FILE": ca,
            "GATEWAY_CRYPTO_KEYS": new_key(),
            "GATEWAY_FAILOVER_PILOT_GROUPS": PILOT_GROUP,
            "GATEWAY_STORE_SQLITE_PATH": str(self.workdir / "gateway.db"),
            "GATEWAY_IMAP_HOST": self.mail.host,
            "GATEWAY_IMAP_PORT": str(self.mail.imap_port),
            "GATEWAY_IMAP_CA_FILE": ca,
            "GATEWAY_SMTP_HOST": self.mail.host,
            "GATEWAY_SMTP_PORT": str(self.mail.smtp_port),
            "GATEWAY_SMTP_CA_FILE": ca,
        }
        return env
