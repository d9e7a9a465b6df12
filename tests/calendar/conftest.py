"""Calendar fixtures: a Graph stand-in of its own over TLS (so adapter tests need neither
Entra nor Dovecot) and the rig around it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gateway.devstack.graph import GraphStandIn
from gateway.devstack.runner import TLSServer
from gateway.devstack.tokens import TokenSigner
from gateway.server.certs import make_dev_certs
from tests.calendar.rig import ANCHOR, GraphRig


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
