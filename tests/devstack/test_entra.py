"""The Entra ID stand-in, served over real TLS and driven by real msal (and raw HTTP where the
protocol itself is under test)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import jwt
import msal
import pytest
import requests

from gateway.devstack.entra import (
    APP_SERVICE_PRINCIPAL_OID,
    EntraStandIn,
    read_form_post,
    read_forms,
)
from gateway.devstack.mailserver import outlook_access_token
from gateway.devstack.runner import TLSServer
from gateway.devstack.tokens import (
    GRAPH_AUDIENCE,
    ISSUED_BACKDATE_SECONDS,
    OUTLOOK_AUDIENCE,
    TokenSigner,
)
from gateway.devstack.users import CLIENT_ID, DEV_CLIENT_SECRET, TENANT_ID, user
from gateway.server.certs import DevCerts, make_dev_certs

IMAP = "https://outlook.office.com/IMAP.AccessAsUser.All"
SMTP = "https://outlook.office.com/SMTP.Send"
CALENDAR = "https://graph.microsoft.com/Calendars.ReadWrite"
# Never contacted: the tests read the form_post page (or the 302) instead of following it.
REDIRECT_URI = "https://gateway.test/auth/callback"
TOKEN_PATH = f"/{TENANT_ID}/oauth2/v2.0/token"
MEMBER = user("member")
ADMIN = user("admin")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return make_dev_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def signer() -> TokenSigner:
    return TokenSigner()


@dataclass
class Stack:
    stand_in: EntraStandIn
    certs: DevCerts
    sessions: list[requests.Session] = field(default_factory=list)

    def http(self, **kw: Any) -> httpx.AsyncClient:
        ctx = ssl.create_default_context(cafile=str(self.certs.ca_cert))
        return httpx.AsyncClient(verify=ctx, trust_env=False, base_url=self.stand_in.base_url,
                                 **kw)

    def _msal(self, **kw: Any) -> msal.ConfidentialClientApplication:
        session = requests.Session()
        session.trust_env = False      # REQUESTS_CA_BUNDLE would override verify=
        session.verify = str(self.certs.ca_cert)
        self.sessions.append(session)
        kw.setdefault("instance_discovery", False)
        return msal.ConfidentialClientApplication(
            CLIENT_ID, client_credential=DEV_CLIENT_SECRET, authority=self.stand_in.authority,
            http_client=session, **kw)

    async def msal_app(self, **kw: Any) -> msal.ConfidentialClientApplication:
        # msal is synchronous and reads discovery at construction: off the loop.
        return await asyncio.to_thread(self._msal, **kw)

    async def authorize(self, flow: dict[str, Any], **extra: str) -> httpx.Response:
        # httpx's params= would replace the URL's query, not add to it.
        url = httpx.URL(flow["auth_uri"]).copy_merge_params(extra)
        async with self.http() as client:
            return await client.get(url)

    async def sign_in(self, app: msal.ConfidentialClientApplication,
                      scopes: list[str] | None = None,
                      who: Any = MEMBER) -> tuple[dict[str, Any], dict[str, str]]:
        """initiate_auth_code_flow, then authorize with dev_auto=1: the flow and the
        form_post fields a browser would have posted to the redirect URI."""
        flow = app.initiate_auth_code_flow(scopes=scopes or [IMAP, SMTP],
                                           redirect_uri=REDIRECT_URI,
                                           response_mode="form_post", login_hint=who.email)
        r = await self.authorize(flow, dev_auto="1")
        assert r.status_code == 200, r.text
        form = read_form_post(r.text)
        assert form.action == REDIRECT_URI and form.method == "post"
        return flow, form.fields


@asynccontextmanager
async def serve(stand_in: EntraStandIn, certs: DevCerts) -> AsyncIterator[Stack]:
    server = TLSServer(stand_in.app, certs)
    await server.start()
    stand_in.base_url = server.url
    stack = Stack(stand_in, certs)
    try:
        yield stack
    finally:
        stand_in.set_fault(None)  # release any hanging request before shutting down
        for session in stack.sessions:
            session.close()  # else uvicorn waits out its graceful timeout on keep-alives
        await server.stop()


@pytest.fixture
async def stack(certs: DevCerts, signer: TokenSigner) -> AsyncIterator[Stack]:
    async with serve(EntraStandIn(signer), certs) as s:
        yield s


def _b64json(part: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return data


def _unverified(token: str) -> dict[str, Any]:
    return _b64json(token.split(".")[1])


def _assert_entra_error(body: dict[str, Any], error: str, code: int) -> None:
    assert body["error"] == error, body
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", body["timestamp"])
    uuid.UUID(body["trace_id"])
    uuid.UUID(body["correlation_id"])


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


# ------------------------------------------------------------------------------ discovery


async def test_discovery_keys_and_msal_construction(stack: Stack, signer: TokenSigner) -> None:
    """Discovery publishes Entra's fields and endpoints, JWKS has the signer's key, msal builds."""
    s = stack.stand_in
    async with stack.http() as client:
        conf = (await client.get(f"/{TENANT_ID}/v2.0/.well-known/openid-configuration")).json()
        keys = (await client.get(urlsplit(conf["jwks_uri"]).path)).json()
        common = (await client.get("/common/v2.0/.well-known/openid-configuration")).json()
        unknown = await client.get("/not-a-tenant/v2.0/.well-known/openid-configuration")
    assert conf["issuer"] == f"{s.base_url}/{TENANT_ID}/v2.0" == s.issuer
    assert conf["authorization_endpoint"] == s.authorization_endpoint
    assert conf["token_endpoint"] == s.token_endpoint
    assert conf["end_session_endpoint"] == s.end_session_endpoint
    assert "form_post" in conf["response_modes_supported"]
    assert conf["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"openid", "profile", "offline_access"} <= set(conf["scopes_supported"])
    assert keys["keys"][0]["kid"] == signer.kid and keys["keys"][0]["n"] == signer.jwk()["n"]
    assert common["issuer"] == f"{s.base_url}/{{tenantid}}/v2.0"
    assert unknown.status_code == 400
    _assert_entra_error(unknown.json(), "invalid_tenant", 90002)
    app = await stack.msal_app()
    assert app.authority.token_endpoint == s.token_endpoint


async def test_instance_discovery_endpoint(stack: Stack) -> None:
    """msal given our /common/discovery/instance validates the authority through it."""
    url = f"{stack.stand_in.base_url}/common/discovery/instance"
    app = await stack.msal_app(instance_discovery=url)
    assert app.authority.authorization_endpoint == stack.stand_in.authorization_endpoint
    async with stack.http() as client:
        r = await client.get("/common/discovery/instance",
                             params={"authorization_endpoint": "https://elsewhere.test/t/x"})
    assert r.status_code == 400
    _assert_entra_error(r.json(), "invalid_instance", 50049)


# ------------------------------------------------------------------------ auth-code flow


async def test_auth_code_flow_signs_in_with_roles_and_account(stack: Stack,
                                                              signer: TokenSigner) -> None:
    """form_post auth-code flow via msal: tokens, roles, nonce, client_info account, claims."""
    app = await stack.msal_app()
    flow, response = await stack.sign_in(app, who=ADMIN)
    assert set(response) == {"code", "state", "session_state", "client_info"}
    result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, response)
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer"
    assert result["scope"].split() == sorted([IMAP, SMTP])
    idc = result["id_token_claims"]
    assert idc["roles"] == list(ADMIN.roles) and idc["groups"] == list(ADMIN.groups)
    assert idc["oid"] == ADMIN.oid and idc["preferred_username"] == ADMIN.email
    assert idc["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()
    signer.verify(result["id_token"], audience=CLIENT_ID, issuer=stack.stand_in.issuer)
    (account,) = app.get_accounts()
    assert account["home_account_id"] == f"{ADMIN.oid}.{TENANT_ID}"
    assert account["username"] == ADMIN.email
    at = signer.verify(result["access_token"], audience=OUTLOOK_AUDIENCE)
    assert at["scp"] == "IMAP.AccessAsUser.All SMTP.Send"
    assert at["email"] == at["upn"] == ADMIN.email
    assert at["azp"] == at["appid"] == CLIENT_ID and at["ver"] == "1.0"
    assert at["sub"] == idc["sub"] != ADMIN.oid       # pairwise, not the object id
    assert "refresh_token" in result


async def test_tokens_are_dated_five_minutes_back_as_entra_dates_them(
        stack: Stack, signer: TokenSigner) -> None:
    """Entra's iat and nbf are five minutes before the token is issued, in ID, delegated and
    app-only tokens; exp and expires_in count from the real time of issue
    (gateway.devstack.tokens names the sources)."""
    app = await stack.msal_app()
    flow, response = await stack.sign_in(app)
    before = int(time.time())
    result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, response)
    app_only = await asyncio.to_thread(app.acquire_token_for_client,
                                       ["https://outlook.office.com/.default"])
    after = int(time.time())
    lifetime = stack.stand_in.access_token_lifetime
    assert ISSUED_BACKDATE_SECONDS == 300
    for token in (result["access_token"], app_only["access_token"]):
        claims = signer.verify(token, audience=OUTLOOK_AUDIENCE)
        assert claims["iat"] == claims["nbf"]
        assert before - ISSUED_BACKDATE_SECONDS <= claims["iat"] <= after - ISSUED_BACKDATE_SECONDS
        assert before + lifetime <= claims["exp"] <= after + lifetime
    assert abs(result["expires_in"] - lifetime) <= 1
    idc = result["id_token_claims"]
    assert idc["iat"] == idc["nbf"]
    assert before - ISSUED_BACKDATE_SECONDS <= idc["iat"] <= after - ISSUED_BACKDATE_SECONDS
    assert idc["exp"] > after
    # The tests' own helper dates its tokens the same way.
    helper = _unverified(outlook_access_token(signer, MEMBER, now=before))
    assert helper["iat"] == helper["nbf"] == before - ISSUED_BACKDATE_SECONDS
    assert helper["exp"] == before + 3600


async def test_silent_same_scopes_hits_cache_graph_uses_refresh(stack: Stack,
                                                                 signer: TokenSigner) -> None:
    """Silent call for the signed-in scopes is a cache hit; Graph comes via one refresh."""
    app = await stack.msal_app()
    flow, response = await stack.sign_in(app)
    first = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, response)
    seen = stack.stand_in.requests_seen[TOKEN_PATH]
    (account,) = app.get_accounts()
    again = await asyncio.to_thread(app.acquire_token_silent, [IMAP, SMTP], account)
    assert again is not None and again["access_token"] == first["access_token"]
    assert stack.stand_in.requests_seen[TOKEN_PATH] == seen
    graph = await asyncio.to_thread(app.acquire_token_silent, [CALENDAR], account)
    assert graph is not None and "access_token" in graph, graph
    assert stack.stand_in.requests_seen[TOKEN_PATH] == seen + 1
    claims = signer.verify(graph["access_token"], audience=GRAPH_AUDIENCE)
    assert "Calendars.ReadWrite" in claims["scp"].split()
    graph_again = await asyncio.to_thread(app.acquire_token_silent, [CALENDAR], account)
    assert graph_again is not None and graph_again["access_token"] == graph["access_token"]
    assert stack.stand_in.requests_seen[TOKEN_PATH] == seen + 1


async def test_access_token_audience_and_helper_variations(stack: Stack,
                                                           signer: TokenSigner) -> None:
    """Tokens verify for their own audience only; the helper forges expired/edited tokens."""
    s = stack.stand_in
    token = s.issue_access_token(MEMBER, OUTLOOK_AUDIENCE, [IMAP, "SMTP.Send"])
    claims = signer.verify(token, audience=OUTLOOK_AUDIENCE)
    assert claims["scp"] == "IMAP.AccessAsUser.All SMTP.Send"
    assert jwt.get_unverified_header(token)["typ"] == "JWT"
    with pytest.raises(jwt.InvalidAudienceError):
        signer.verify(token, audience=GRAPH_AUDIENCE)
    with pytest.raises(jwt.ExpiredSignatureError):
        signer.verify(s.issue_access_token(MEMBER, OUTLOOK_AUDIENCE, [IMAP], lifetime=-120),
                      audience=OUTLOOK_AUDIENCE)
    edited = s.issue_access_token(MEMBER, OUTLOOK_AUDIENCE, [IMAP], email=None, name="X")
    assert "email" not in _unverified(edited) and _unverified(edited)["name"] == "X"
    forged = EntraStandIn(TokenSigner()).issue_access_token(MEMBER, OUTLOOK_AUDIENCE, [IMAP])
    with pytest.raises(jwt.InvalidSignatureError):
        signer.verify(forged, audience=OUTLOOK_AUDIENCE)
    idt = s.id_token_for(ADMIN, nonce="n0")
    assert signer.verify(idt, audience=CLIENT_ID, issuer=s.issuer)["roles"] == list(ADMIN.roles)


async def test_wrong_state_rejected_by_msal(stack: Stack) -> None:
    """A hand-back whose state is not the flow's is refused by msal before any token call."""
    app = await stack.msal_app()
    flow, response = await stack.sign_in(app)
    seen = stack.stand_in.requests_seen[TOKEN_PATH]
    with pytest.raises(ValueError, match="state mismatch"):
        await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow,
                                dict(response, state="forged"))
    assert stack.stand_in.requests_seen[TOKEN_PATH] == seen


