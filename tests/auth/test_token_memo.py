"""The access tokens the gateway keeps between pages (gateway.auth.entra.Entra.access_token).

A token msal gave is used again without msal only while the stored (encrypted) token cache is
the very one it came from and msal would not yet renew it. The tests: a second instance on the
same store refreshing the tokens, or signing the member out, is seen at once by the first; a
forced refresh asks Entra; tokens msal treats as due for renewal are never kept.
"""

from __future__ import annotations

import hashlib

import pytest

from gateway.auth.entra import Entra
from gateway.auth.sessions import SESSION_COOKIE
from gateway.devstack.entra import EntraStandIn
from gateway.devstack.users import TENANT_ID
from gateway.errors import ReauthRequired
from tests.conftest import Gateway, sign_in

TOKEN_PATH = f"/{TENANT_ID}/oauth2/v2.0/token"


def _account(gateway: Gateway, who: str) -> str:
    client = sign_in(gateway, who)
    assert client.get("/").status_code == 200
    svc = gateway.app.state.gateway.services
    sid = client.cookies.get(SESSION_COOKIE)
    session = gateway.loop.run(svc.store.get_session(sid))
    assert session is not None
    return str(session.account_id)


def _fp(token: str) -> str:
    """A token's fingerprint: compared and shown on failure instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def _second(gateway: Gateway) -> Entra:
    """Another gateway instance's Entra client on the same store and keys."""
    svc = gateway.app.state.gateway.services
    return Entra(svc.settings, svc.store, svc.keyring)


def test_kept_token_follows_the_shared_store(gateway: Gateway) -> None:
    entra: Entra = gateway.app.state.gateway.services.entra
    account = _account(gateway, "member2")
    stand_in = gateway.stack.entra
    assert stand_in is not None
    first = _fp(gateway.loop.run(entra.graph_token(account)))
    seen = stand_in.requests_seen[TOKEN_PATH]
    assert _fp(gateway.loop.run(entra.graph_token(account))) == first
    assert stand_in.requests_seen[TOKEN_PATH] == seen          # no refresh: kept or cached

    # Another instance refreshes (a new token written to the shared store): seen at once.
    other = _second(gateway)
    try:
        renewed = _fp(gateway.loop.run(other.graph_token(account, force_refresh=True)))
    finally:
        other.close()
    assert stand_in.requests_seen[TOKEN_PATH] == seen + 1
    assert _fp(gateway.loop.run(entra.graph_token(account))) == renewed

    # A forced refresh here asks Entra whatever is kept.
    gateway.loop.run(entra.graph_token(account, force_refresh=True))
    assert stand_in.requests_seen[TOKEN_PATH] == seen + 2

    # Signed out on the other instance (its token cache deleted): no kept token is used.
    gateway.loop.run(gateway.app.state.gateway.services.store.delete_token_cache(account))
    with pytest.raises(ReauthRequired):
        gateway.loop.run(entra.graph_token(account))


def test_a_token_msal_would_renew_is_never_kept(gateway: Gateway,
                                                short_tokens: EntraStandIn) -> None:
    entra: Entra = gateway.app.state.gateway.services.entra
    account = _account(gateway, "member")
    gateway.loop.run(entra.graph_token(account))
    seen = short_tokens.requests_seen[TOKEN_PATH]
    gateway.loop.run(entra.graph_token(account))
    gateway.loop.run(entra.graph_token(account))
    assert short_tokens.requests_seen[TOKEN_PATH] == seen + 2
