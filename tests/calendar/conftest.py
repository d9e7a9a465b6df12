"""Calendar fixtures: a Graph stand-in of its own over TLS (so adapter tests need neither
Entra nor Dovecot), Graph-shaped tokens signed by its signer, and the adapter's client built
from settings, as the gateway builds it."""

from __future__ import annotations

import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

import pytest

from gateway.calendar.graph import GraphHttp, TokenSource, static_token
from gateway.certs import make_dev_certs
from gateway.config import load_settings
from gateway.devstack.graph import GraphStandIn
from gateway.devstack.runner import TLSServer
from gateway.devstack.tokens import ACCESS_ISSUER, GRAPH_AUDIENCE, TokenSigner
from gateway.devstack.users import user

T = TypeVar("T")
# A fixed anchor keeps the sample calendar's clock-change events on known dates:
# 27 November 2026 puts them on 25 October 2026 and 28 March 2027.
ANCHOR = date(2026, 11, 27)


@dataclass
class GraphRig:
    stand_in: GraphStandIn
    signer: TokenSigner
    ca_file: str
    loop: Any
    waits: list[float] = field(default_factory=list)
    clients: list[GraphHttp] = field(default_factory=list)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        result: T = self.loop.run(coro)
        return result

    def http(self, **env: str) -> GraphHttp:
        settings = load_settings(environ={
            "GATEWAY_GRAPH_BASE_URL": self.stand_in.base_url + "/v1.0",
            "GATEWAY_GRAPH_CA_FILE": self.ca_file, **env})
        g = GraphHttp.from_settings(settings)

        async def no_wait(seconds: float) -> None:
            self.waits.append(seconds)
        g.sleep = no_wait
        self.clients.append(g)
        return g

    def token(self, who: str = "member", scp: str = "Calendars.ReadWrite User.Read",
              lifetime: int = 3600) -> TokenSource:
        u = user(who)
        now = int(time.time())
        return static_token(self.signer.sign({
            "aud": GRAPH_AUDIENCE, "iss": ACCESS_ISSUER, "iat": now, "nbf": now,
            "exp": now + lifetime, "oid": u.oid, "scp": scp, "upn": u.email,
            "name": u.name}))


@pytest.fixture(scope="session")
def graph_server(loop_thread: Any, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[GraphStandIn, TokenSigner, str]]:
    certs = make_dev_certs(tmp_path_factory.mktemp("graph-certs"))
    signer = TokenSigner()
    stand_in = GraphStandIn(signer, anchor=ANCHOR)
    server = TLSServer(stand_in.app, certs)
    loop_thread.run(server.start())
    stand_in.base_url = server.url
    yield stand_in, signer, str(certs.ca_cert)
    loop_thread.run(server.stop())


@pytest.fixture
def rig(graph_server: tuple[GraphStandIn, TokenSigner, str], loop_thread: Any
        ) -> Iterator[GraphRig]:
    stand_in, signer, ca = graph_server
    stand_in.reset()
    r = GraphRig(stand_in, signer, ca, loop_thread)
    yield r
    stand_in.reset()
    for c in r.clients:
        loop_thread.run(c.aclose())