async def test_code_replay_is_invalid_grant(stack: Stack) -> None:
    """A code redeems once; a second redemption gets invalid_grant AADSTS54005."""
    app = await stack.msal_app()
    flow, response = await stack.sign_in(app)
    ok = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, dict(flow), response)
    assert "access_token" in ok
    replay = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, dict(flow), response)
    assert replay["error"] == "invalid_grant" and replay["error_codes"] == [54005]


async def test_pkce_mismatch_is_invalid_grant_and_burns_code(stack: Stack) -> None:
    """A wrong code_verifier gets AADSTS501481, and the code cannot be retried."""
    app = await stack.msal_app()
    flow, response = await stack.sign_in(app)
    bad = await asyncio.to_thread(app.acquire_token_by_auth_code_flow,
                                  dict(flow, code_verifier="x" * 43), response)
    assert bad["error"] == "invalid_grant" and bad["error_codes"] == [501481]
    retry = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, response)
    assert retry["error_codes"] == [54005]


async def test_nonce_mismatch_rejected_by_msal(stack: Stack) -> None:
    """msal refuses an id_token whose nonce is not the hash of the flow's nonce."""
    app = await stack.msal_app()
    flow, response = await stack.sign_in(app)
    with pytest.raises(RuntimeError, match="nonce"):
        await asyncio.to_thread(app.acquire_token_by_auth_code_flow,
                                dict(flow, nonce="tampered"), response)


