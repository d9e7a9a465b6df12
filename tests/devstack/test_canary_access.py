"""App-only access as Exchange grants it after Add-MailboxPermission: the Entra stand-in
issues a client-credentials token for https://outlook.office365.com/.default, and the dev
mail server (real Dovecot, aiosmtpd) accepts it for the canary mailbox only, from the app's
service principal only; the same token for a member's mailbox is refused on both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from gateway.auth.apponly import AppTokens
from gateway.devstack.entra import APP_SERVICE_PRINCIPAL_OID
from gateway.devstack.mailserver import MailServer
from gateway.devstack.stack import DevStack
from gateway.devstack.tokens import EXCHANGE_APP_AUDIENCE
from gateway.devstack.users import user
from gateway.errors import ReauthRequired
from gateway.mail.imap_login import ImapTarget, connect, ssl_context
from tests.conftest import LoopThread

CANARY = user("canary").email
MEMBER = user("member").email


@pytest.fixture
def mail(stack: Any, loop_thread: Any, tmp_path: Path) -> Iterator[MailServer]:
    server = MailServer(tmp_path / "mail", stack.certs, stack.signer,
                        app_mailboxes=(CANARY,), app_principal=APP_SERVICE_PRINCIPAL_OID)
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop())


def test_app_only_token_opens_the_canary_mailbox_and_no_other(stack: DevStack,
                                                              loop_thread: LoopThread,
                                                              mail: MailServer,
                                                              tmp_path: Path) -> None:
    settings = stack.gateway_settings(8443, store__sqlite_path=str(tmp_path / "g.db"))
    tokens = AppTokens(settings)
    target = ImapTarget(mail.host, mail.imap_port, ssl_context(str(stack.certs.ca_cert)), 10)

    async def scenario() -> None:
        token = await tokens.token(EXCHANGE_APP_AUDIENCE)
        claims = stack.signer.verify(token, EXCHANGE_APP_AUDIENCE)
        assert claims["idtyp"] == "app" and claims["oid"] == APP_SERVICE_PRINCIPAL_OID
        assert set(claims["roles"]) == {"IMAP.AccessAsApp", "SMTP.SendAsApp"}
        async with connect(target, CANARY, token) as conn:
            await conn.select("INBOX", readonly=True)
        with pytest.raises(ReauthRequired):
            async with connect(target, MEMBER, token):
                pass
        ctx = ssl_context(str(stack.certs.ca_cert))
        for mailbox, ok in ((CANARY, True), (MEMBER, False)):
            smtp = aiosmtplib.SMTP(hostname=mail.host, port=mail.smtp_port, start_tls=True,
                                   tls_context=ctx, timeout=10)
            await smtp.connect()
            try:
                if ok:
                    await smtp.auth_xoauth2(mailbox, token)
                else:
                    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
                        await smtp.auth_xoauth2(mailbox, token)
            finally:
                smtp.close()

    loop_thread.run(scenario())
    log = mail.log_path.read_text()
    assert f"Login: user=<{CANARY}>" in log


def test_the_stand_in_refuses_app_only_scopes_entra_refuses(stack: DevStack,
                                                            tmp_path: Path) -> None:
    """Client credentials need exactly one resource/.default, as Entra's AADSTS1002012."""
    settings = stack.gateway_settings(8443, store__sqlite_path=str(tmp_path / "g.db"))
    import msal

    from gateway.auth.entra import CachingHttpClient
    app = msal.ConfidentialClientApplication(
        settings.entra.client_id, client_credential=settings.entra.client_secret,
        authority=settings.entra.authority, instance_discovery=False,
        http_client=CachingHttpClient(verify=settings.entra.ca_file))
    bad = app.acquire_token_for_client(scopes=["https://outlook.office365.com/IMAP.AccessAsApp"])
    assert bad.get("error") == "invalid_scope" and "1002012" in bad.get("error_description", "")
    good = app.acquire_token_for_client(scopes=["https://outlook.office365.com/.default"])
    assert "access_token" in good and "refresh_token" not in good
