"""Fixtures for the health tests: a private mail server that accepts app-only tokens for the
canary mailbox (as Exchange Online does for an app registration with IMAP.AccessAsApp and
SMTP.SendAsApp and FullAccess to that mailbox), and a tiny HTTPS stand-in for Graph.

The shared dev stack's Dovecot checks the token's ``email`` claim against the login, which
app-only tokens do not carry; Exchange instead names the mailbox in the XOAUTH2 ``user=`` and
authorises the token's service principal. ``AppOnlyMailServer`` adds that rule: one more
oauth2 passdb, limited to the canary mailbox, that accepts a token only when its ``oid`` is
the app's service principal."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
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
from gateway.devstack.tokens import ACCESS_ISSUER, GRAPH_AUDIENCE, OUTLOOK_AUDIENCE
from gateway.devstack.users import user

CANARY = user("canary").email


class AppOnlyMailServer(MailServer):
    def __init__(self, *args: Any, app_mailboxes: tuple[str, ...] = (CANARY,),
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app_mailboxes = tuple(m.lower() for m in app_mailboxes)

    def _dovecot_config(self) -> str:
        conf = Path(self.conf_path.parent / "oauth2-app.conf.ext")
        conf.write_text(
            "introspection_mode = local\n"
            f"local_validation_key_dict = fs:posix:prefix={self._keys_dir}/\n"
            # Both sides of Dovecot's username check are expanded with this format; a constant
            # makes it pass, and active_attribute/value check that the token is the app's.
            "username_attribute = oid\n"
            "username_format = app-only\n"
            "active_attribute = oid\n"
            f"active_value = {APP_SERVICE_PRINCIPAL_OID}\n"
            f"issuers = {ACCESS_ISSUER}\n"
            f"client_id = {OUTLOOK_AUDIENCE}\n")
        conf.chmod(0o644)
        return super()._dovecot_config() + (
            "passdb {\n  driver = oauth2\n"
            f"  args = {conf}\n"
            f"  username_filter = {' '.join(self.app_mailboxes)}\n"
            "}\n")

    def _check_xoauth2(self, blob: bytes) -> str | None:
        found = super()._check_xoauth2(blob)
        if found is not None:
            return found
        try:
            fields = dict(p.split("=", 1) for p in blob.decode().split("\x01") if "=" in p)
            claims = self.signer.verify(fields.get("auth", "")[len("Bearer "):],
                                        OUTLOOK_AUDIENCE)
        except (UnicodeDecodeError, ValueError, jwt.InvalidTokenError):
            return None
        login = fields.get("user", "").lower()
        if (claims.get("idtyp") == "app" and claims.get("oid") == APP_SERVICE_PRINCIPAL_OID
                and "SMTP.SendAsApp" in claims.get("roles", [])
                and login in self.app_mailboxes):
            return login
        return None


@pytest.fixture(scope="module")
def app_mail(stack: DevStack, loop_thread: Any,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppOnlyMailServer]:
    assert stack.certs is not None
    server = AppOnlyMailServer(tmp_path_factory.mktemp("appmail"), stack.certs, stack.signer)
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop())


class GraphLite:
    """Just enough of Graph for the probe: ``GET /v1.0/users/{id}/calendar`` with an
    app-only token that has Calendars.Read; counts requests; can fail on demand."""

    def __init__(self, stack: DevStack) -> None:
        self.stack = stack
        self.fault: int | None = None
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
    g.base_url = server.url + "/v1.0"  # type: ignore[attr-defined]
    yield g
    loop_thread.run(server.stop())