async def test_tamper_next_nonce_and_set_groups_controls(stack: Stack) -> None:
    """tamper_next_nonce spoils one ID token's nonce (msal refuses); set_groups edits groups."""
    s = stack.stand_in
    app = await stack.msal_app()
    s.tamper_next_nonce()
    flow, response = await stack.sign_in(app)
    with pytest.raises(RuntimeError, match="nonce"):
        await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, response)
    s.set_groups(MEMBER.oid, ["g-1", "g-2"])
    flow, response = await stack.sign_in(app)
    result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, response)
    assert result["id_token_claims"]["groups"] == ["g-1", "g-2"]  # and the nonce is good again
    s.set_groups(MEMBER.oid, None)
    assert "groups" not in _unverified(s.id_token_for(MEMBER))


async def test_code_expires_after_ten_minutes(certs: DevCerts, signer: TokenSigner) -> None:
    """A code older than ten minutes (injected clock) gets invalid_grant AADSTS70008."""
    now = [time.time()]
    async with serve(EntraStandIn(signer, clock=lambda: now[0]), certs) as stack:
        app = await stack.msal_app()
        flow, response = await stack.sign_in(app)
        now[0] += 601
        result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, response)
    assert result["error"] == "invalid_grant" and result["error_codes"] == [70008]


