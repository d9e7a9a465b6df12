"""The calendar tests' rig: a Graph stand-in of its own, Graph-shaped tokens signed by its
signer, and the adapter's client built from settings, as the gateway builds it."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from gateway.config import load_settings
from gateway.devstack.graph import GraphStandIn
from gateway.devstack.tokens import ACCESS_ISSUER, GRAPH_AUDIENCE, TokenSigner
from gateway.devstack.users import user
from gateway.graph.client import GraphHttp, TokenSource, static_token

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

    def run(self, step: Awaitable[T]) -> T:
        async def wait() -> T:
            return await step
        result: T = self.loop.run(wait())
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
