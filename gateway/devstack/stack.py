"""The whole dev stack in one object: dev certificates, the token signer, the Entra ID
stand-in over HTTPS, Dovecot and the SMTP server with seeded council mailboxes, and the
gateway settings that point at all of them. Used by ``gateway demo`` and by the tests.

Everything lives under one working directory and is stopped by ``stop()``; nothing is left
running or written elsewhere."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.certs import DevCerts, make_dev_certs
from gateway.config import Settings, load_settings
from gateway.crypto import new_key
from gateway.devstack.entra import EntraStandIn
from gateway.devstack.graph import GraphStandIn
from gateway.devstack.mailserver import MailServer
from gateway.devstack.runner import TLSServer
from gateway.devstack.seed import SeedSummary, seed
from gateway.devstack.tokens import TokenSigner
from gateway.devstack.users import CLIENT_ID, DEV_CLIENT_SECRET

log = logging.getLogger(__name__)


@dataclass
class DevStack:
    workdir: Path
    exchange_capabilities: bool = False
    seed_messages: int = 300
    certs: DevCerts | None = None
    signer: TokenSigner = field(default_factory=TokenSigner)
    entra: EntraStandIn | None = None
    mail: MailServer | None = None
    summary: SeedSummary | None = None
    _entra_server: TLSServer | None = None
    graph: GraphStandIn | None = None
    _graph_server: TLSServer | None = None

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.certs = make_dev_certs(self.workdir / "certs")
        self.entra = EntraStandIn(self.signer)
        self._entra_server = TLSServer(self.entra.app, self.certs)
        await self._entra_server.start()
        self.entra.base_url = self._entra_server.url
        self.graph = GraphStandIn(self.signer)
        self._graph_server = TLSServer(self.graph.app, self.certs)
        await self._graph_server.start()
        self.graph.base_url = self._graph_server.url
        self.mail = MailServer(self.workdir / "mail", self.certs, self.signer,
                               exchange_capabilities=self.exchange_capabilities)
        try:
            await self.mail.start()
            if self.seed_messages:
                self.summary = seed(self.mail, messages_per_user=self.seed_messages)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self.mail is not None:
            await self.mail.stop()
        if self._entra_server is not None:
            await self._entra_server.stop()
            self._entra_server = None
        if self._graph_server is not None:
            await self._graph_server.stop()
            self._graph_server = None

    def gateway_settings(self, port: int, host: str = "127.0.0.1",
                         **overrides: Any) -> Settings:
        """Settings for a gateway at https://host:port that uses this stack."""
        assert self.certs and self.entra and self.mail, "start() the stack first"
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
            "GATEWAY_STORE_SQLITE_PATH": str(self.workdir / "gateway.db"),
            "GATEWAY_IMAP_HOST": self.mail.host,
            "GATEWAY_IMAP_PORT": str(self.mail.imap_port),
            "GATEWAY_IMAP_CA_FILE": ca,
            "GATEWAY_SMTP_HOST": self.mail.host,
            "GATEWAY_SMTP_PORT": str(self.mail.smtp_port),
            "GATEWAY_SMTP_CA_FILE": ca,
        }
        settings = load_settings(environ=env)
        return settings.replace(**overrides) if overrides else settings