async def test_code_bound_to_redirect_uri(stack: Stack) -> None:
    """Redeeming with another redirect_uri than the code's gets AADSTS500112."""
    app = await stack.msal_app()
    flow, response = await stack.sign_in(app)
    result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow,
                                     dict(flow, redirect_uri="https://evil.test/cb"), response)
    assert result["error"] == "invalid_grant" and result["error_codes"] == [500112]


async def test_code_redeems_only_for_scopes_it_was_issued_for(stack: Stack) -> None:
    """Raw redemption: another resource than authorized is refused (AADSTS70000), no scope
    is AADSTS28003, and the code's own scopes work, with client_info only when asked."""
    app = await stack.msal_app()
    flow, response = await stack.sign_in(app)
    base = {"client_id": CLIENT_ID, "client_secret": DEV_CLIENT_SECRET, "code": response["code"],
            "grant_type": "authorization_code", "redirect_uri": REDIRECT_URI,
            "code_verifier": flow["code_verifier"]}
    async with stack.http() as client:
        empty = await client.post(TOKEN_PATH, data=base)  # refused before the code is used
        ok = await client.post(TOKEN_PATH, data=dict(base, scope=f"{SMTP} openid"))
        flow2, response2 = await stack.sign_in(app)
        other = await client.post(TOKEN_PATH, data=dict(
            base, code=response2["code"], code_verifier=flow2["code_verifier"],
            scope=CALENDAR))
    _assert_entra_error(other.json(), "invalid_grant", 70000)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert "client_info" not in body and "refresh_token" in body and "id_token" in body
    assert body["scope"] == f"{SMTP} {IMAP}" and body["expires_in"] == 3600
    _assert_entra_error(empty.json(), "invalid_request", 28003)


async def test_consent_denied_goes_back_to_app(stack: Stack) -> None:
    """deny_consent makes sign-in return consent_required (AADSTS65001) with the state."""
    s = stack.stand_in
    app = await stack.msal_app()
    s.deny_consent(MEMBER.oid)
    flow, response = await stack.sign_in(app)
    assert response["error"] == "consent_required" and response["state"] == flow["state"]
    assert response["error_description"].startswith("AADSTS65001: ")
    result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, response)
    assert result["error"] == "consent_required"
    s.deny_consent(None)
    _, ok = await stack.sign_in(app)
    assert "code" in ok


# ---------------------------------------------------------------------- refresh tokens


async def _signed_in(stack: Stack, who: Any = MEMBER) -> tuple[msal.ConfidentialClientApplication,
                                                               dict[str, Any], Any]:
    app = await stack.msal_app()
    flow, response = await stack.sign_in(app, who=who)
    result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, response)
    assert "access_token" in result, result
    (account,) = app.get_accounts()
    return app, result, account


