"""Fixtures for the health tests: a private mail server that accepts app-only tokens for the
canary mailbox (as Exchange Online does for an app registration with IMAP.AccessAsApp and
SMTP.SendAsApp and FullAccess to that mailbox: the dev stack's ``MailServer`` with
``app_mailboxes``), and a tiny HTTPS stand-in for Graph."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.devstack.entra import APP_SERVICE_PRINCIPAL_OID
from gateway.devstack.mailserver import MailServer
from gateway.devstack.runner import TLSServer
from gateway.devstack.stack import DevStack
from gateway.devstack.tokens import GRAPH_AUDIENCE
from gateway.devstack.users import user
from tests.conftest import exchange_mode

CANARY = user("canary").email


@pytest.fixture(scope="module")
def app_mail(stack: DevStack, loop_thread: Any, tmp_path_factory: pytest.TempPathFactory,
             pytestconfig: pytest.Config) -> Iterator[MailServer]:
    assert stack.certs is not None
    server = MailServer(tmp_path_factory.mktemp("appmail"), stack.certs, stack.signer,
                        app_mailboxes=(CANARY,), app_principal=APP_SERVICE_PRINCIPAL_OID,
                        **exchange_mode(pytestconfig))
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop())


class GraphLite:
    """Just enough of Graph for the probe: ``GET /v1.0/users/{id}/calendar`` with an
    app-only token that has Calendars.Read; counts requests; can fail on demand."""

    def __init__(self, stack: DevStack) -> None:
        self.stack = stack
        self.fault: int | None = None
        self.base_url = ""  # set once its server is up (graph_lite)
        self.seen = 0
        self.app = Starlette(routes=[
            Route("/v1.0/", self.root),
            Route("/v1.0/users/{uid}/calendar", self.calendar),
        ])

    async def root(self, request: Request) -> JSONResponse:
        self.seen += 1
        if self.fault:
            return JSONResponse({"error": {"code": "serviceNotAvailable"}}, self.fault)
        return JSONResponse({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata"})

    async def calendar(self, request: Request) -> JSONResponse:
        self.seen += 1
        if self.fault:
            return JSONResponse({"error": {"code": "serviceNotAvailable"}}, self.fault)
        auth = request.headers.get("authorization", "")
        try:
            claims = self.stack.signer.verify(auth.removeprefix("Bearer "), GRAPH_AUDIENCE)
        except jwt.InvalidTokenError:
            return JSONResponse({"error": {"code": "InvalidAuthenticationToken"}}, 401)
        if "Calendars.Read" not in claims.get("roles", []):
            return JSONResponse({"error": {"code": "ErrorAccessDenied"}}, 403)
        uid = request.path_params["uid"]
        return JSONResponse({"id": base64.urlsafe_b64encode(uid.encode()).decode()})


@pytest.fixture(scope="module")
def graph_lite(stack: DevStack, loop_thread: Any) -> Iterator[GraphLite]:
    g = GraphLite(stack)
    server = TLSServer(g.app, stack.certs)
    loop_thread.run(server.start())
    g.base_url = server.url + "/v1.0"
    yield g
    loop_thread.run(server.stop())