async def test_revoked_refresh_tokens_fail_silent_acquisition(stack: Stack) -> None:
    """After revocation refresh gets AADSTS50173 and msal drops it; a new sign-in works."""
    app, first, account = await _signed_in(stack)
    stack.stand_in.revoke_refresh_tokens(MEMBER.oid)
    err = await asyncio.to_thread(app.acquire_token_silent_with_error, [CALENDAR], account)
    assert err is not None and err["error"] == "invalid_grant"
    assert err["error_codes"] == [50173]
    assert await asyncio.to_thread(app.acquire_token_silent, [CALENDAR], account) is None
    app2, _, account2 = await _signed_in(stack)
    assert await asyncio.to_thread(app2.acquire_token_silent, [CALENDAR], account2)
    stack.stand_in.unrevoke_refresh_tokens(MEMBER.oid)  # and the old grants work again
    async with stack.http() as client:
        r = await client.post(TOKEN_PATH, data={
            "client_id": CLIENT_ID, "client_secret": DEV_CLIENT_SECRET, "scope": IMAP,
            "grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text


async def test_expired_refresh_tokens_fail_silent_acquisition(stack: Stack) -> None:
    """expire_refresh_tokens makes the next refresh fail with AADSTS700082."""
    app, _, account = await _signed_in(stack)
    stack.stand_in.expire_refresh_tokens()
    err = await asyncio.to_thread(app.acquire_token_silent_with_error, [CALENDAR], account)
    assert err is not None and err["error_codes"] == [700082]


async def test_refresh_rotates_and_refuses_two_resources(stack: Stack) -> None:
    """Refresh returns a new token (old stays valid); two resources at once is AADSTS28000."""
    _, result, _ = await _signed_in(stack)
    rt = result["refresh_token"]
    base = {"client_id": CLIENT_ID, "client_secret": DEV_CLIENT_SECRET,
            "grant_type": "refresh_token", "refresh_token": rt}
    async with stack.http() as client:
        mixed = await client.post(TOKEN_PATH, data=dict(base, scope=f"{CALENDAR} {IMAP}"))
        first = await client.post(TOKEN_PATH, data=dict(base, scope=f"{CALENDAR} openid"))
        second = await client.post(TOKEN_PATH, data=dict(base, scope=IMAP))
        unknown = await client.post(TOKEN_PATH, data=dict(base, refresh_token="nope",
                                                          scope=IMAP))
    assert mixed.status_code == 400
    _assert_entra_error(mixed.json(), "invalid_request", 28000)
    assert first.status_code == second.status_code == 200
    assert first.headers["cache-control"].startswith("no-store")
    body = first.json()
    assert body["refresh_token"] not in (rt, second.json()["refresh_token"])
    assert body["scope"].split()[0] == CALENDAR and "id_token" in body
    assert second.json()["scope"] == f"{IMAP} {SMTP}"
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_request"


# ---------------------------------------------------------------- client auth, app-only


async def test_client_authentication_and_error_shape(stack: Stack) -> None:
    """Secret by body or Basic; bad secret 401 AADSTS7000215; errors carry Entra's fields."""
    cc = {"grant_type": "client_credentials", "scope": "https://graph.microsoft.com/.default"}
    correlation = str(uuid.uuid4())
    async with stack.http() as client:
        bad = await client.post(TOKEN_PATH, data=dict(cc, client_id=CLIENT_ID,
                                                      client_secret="wrong"),
                                headers={"client-request-id": correlation})
        none = await client.post(TOKEN_PATH, data=dict(cc, client_id=CLIENT_ID))
        stranger = await client.post(TOKEN_PATH, data=dict(cc, client_id=str(uuid.uuid4()),
                                                           client_secret="x"))
        basic = await client.post(TOKEN_PATH, data=cc, auth=(CLIENT_ID, DEV_CLIENT_SECRET))
        bad_basic = await client.post(TOKEN_PATH, data=cc, auth=(CLIENT_ID, "wrong"))
        get = await client.get(TOKEN_PATH)
        grant = await client.post(TOKEN_PATH, data=dict(cc, grant_type="password"),
                                  auth=(CLIENT_ID, DEV_CLIENT_SECRET))
    assert bad.status_code == 401
    _assert_entra_error(bad.json(), "invalid_client", 7000215)
    assert bad.json()["correlation_id"] == correlation
    assert f"Correlation ID: {correlation}" in bad.json()["error_description"]
    assert DEV_CLIENT_SECRET not in bad.text
    assert none.status_code == 401
    _assert_entra_error(none.json(), "invalid_client", 7000218)
    _assert_entra_error(stranger.json(), "unauthorized_client", 700016)
    assert basic.status_code == 200 and "access_token" in basic.json()
    assert bad_basic.status_code == 401 and "WWW-Authenticate" in bad_basic.headers
    _assert_entra_error(get.json(), "invalid_request", 900561)
    _assert_entra_error(grant.json(), "unsupported_grant_type", 70003)


async def test_client_credentials_app_only_token(stack: Stack, signer: TokenSigner) -> None:
    """acquire_token_for_client gets an app-only token: roles, no scp, no user claims."""
    app = await stack.msal_app()
    result = await asyncio.to_thread(app.acquire_token_for_client,
                                     ["https://outlook.office.com/.default"])
    assert "access_token" in result, result
    claims = signer.verify(result["access_token"], audience=OUTLOOK_AUDIENCE)
    assert claims["roles"] and "scp" not in claims and "email" not in claims
    assert claims["oid"] == APP_SERVICE_PRINCIPAL_OID and claims["idtyp"] == "app"
    bad = await asyncio.to_thread(app.acquire_token_for_client, [IMAP])
    assert bad["error"] == "invalid_scope" and bad["error_codes"] == [1002012]


# ------------------------------------------------------------------------- authorize


async def test_authorize_errors_before_redirect_render_a_page(stack: Stack) -> None:
    """Without a trusted client and https redirect URI, errors are a 400 page, not a redirect."""
    path = f"/{TENANT_ID}/oauth2/v2.0/authorize"
    good = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code",
            "scope": f"{IMAP} openid"}
    cases = [
        (path, {k: v for k, v in good.items() if k != "client_id"}, "AADSTS900144"),
        (path, dict(good, client_id=str(uuid.uuid4())), "AADSTS700016"),
        (path, {k: v for k, v in good.items() if k != "redirect_uri"}, "AADSTS900144"),
        (path, dict(good, redirect_uri="http://gateway.test/cb"), "AADSTS50011"),
        ("/other-tenant/oauth2/v2.0/authorize", good, "AADSTS90002"),
    ]
    async with stack.http() as client:
        for url, params, code in cases:
            r = await client.get(url, params=params)
            assert r.status_code == 400 and "location" not in r.headers, (params, r.text)
            assert code in r.text and r.headers["content-type"].startswith("text/html")
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        dup = await client.get(f"{path}?{httpx.QueryParams(good)}&client_id={CLIENT_ID}")
        assert dup.status_code == 400 and "AADSTS9002313" in dup.text


async def test_authorize_errors_after_redirect_go_back_to_app(stack: Stack) -> None:
    """Once the redirect URI is trusted, errors go back to it with error, AADSTS code, state."""
    path = f"/{TENANT_ID}/oauth2/v2.0/authorize"
    good = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code",
            "scope": f"{IMAP} openid", "state": "s1", "code_challenge": "a" * 43,
            "code_challenge_method": "S256"}
    cases = [
        ({k: v for k, v in good.items() if k != "code_challenge"}, "invalid_request", 900144),
        (dict(good, code_challenge_method="plain"), "invalid_request", 9002313),
        (dict(good, code_challenge="short"), "invalid_request", 501491),
        (dict(good, response_type="token"), "unsupported_response_type", 700054),
        (dict(good, scope="https://outlook.office.com/Mail.Nope"), "invalid_scope", 70011),
        (dict(good, scope="https://unknown.test/x"), "invalid_resource", 500011),
        (dict(good, prompt="none"), "login_required", 50058),
    ]
    async with stack.http() as client:
        for params, error, code in cases:
            r = await client.get(path, params=params)
            assert r.status_code == 302, (params, r.text)
            assert r.headers["location"].startswith(REDIRECT_URI + "?")
            q = _query(r.headers["location"])
            assert q["error"] == error and q["state"] == "s1", q
            assert q["error_description"].startswith(f"AADSTS{code}: ")
        # Several resources are fine at authorize (consent up front): the picker shows.
        both = await client.get(path, params=dict(good, scope=f"{IMAP} {CALENDAR} openid"))
        assert both.status_code == 200 and "Pick an account" in both.text


async def test_sign_in_page_lists_users_and_query_mode_redirects(stack: Stack) -> None:
    """The picker lists every sample user as a POST form; choosing one 302s back with a code."""
    s = stack.stand_in
    app = await stack.msal_app()
    with pytest.warns(UserWarning, match="form_post"):  # msal nudges: query mode is legal
        flow = app.initiate_auth_code_flow(scopes=[IMAP, SMTP], redirect_uri=REDIRECT_URI,
                                           login_hint=ADMIN.email)
    page = await stack.authorize(flow)
    assert page.status_code == 200
    assert "script-src 'nonce-" in page.headers["content-security-policy"]
    for u in s.users:
        assert u.name in page.text and u.email in page.text
    assert "Gateway.Admin" in page.text and "Roles: none" in page.text
    assert re.search(r'id="user-admin"[^>]*autofocus', page.text)
    forms = {f.fields["login"]: f for f in read_forms(page.text)}
    assert set(forms) == {u.email for u in s.users}
    chosen = forms[MEMBER.email]
    assert chosen.method == "post" and chosen.fields["state"] == flow["state"]
    async with stack.http() as client:
        r = await client.post(urljoin(s.base_url, chosen.action), data=chosen.fields)
        unknown = await client.post(urljoin(s.base_url, chosen.action),
                                    data=dict(chosen.fields, login="nobody@council.example"))
    assert r.status_code == 302 and s.requests_seen[urlsplit(chosen.action).path] == 3
    assert "AADSTS50034" in unknown.text and unknown.status_code == 200
    response = _query(r.headers["location"])
    assert set(response) >= {"code", "state", "session_state"}
    result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, response)
    assert result["id_token_claims"]["oid"] == MEMBER.oid
    assert "roles" in result["id_token_claims"]


async def test_sso_session_prompt_none_and_logout(stack: Stack) -> None:
    """Sign-in sets a browser session (prompt=none then works); logout ends it."""
    app = await stack.msal_app()
    flow = app.initiate_auth_code_flow(scopes=[IMAP], redirect_uri=REDIRECT_URI,
                                       response_mode="form_post", login_hint=MEMBER.email)
    silent = app.initiate_auth_code_flow(scopes=[IMAP], redirect_uri=REDIRECT_URI,
                                         response_mode="form_post", prompt="none")
    async with stack.http() as browser:
        first = await browser.get(httpx.URL(flow["auth_uri"]).copy_merge_params(
            {"dev_auto": "1"}))
        assert "secure" in first.headers["set-cookie"].lower()
        assert "httponly" in first.headers["set-cookie"].lower()
        assert "code" in read_form_post(first.text).fields
        quiet = read_form_post((await browser.get(silent["auth_uri"])).text).fields
        assert "code" in quiet and quiet["state"] == silent["state"]
        out = await browser.get(f"/{TENANT_ID}/oauth2/v2.0/logout",
                                params={"post_logout_redirect_uri": "https://gateway.test/bye"})
        assert out.status_code == 200 and "You signed out" in out.text
        assert 'href="https://gateway.test/bye"' in out.text
        after = read_form_post((await browser.get(silent["auth_uri"])).text).fields
        assert after["error"] == "login_required"
        plain = await browser.get(f"/{TENANT_ID}/oauth2/v2.0/logout",
                                  params={"post_logout_redirect_uri": "http://gateway.test/"})
        assert plain.status_code == 200 and 'href="http://gateway.test/' not in plain.text
    result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, silent, quiet)
    assert result["id_token_claims"]["oid"] == MEMBER.oid


# ---------------------------------------------------------------------------- faults


async def test_fault_error_answers_503_everywhere(stack: Stack) -> None:
    """Fault "error": every endpoint answers 503 with an Entra-shaped JSON error."""
    s = stack.stand_in
    s.set_fault("error")
    async with stack.http() as client:
        for r in (await client.get(f"/{TENANT_ID}/v2.0/.well-known/openid-configuration"),
                  await client.post(TOKEN_PATH, data={"grant_type": "client_credentials"}),
                  await client.get(f"/{TENANT_ID}/oauth2/v2.0/authorize")):
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            _assert_entra_error(r.json(), "temporarily_unavailable", 90033)
    with pytest.raises(msal.exceptions.MsalServiceError):
        await stack.msal_app()
    assert s.requests_seen[TOKEN_PATH] == 1
    s.set_fault(None)
    await stack.msal_app()
    with pytest.raises(ValueError, match="unknown fault"):
        s.set_fault("slow")


async def test_fault_hang_holds_requests_without_blocking(stack: Stack) -> None:
    """Fault "hang": requests wait (loop still free) and complete once the fault is cleared."""
    s = stack.stand_in
    path = f"/{TENANT_ID}/v2.0/.well-known/openid-configuration"
    s.set_fault("hang")
    async with stack.http() as client, stack.http(timeout=0.3) as impatient:
        held = asyncio.create_task(client.get(path))
        with pytest.raises(httpx.ReadTimeout):
            await impatient.get(path)
        assert not held.done()
        s.set_fault(None)
        r = await asyncio.wait_for(held, timeout=5)
    assert r.status_code == 200 and s.requests_seen[path] == 2


# ------------------------------------------------- strict as Entra: registration, CA, overage

STEPUP = user("stepup")
OVERAGE = user("overage")


def _registration(drop: tuple[str, ...] = (), move_to_exchange: tuple[str, ...] = ()) -> Any:
    """The shipped manifest with some permissions dropped or put under Exchange Online (as
    the manifest first shipped did)."""
    from gateway.devstack.registration import (
        CATALOGUE,
        EXCHANGE_APP_ID,
        manifest_path,
        parse_manifest,
    )
    names = {p.id: p.value for p in CATALOGUE}
    manifest = json.loads(manifest_path().read_text())
    moved = []
    for block in manifest["requiredResourceAccess"]:
        keep = []
        for a in block["resourceAccess"]:
            if names.get(a["id"]) in move_to_exchange:
                moved.append(a)
            elif names.get(a["id"]) not in drop:
                keep.append(a)
        block["resourceAccess"] = keep
    manifest["requiredResourceAccess"].append({"resourceAppId": EXCHANGE_APP_ID,
                                               "resourceAccess": moved})
    return parse_manifest(manifest)


async def test_scope_the_manifest_does_not_grant_is_consent_required(
        certs: DevCerts, signer: TokenSigner) -> None:
    """With IMAP/SMTP under the wrong resource (the manifest as first shipped) sign-in ends in
    AADSTS65001 consent_required, as in a tenant with user consent off."""
    reg = _registration(move_to_exchange=("IMAP.AccessAsUser.All", "SMTP.Send"))
    async with serve(EntraStandIn(signer, registration=reg), certs) as stack:
        app = await stack.msal_app()
        _, response = await stack.sign_in(app)
        assert response["error"] == "consent_required"
        assert response["error_description"].startswith("AADSTS65001: ")
        # Graph alone is still granted: a Graph-only sign-in works.
        _, ok = await stack.sign_in(app, scopes=[CALENDAR])
        assert "code" in ok


async def test_refresh_for_an_ungranted_resource_is_invalid_grant_65001(
        certs: DevCerts, signer: TokenSigner) -> None:
    """Token endpoint shape: invalid_grant, AADSTS65001, suberror consent_required."""
    reg = _registration(drop=("Calendars.ReadWrite", "Calendars.Read", "User.Read",
                              "People.Read", "MailboxSettings.ReadWrite"))
    async with serve(EntraStandIn(signer, registration=reg), certs) as stack:
        app = await stack.msal_app()
        flow, response = await stack.sign_in(app)
        result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, response)
        assert "access_token" in result
        account = (await asyncio.to_thread(app.get_accounts))[0]
        graph = await asyncio.to_thread(app.acquire_token_silent_with_error, [CALENDAR],
                                        account)
        assert graph["error"] == "invalid_grant" and graph["error_codes"] == [65001]
        assert graph.get("suberror") == "consent_required"


async def test_email_claim_only_when_granted(certs: DevCerts, signer: TokenSigner) -> None:
    for reg, has_email in ((None, True), (_registration(drop=("email",)), False)):
        async with serve(EntraStandIn(signer, registration=reg), certs) as stack:
            app = await stack.msal_app()
            flow, response = await stack.sign_in(app)
            result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow,
                                             response)
            assert ("email" in result["id_token_claims"]) is has_email


async def test_token_scp_is_what_the_manifest_grants(stack: Stack) -> None:
    app = await stack.msal_app()
    flow, response = await stack.sign_in(app)
    result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, response)
    account = (await asyncio.to_thread(app.get_accounts))[0]
    graph = await asyncio.to_thread(app.acquire_token_silent, [CALENDAR], account)
    assert set(_unverified(graph["access_token"])["scp"].split()) == {
        "User.Read", "Calendars.ReadWrite", "MailboxSettings.ReadWrite", "People.Read"}
    assert _unverified(result["access_token"])["scp"] == "IMAP.AccessAsUser.All SMTP.Send"


async def test_conditional_access_claims_challenge_until_signed_in_with_claims(
        stack: Stack) -> None:
    """The step-up user: IMAP/SMTP fine; a silent Graph token answers interaction_required
    (AADSTS50076) with a claims challenge; signing in again with those claims satisfies it."""
    app = await stack.msal_app()
    flow, response = await stack.sign_in(app, who=STEPUP)
    first = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, response)
    assert "access_token" in first
    account = (await asyncio.to_thread(app.get_accounts))[0]
    graph = await asyncio.to_thread(app.acquire_token_silent_with_error, [CALENDAR], account)
    assert graph["error"] == "interaction_required" and graph["error_codes"] == [50076]
    claims = graph["claims"]
    assert json.loads(claims)["access_token"]["capolids"]["essential"] is True
    again = await asyncio.to_thread(app.acquire_token_silent_with_error, [CALENDAR], account)
    assert again["error"] == "interaction_required"      # still, until they sign in again
    flow2 = app.initiate_auth_code_flow(scopes=[IMAP, SMTP], redirect_uri=REDIRECT_URI,
                                        response_mode="form_post", login_hint=STEPUP.email,
                                        claims_challenge=claims)
    assert "claims=" in flow2["auth_uri"]
    r = await stack.authorize(flow2, dev_auto="1")
    fields = read_form_post(r.text).fields
    done = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow2, fields)
    assert "access_token" in done
    ok = await asyncio.to_thread(app.acquire_token_silent_with_error, [CALENDAR], account,
                                 claims_challenge=claims)
    assert ok and "access_token" in ok and "mfa" in _unverified(ok["access_token"])["amr"]


async def test_group_overage_sends_claim_names_not_groups(stack: Stack) -> None:
    app = await stack.msal_app()
    flow, response = await stack.sign_in(app, who=OVERAGE)
    result = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, response)
    claims = result["id_token_claims"]
    assert "groups" not in claims and len(OVERAGE.groups) > 200
    assert claims["_claim_names"] == {"groups": "src1"}
    assert claims["_claim_sources"]["src1"]["endpoint"].endswith(
        f"/users/{OVERAGE.oid}/getMemberObjects")
    assert claims["roles"] == ["Gateway.Member"]       # roles are never in overage


async def test_transient_token_faults_then_recovery(stack: Stack) -> None:
    """server_error (500, AADSTS50000) and temporarily_unavailable (503 + Retry-After) for
    the next N token requests, then the endpoint answers again."""
    s = stack.stand_in
    app = await stack.msal_app()
    flow, response = await stack.sign_in(app)
    await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, response)
    account = (await asyncio.to_thread(app.get_accounts))[0]
    for kind, status, code in (("server_error", 500, 50000),
                               ("temporarily_unavailable", 503, 90033)):
        s.fail_token_requests(kind, 1)
        async with stack.http() as client:
            r = await client.post(TOKEN_PATH, data={
                "grant_type": "client_credentials", "client_id": CLIENT_ID,
                "client_secret": DEV_CLIENT_SECRET,
                "scope": "https://graph.microsoft.com/.default"})
        assert r.status_code == status
        _assert_entra_error(r.json(), kind, code)
        assert (r.headers.get("retry-after") == "60") is (status == 503)
    ok = await asyncio.to_thread(app.acquire_token_silent, [CALENDAR], account)
    assert ok and "access_token" in ok
    with pytest.raises(ValueError, match="unknown token fault"):
        s.fail_token_requests("slow")


async def test_control_endpoint_over_https(stack: Stack) -> None:
    """The controls answer over HTTPS only with the admin key, and work during a fault."""
    s = stack.stand_in
    async with stack.http() as client:
        refused = await client.post("/_devstack/control", json={"fault": "error"})
        assert refused.status_code == 401 and s._fault is None
        auth = {"Authorization": f"Bearer {s.admin_key}"}
        on = await client.post("/_devstack/control", json={"fault": "error"}, headers=auth)
        assert on.status_code == 200 and on.json()["fault"] == "error"
        down = await client.get(f"/{TENANT_ID}/v2.0/.well-known/openid-configuration")
        assert down.status_code == 503
        off = await client.post("/_devstack/control", json={
            "fault": None, "token_fault": {"kind": "server_error", "count": 2},
            "step_up": {"oid": MEMBER.oid, "on": True}}, headers=auth)
        assert off.json() == {"ok": True, "fault": None, "token_faults": 2}
        bad = await client.post("/_devstack/control", json={"fault": "melt"}, headers=auth)
        assert bad.status_code == 400
    s.fail_token_requests(None)
    s.set_step_up(MEMBER.oid, False)
