"""A stand-in for Microsoft Entra ID (the Azure AD v2.0 endpoints), for `gateway demo` and the
tests.

It owns the identity side of the dev stack: OpenID discovery, the signing keys, the authorize
endpoint (an account picker over the sample users instead of a password prompt), the token
endpoint (authorization_code with PKCE, refresh_token, client_credentials), and sign-out. The
gateway reaches it through msal's real code path over real TLS, so it speaks the wire protocol
as Entra does: the same paths, parameters, response fields, token claims and AADSTS-coded
error shapes. Where it is deliberately stricter than Entra (PKCE S256 is required, only https://
redirect URIs) the code says so.

Consent follows the app registration: the stand-in reads the shipped
``deploy/entra/manifest.json`` (``gateway.devstack.registration``), takes its permissions as
admin-consented with user consent off (as in most councils), and refuses any scope the
manifest does not grant under the right resource as Entra does (AADSTS65001). Sample users
model what real tenants do to an app: one behind conditional access (a silent Graph token
answers ``interaction_required`` with a claims challenge, AADSTS50076, until they sign in again
with those claims), one in more than 200 groups (group overage: ``_claim_names`` and
``_claim_sources`` instead of ``groups``); the ``email`` claim appears only when the ``email``
permission is granted.

It also owns the controls tests and rehearsals use to make Entra misbehave: revoke or expire
refresh tokens, deny consent, change a user's groups, spoil an ID token's nonce, answer every
request with a 503, hang, or fail the next token requests with a 500 or
``temporarily_unavailable``. The same controls are served over HTTPS at ``/_devstack/control``
(bearer ``admin_key``), so a test or a rehearsal in another process can flip them.

Everything is in memory. No code, token or secret is logged."""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.devstack import entra_pages
from gateway.devstack.entra_pages import FormPost, read_form_post, read_forms
from gateway.devstack.registration import (
    CATALOGUE,
    EXCHANGE_APP_RESOURCE,
    Registration,
    load_registration,
)
from gateway.devstack.tokens import (
    ACCESS_ISSUER,
    EXCHANGE_APP_AUDIENCE,
    GRAPH_AUDIENCE,
    ISSUED_BACKDATE_SECONDS,
    OUTLOOK_AUDIENCE,
    TokenSigner,
)
from gateway.devstack.users import (
    CLIENT_ID,
    DEV_CLIENT_SECRET,
    GROUP_CLAIM_LIMIT,
    TENANT_ID,
    USERS,
    SampleUser,
)

__all__ = [
    "APPLICATION_PERMISSIONS",
    "APP_SERVICE_PRINCIPAL_OID",
    "CODE_LIFETIME",
    "DELEGATED_PERMISSIONS",
    "EntraStandIn",
    "FormPost",
    "read_form_post",
    "read_forms",
]

log = logging.getLogger(__name__)

# The delegated permissions that exist per resource (Microsoft's catalogue, not what this app
# is granted: that is the manifest's business). A scope outside this is invalid (AADSTS70011);
# one inside it that the manifest does not grant is not consented (AADSTS65001). Entra issues
# every consented scope of a resource in one token, so the granted ones are what `scp` carries.
# Names are matched case-insensitively, as Entra does.
DELEGATED_PERMISSIONS: dict[str, tuple[str, ...]] = {
    aud: tuple(p.value for p in CATALOGUE if p.kind == "Scope" and p.audience == aud)
    for aud in (OUTLOOK_AUDIENCE, GRAPH_AUDIENCE)
}
# Application permissions (app roles) that exist per resource, for client_credentials.
APPLICATION_PERMISSIONS: dict[str, tuple[str, ...]] = {
    OUTLOOK_AUDIENCE: tuple(p.value for p in CATALOGUE
                            if p.kind == "Role" and p.audience == EXCHANGE_APP_RESOURCE),
    GRAPH_AUDIENCE: tuple(p.value for p in CATALOGUE
                          if p.kind == "Role" and p.audience == GRAPH_AUDIENCE),
    # Office 365 Exchange Online's application permissions, as granted for the canary.
    EXCHANGE_APP_AUDIENCE: tuple(p.value for p in CATALOGUE
                                 if p.kind == "Role" and p.audience == EXCHANGE_APP_RESOURCE),
}
# The conditional-access policy the step-up sample user is under (MFA for Microsoft Graph).
CA_POLICY_ID = "4c8a2f1e-6d3b-4e5a-9f70-1b2c3d4e5f60"
CONTROL_PATH = "/_devstack/control"
_TOKEN_FAULTS = ("server_error", "temporarily_unavailable")
# The object id of the app's service principal: the subject of app-only tokens.
APP_SERVICE_PRINCIPAL_OID = "0e9f8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f"
APP_DISPLAY_NAME = "Failover mail gateway (dev)"

CODE_LIFETIME = 600              # Entra's authorization codes live about ten minutes
_OIDC_SCOPES = ("openid", "profile", "email", "offline_access")
# Entra returns these in a token response's `scope` only for Microsoft Graph; for any other
# resource the OIDC scopes are left out (msal copes either way: its cache keys are scope sets).
_GRAPH_ECHOED_OIDC = ("openid", "profile", "email")
_DISCOVERY_ALIASES = ("common", "organizations")
_SSO_COOKIE = "ESTSAUTH"
_FAULTS = ("error", "hang")
_MFA_CLAIMS = json.dumps({"access_token": {"capolids": {"essential": True,
                                                        "values": [CA_POLICY_ID]}}},
                         separators=(",", ":"))
_HANG_POLL = 0.05
_MAX_BODY = 64 * 1024
_MAX_PARAMS = 50
_MAX_PARAM_LEN = 8192
_PARAM_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_NETLOC = re.compile(r"^(?:[A-Za-z0-9\-.]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")
_PKCE_CHALLENGE = re.compile(r"^[A-Za-z0-9_\-]{43}$")


# ---------------------------------------------------------------------------------- errors


class EntraError(Exception):
    """An OAuth error the way Entra words it: an OAuth ``error`` plus an AADSTS code."""

    def __init__(self, error: str, code: int, message: str, *, status: int = 400,
                 suberror: str | None = None, claims: str | None = None) -> None:
        super().__init__(f"{error}: AADSTS{code}: {message}")
        self.error = error
        self.code = code
        self.message = message
        self.status = status
        self.suberror = suberror
        self.claims = claims

    @property
    def aadsts(self) -> str:
        return f"AADSTS{self.code}: {self.message}"


def _missing(name: str) -> EntraError:
    return EntraError("invalid_request", 900144,
                      f"The request body must contain the following parameter: '{name}'.")


def _malformed(reason: str) -> EntraError:
    return EntraError("invalid_request", 9002313,
                      f"Invalid request. Request is malformed or invalid. - The reason: {reason}")


def _bad_grant(reason: str) -> EntraError:
    return EntraError("invalid_grant", 70000, f"Provided grant is invalid or malformed. {reason}")


# ---------------------------------------------------------------------------------- scopes


def _norm_resource(resource: str) -> str:
    return resource.rstrip("/").lower()


_RESOURCES = {_norm_resource(r): r for r in DELEGATED_PERMISSIONS}
# Resources reachable only app-only (client credentials), e.g. Exchange's outlook.office365.com.
_APP_RESOURCES = {_norm_resource(r): r for r in APPLICATION_PERMISSIONS}


@dataclass(frozen=True)
class _ResourceScope:
    raw: str          # exactly as the app sent it: echoed back so msal's cache finds it
    resource: str     # canonical resource URI, e.g. https://outlook.office.com
    name: str         # short name, e.g. IMAP.AccessAsUser.All or .default


@dataclass(frozen=True)
class _ScopeSet:
    oidc: tuple[str, ...]
    resource_scopes: tuple[_ResourceScope, ...]

    @property
    def resources(self) -> list[str]:
        return list(dict.fromkeys(s.resource for s in self.resource_scopes))

    def has(self, oidc_scope: str) -> bool:
        return oidc_scope in self.oidc


def _parse_scopes(text: str, catalogue: Mapping[str, Sequence[str]]) -> _ScopeSet:
    """Split a scope parameter into OIDC scopes and resource scopes, checking each resource
    scope against the registration. A bare name (``Calendars.ReadWrite``) means Graph, as in
    Entra."""
    oidc: list[str] = []
    scopes: list[_ResourceScope] = []
    for raw in dict.fromkeys(text.split()):
        if raw.lower() in _OIDC_SCOPES:
            oidc.append(raw.lower())
            continue
        resource_part, sep, name = raw.rpartition("/")
        resource = _RESOURCES.get(_norm_resource(resource_part)) if sep else GRAPH_AUDIENCE
        if sep and resource is None:
            raise EntraError(
                "invalid_resource", 500011,
                f"The resource principal named {resource_part} was not found in the tenant "
                f"named {TENANT_ID}. This can happen if the application has not been installed "
                "by the administrator of the tenant or consented to by any user in the tenant.")
        assert resource is not None
        known = {p.lower(): p for p in catalogue.get(resource, ())}
        if name.lower() != ".default" and name.lower() not in known:
            raise EntraError("invalid_scope", 70011,
                             "The provided value for the input parameter 'scope' is not valid. "
                             f"The scope {raw} is not valid.")
        canonical = ".default" if name.lower() == ".default" else known[name.lower()]
        scopes.append(_ResourceScope(raw, resource, canonical))
    return _ScopeSet(tuple(oidc), tuple(scopes))


def _one_resource(scopes: _ScopeSet, raw: str) -> str:
    """The token endpoint issues a token for one resource; Entra refuses a mix (AADSTS28000).
    With no resource scope at all, Entra issues a Microsoft Graph token."""
    resources = scopes.resources
    if len(resources) > 1:
        raise EntraError(
            "invalid_request", 28000,
            "Provided value for the input parameter scope is not valid because it contains "
            f"more than one resource. Scope {raw} is not valid.")
    return resources[0] if resources else GRAPH_AUDIENCE


def _covers(authorized: _ScopeSet, requested: _ScopeSet) -> bool:
    """Whether a code redemption asks only for what the authorize request asked for (a
    resource's .default on either side stands for all of that resource's scopes)."""
    granted = {(s.resource, s.name.lower()) for s in authorized.resource_scopes}
    resources = {s.resource for s in authorized.resource_scopes}
    whole = {s.resource for s in authorized.resource_scopes if s.name == ".default"}
    for s in requested.resource_scopes:
        if s.resource in whole or (s.name == ".default" and s.resource in resources):
            continue
        if (s.resource, s.name.lower()) not in granted:
            return False
    return True


def _short_scope(scope: str) -> str:
    return scope.rpartition("/")[2] if "/" in scope else scope


# --------------------------------------------------------------------------------- records


@dataclass
class _AuthCode:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    scope: _ScopeSet
    oid: str
    sid: str
    auth_time: int
    expires_at: float
    redeemed: bool = False
    mfa: bool = False
    email_scope: bool = False


@dataclass
class _RefreshGrant:
    client_id: str
    oid: str
    sid: str
    auth_time: int
    issued_at: float
    expires_at: float
    serial: int
    mfa: bool = False


@dataclass
class _SsoSession:
    oid: str
    sid: str          # public session id (the `sid` claim); the cookie value stays secret
    auth_time: int


@dataclass
class _AuthorizeRequest:
    """An authorize request whose redirect URI is trusted; errors from here on go back to it."""

    params: dict[str, str]
    client_id: str
    redirect_uri: str
    response_mode: str
    state: str | None
    scope: _ScopeSet = field(default_factory=lambda: _ScopeSet((), ()))
    nonce: str | None = None
    code_challenge: str = ""
    prompt: str | None = None
    login_hint: str | None = None
    dev_auto: bool = False
    mfa: bool = False       # asked with the claims challenge of our CA policy: MFA done


# ------------------------------------------------------------------------------ middleware


class _Controls:
    """Outermost ASGI layer: counts requests by path and applies the injected fault, before
    any routing, so a fault covers every endpoint."""

    def __init__(self, app: ASGIApp, stand_in: EntraStandIn) -> None:
        self.app = app
        self.stand_in = stand_in

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        s = self.stand_in
        s.requests_seen[scope["path"]] += 1
        if scope["path"] == CONTROL_PATH:
            # The switch that clears a fault must work while the fault is on.
            await self.app(scope, receive, send)
            return
        # "hang" holds the request without blocking the loop, until the fault is cleared or
        # changed (read without a lock: one attribute, set from any thread).
        while s._fault == "hang":
            await asyncio.sleep(_HANG_POLL)
        if s._fault == "error":
            err = EntraError("temporarily_unavailable", 90033,
                             "A transient error has occurred. Please try again.", status=503)
            response = s._error_json(err, Request(scope), retry_after=1)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


# ------------------------------------------------------------------------------ stand-in


class EntraStandIn:
    """A fake Entra ID tenant (TENANT_ID) with one confidential client (CLIENT_ID).

    Serve ``app`` (e.g. with ``TLSServer``), then set ``base_url`` to the server's URL; msal's
    ``authority`` is then ``stand_in.authority``.

    Without a browser: take msal's ``auth_uri`` (built with ``login_hint``), add
    ``dev_auto=1``, GET it, and ``read_form_post(page.text)`` gives the form_post hand-back:
    ``.action`` is the redirect URI, ``.fields`` holds code, state, session_state and
    client_info (or error, error_description and state)."""

    def __init__(self, signer: TokenSigner, *, users: Sequence[SampleUser] = USERS,
                 client_id: str = CLIENT_ID, client_secret: str = DEV_CLIENT_SECRET,
                 clock: Callable[[], float] = time.time, access_token_lifetime: int = 3600,
                 refresh_token_lifetime: int = 90 * 86400,
                 registration: Registration | None = None) -> None:
        self.signer = signer
        self.registration = registration or load_registration()
        # Bearer key of the HTTPS control endpoint; whoever started the stand-in hands it on.
        self.admin_key = secrets.token_urlsafe(32)
        self.users: tuple[SampleUser, ...] = tuple(users)
        self.client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self.access_token_lifetime = access_token_lifetime
        self.refresh_token_lifetime = refresh_token_lifetime
        self.base_url = ""
        self.requests_seen: collections.Counter[str] = collections.Counter()

        # One lock for all mutable state: handlers run on the event loop, the controls may be
        # called from a test's thread. Nothing awaits while holding it.
        self._lock = threading.Lock()
        self._codes: dict[str, _AuthCode] = {}
        self._refresh: dict[str, _RefreshGrant] = {}
        self._sessions: dict[str, _SsoSession] = {}
        # Every authorization code and refresh token handed out, kept after it is redeemed or
        # purged, so the test run can check that none reached a log (bounded for the demo).
        self.handed_out: collections.deque[str] = collections.deque(maxlen=100_000)
        self._serial = 0
        # Per user: refresh tokens with a serial at or below this were revoked (Entra's
        # "TokensValidFrom", without the clock's one-second resolution problem).
        self._revoked_upto: dict[str, tuple[int, float]] = {}
        self._denied_oid: str | None = None
        self._groups: dict[str, tuple[str, ...]] = {}
        self._tamper_nonce = False
        self._fault: str | None = None
        self._token_faults: collections.deque[str] = collections.deque()
        self._step_up: set[str] = {u.oid for u in self.users if u.step_up}

        tenant_routes = [
            Route("/{tenant}/v2.0/.well-known/openid-configuration", self._discovery,
                  methods=["GET"]),
            Route("/{tenant}/discovery/v2.0/keys", self._keys, methods=["GET"]),
            Route("/{tenant}/oauth2/v2.0/authorize", self._authorize, methods=["GET", "POST"]),
            Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
            Route("/{tenant}/oauth2/v2.0/token", self._token_not_post, methods=["GET"]),
            Route("/{tenant}/oauth2/v2.0/logout", self._logout, methods=["GET", "POST"]),
        ]
        self.app = Starlette(
            routes=[Route("/common/discovery/instance", self._instance_discovery,
                          methods=["GET"]),
                    Route(CONTROL_PATH, self._control, methods=["POST"]), *tenant_routes],
            middleware=[Middleware(_Controls, stand_in=self)],
            max_body_size=_MAX_BODY,
        )

    # ----------------------------------------------------------------- public properties

    @property
    def authority(self) -> str:
        return f"{self.base_url}/{TENANT_ID}"

    @property
    def issuer(self) -> str:
        """The v2.0 issuer: the ``iss`` of ID tokens."""
        return f"{self.base_url}/{TENANT_ID}/v2.0"

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.authority}/oauth2/v2.0/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self.authority}/oauth2/v2.0/token"

    @property
    def end_session_endpoint(self) -> str:
        return f"{self.authority}/oauth2/v2.0/logout"

    # ------------------------------------------------------------------ test/demo controls

    def revoke_refresh_tokens(self, oid: str) -> None:
        """Like "Revoke sessions" in the Entra admin centre: the user's refresh tokens and
        browser sessions so far stop working (AADSTS50173 on the next refresh)."""
        with self._lock:
            self._revoked_upto[oid] = (self._serial, self._clock())
            for key in [k for k, s in self._sessions.items() if s.oid == oid]:
                del self._sessions[key]
        log.info("entra stand-in: refresh tokens revoked for %s", oid)

    def unrevoke_refresh_tokens(self, oid: str) -> None:
        """Undo `revoke_refresh_tokens` (tests sharing one stand-in clean up with it)."""
        with self._lock:
            self._revoked_upto.pop(oid, None)

    def expire_refresh_tokens(self) -> None:
        """Every refresh token issued so far is now past its lifetime (AADSTS700082)."""
        with self._lock:
            now = self._clock()
            for grant in self._refresh.values():
                grant.expires_at = min(grant.expires_at, now)
        log.info("entra stand-in: all refresh tokens expired")

    def deny_consent(self, oid: str | None) -> None:
        """Sign-in by this user ends in consent_required (AADSTS65001); None stops denying."""
        with self._lock:
            self._denied_oid = oid

    def set_groups(self, oid: str, groups: Sequence[str] | None) -> None:
        """Give the user these group ids in later ID tokens; None restores the sample's."""
        with self._lock:
            if groups is None:
                self._groups.pop(oid, None)
            else:
                self._groups[oid] = tuple(groups)

    def tamper_next_nonce(self) -> None:
        """The next ID token issued for an authorization code carries a wrong nonce, as a
        replayed or substituted token would: msal must refuse it."""
        with self._lock:
            self._tamper_nonce = True

    def set_fault(self, fault: str | None) -> None:
        """None, "error" (every endpoint answers 503 with an Entra-shaped JSON error) or
        "hang" (every request waits, without blocking the event loop, until cleared)."""
        if fault is not None and fault not in _FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {_FAULTS} or None")
        self._fault = fault
        log.info("entra stand-in: fault set to %s", fault)

    def fail_token_requests(self, kind: str | None, count: int = 1) -> None:
        """The next ``count`` token requests fail as Entra's passing outages do: "server_error"
        (HTTP 500, AADSTS50000) or "temporarily_unavailable" (HTTP 503 with Retry-After,
        AADSTS90033); then the endpoint recovers. None clears what is left."""
        if kind is not None and kind not in _TOKEN_FAULTS:
            raise ValueError(f"unknown token fault {kind!r}; expected one of {_TOKEN_FAULTS}")
        with self._lock:
            self._token_faults.clear()
            if kind is not None:
                self._token_faults.extend([kind] * max(0, count))

    def set_step_up(self, oid: str, on: bool) -> None:
        """Put the user under (or take them out of) the conditional-access policy that wants
        MFA for Microsoft Graph; sessions that already did MFA keep it."""
        with self._lock:
            if on:
                self._step_up.add(oid)
            else:
                self._step_up.discard(oid)

    async def _control(self, request: Request) -> Response:
        """The controls over HTTPS, for tests and rehearsals in another process. Body: JSON
        with any of ``fault`` (None, "error", "hang"), ``token_fault`` ({"kind", "count"}),
        ``deny_consent`` (an oid or None), ``step_up`` ({"oid", "on"})."""
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), self.admin_key.encode()):
            return JSONResponse({"error": "unauthorized"}, status_code=401, headers=_NO_STORE)
        try:
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                raise ValueError("not an object")
            if "fault" in body:
                self.set_fault(body["fault"])
            if "token_fault" in body:
                tf = body["token_fault"] or {}
                self.fail_token_requests(tf.get("kind"), int(tf.get("count", 1)))
            if "deny_consent" in body:
                self.deny_consent(body["deny_consent"])
            if "step_up" in body:
                self.set_step_up(str(body["step_up"]["oid"]), bool(body["step_up"]["on"]))
        except (ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": "bad_request", "detail": str(exc)[:200]},
                                status_code=400, headers=_NO_STORE)
        return JSONResponse({"ok": True, "fault": self._fault,
                             "token_faults": len(self._token_faults)}, headers=_NO_STORE)

    # ------------------------------------------------------------------ consent

    def _consent_error(self, error: str) -> EntraError:
        # AADSTS65001 as Entra words it; at the token endpoint the OAuth error is
        # invalid_grant with suberror consent_required (Microsoft identity platform error
        # codes reference; msal's docs on handling consent_required).
        return EntraError(
            error, 65001,
            f"The user or administrator has not consented to use the application with ID "
            f"'{self.client_id}' named '{APP_DISPLAY_NAME}'. Send an interactive "
            "authorization request for this user and resource.",
            suberror="consent_required" if error == "invalid_grant" else None)

    def _check_consent(self, scopes: _ScopeSet, error: str) -> None:
        """Every scope asked for must be granted by the app registration (admin consent; user
        consent is off): a resource's .default needs at least one of its permissions."""
        reg = self.registration
        for name in scopes.oidc:
            if not reg.grants_oidc(name):
                raise self._consent_error(error)
        for s in scopes.resource_scopes:
            granted = {p.lower() for p in reg.delegated(s.resource)}
            if (s.name == ".default" and not granted) or \
                    (s.name != ".default" and s.name.lower() not in granted):
                raise self._consent_error(error)

    def _check_step_up(self, oid: str, resource: str, mfa: bool) -> None:
        """Conditional access: MFA required for Microsoft Graph. A grant without it gets
        interaction_required, AADSTS50076, with the claims challenge msal takes as
        ``claims_challenge`` (Microsoft: "Handle conditional access challenges"; msal
        python's acquire_token_silent returns the error dict with ``claims``)."""
        with self._lock:
            wanted = oid in self._step_up
        if wanted and resource == GRAPH_AUDIENCE and not mfa:
            raise EntraError(
                "interaction_required", 50076,
                "Due to a configuration change made by your administrator, or because you "
                "moved to a new location, you must use multi-factor authentication to access "
                f"'{GRAPH_AUDIENCE}'.", suberror="basic_action", claims=_MFA_CLAIMS)

    def issue_access_token(self, user: SampleUser, audience: str, scopes: list[str],
                           lifetime: int = 3600, **extra_claims: Any) -> str:
        """A delegated access token as Entra would issue it for ``audience``; ``scopes`` may be
        short names or full scope URIs. ``extra_claims`` override claims (None removes one),
        for forged or expired variations in tests; the health canary uses it as is."""
        now = int(self._clock())
        claims = self._user_access_claims(user, audience, [_short_scope(s) for s in scopes],
                                          now=now, lifetime=lifetime, sid=None)
        return self.signer.sign(_override(claims, extra_claims))

    def id_token_for(self, user: SampleUser, *, nonce: str | None = None,
                     lifetime: int = 3600, **extra_claims: Any) -> str:
        """An ID token for this client, as the token endpoint would issue it."""
        now = int(self._clock())
        claims = self._id_claims(user, nonce=nonce, now=now, lifetime=lifetime, sid=None,
                                 auth_time=now)
        return self.signer.sign(_override(claims, extra_claims))

    def user_by_login(self, login: str) -> SampleUser | None:
        login = login.strip().lower()
        return next((u for u in self.users if login in (u.email.lower(), u.upn.lower())), None)

    # ----------------------------------------------------------------------- helpers

    def _user_by_oid(self, oid: str) -> SampleUser | None:
        return next((u for u in self.users if u.oid == oid), None)

    def _base(self, request: Request) -> str:
        # base_url is set by whoever started the server; until then, answer as the request saw
        # us (enough for discovery, not for tokens someone will verify against an issuer).
        return self.base_url or str(request.base_url).rstrip("/")

    def _pairwise_sub(self, oid: str) -> str:
        # Entra's `sub` is pairwise (per user and application), unlike `oid`.
        digest = hashlib.sha256(f"{TENANT_ID}|{self.client_id}|{oid}".encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def _timestamp(self) -> str:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")

    @staticmethod
    def _correlation_id(request: Request) -> str:
        # msal sends client-request-id; Entra echoes it as the correlation id.
        given = request.headers.get("client-request-id", "")
        try:
            return str(uuid.UUID(given))
        except ValueError:
            return str(uuid.uuid4())

    def _error_json(self, err: EntraError, request: Request,
                    retry_after: int | None = None) -> JSONResponse:
        trace_id, correlation_id, ts = str(uuid.uuid4()), self._correlation_id(request), \
            self._timestamp()
        body: dict[str, Any] = {
            "error": err.error,
            "error_description": (f"{err.aadsts}\r\nTrace ID: {trace_id}\r\n"
                                  f"Correlation ID: {correlation_id}\r\nTimestamp: {ts}"),
            "error_codes": [err.code],
            "timestamp": ts,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
        }
        if err.suberror:
            body["suberror"] = err.suberror
        if err.claims:
            body["claims"] = err.claims
        headers = dict(_NO_STORE)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if err.status == 401 and request.headers.get("authorization", "").lower().startswith(
                "basic "):
            headers["WWW-Authenticate"] = 'Basic realm="token endpoint"'
        return JSONResponse(body, status_code=err.status, headers=headers)

    def _html(self, render: Callable[[str], str], *, status: int = 200) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        # No form-action: browsers apply it to every redirect after a form submission, and the
        # picker's POST may be answered with a 302 to the app, which may redirect on again.
        csp = (f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
               "frame-ancestors 'none'; base-uri 'none'")
        return HTMLResponse(render(nonce), status_code=status,
                            headers={**_NO_STORE, **_PAGE_HEADERS,
                                     "Content-Security-Policy": csp})

    def _error_page(self, err: EntraError, request: Request) -> HTMLResponse:
        trace_id, correlation_id, ts = str(uuid.uuid4()), self._correlation_id(request), \
            self._timestamp()
        return self._html(lambda nonce: entra_pages.error_page(
            error=err.error, description=err.aadsts, trace_id=trace_id,
            correlation_id=correlation_id, timestamp=ts, nonce=nonce), status=400)

    @staticmethod
    def _check_tenant(tenant: str, *, allow_aliases: bool = True) -> None:
        if tenant == TENANT_ID or (allow_aliases and tenant in _DISCOVERY_ALIASES):
            return
        raise EntraError("invalid_tenant", 90002,
                         f"Tenant '{tenant}' not found. Check to make sure you have the correct "
                         "tenant ID and are signing into the correct cloud.")

    # ---------------------------------------------------------------------- discovery

    async def _instance_discovery(self, request: Request) -> Response:
        base = self._base(request)
        endpoint = request.query_params.get("authorization_endpoint", "")
        parts = urlsplit(endpoint)
        ours = urlsplit(base)
        # msal drops the port when it names the authorize endpoint here: compare hosts only.
        if parts.scheme != "https" or parts.hostname != ours.hostname:
            err = EntraError("invalid_instance", 50049, "Unknown or invalid instance.")
            return self._error_json(err, request)
        tenant = parts.path.strip("/").split("/")[0] or "common"
        host = ours.netloc
        return JSONResponse({
            "tenant_discovery_endpoint": f"{base}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host,
                          "aliases": [host]}],
        })

    async def _discovery(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        try:
            self._check_tenant(tenant)
        except EntraError as err:
            return self._error_json(err, request)
        base = self._base(request)
        root = f"{base}/{tenant}"
        # For the multi-tenant aliases Entra publishes a templated issuer.
        issuer = f"{base}/{{tenantid}}/v2.0" if tenant in _DISCOVERY_ALIASES else \
            f"{root}/v2.0"
        return JSONResponse({
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post",
                                                      "client_secret_basic"],
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code"],
            "scopes_supported": list(_OIDC_SCOPES),
            "issuer": issuer,
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce",
                                 "preferred_username", "name", "tid", "ver", "email", "oid",
                                 "roles", "groups", "sid"],
            "grant_types_supported": ["authorization_code", "refresh_token",
                                      "client_credentials"],
            "code_challenge_methods_supported": ["S256"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }, headers={"Cache-Control": "max-age=86400, private"})

    async def _keys(self, request: Request) -> Response:
        try:
            self._check_tenant(request.path_params["tenant"])
        except EntraError as err:
            return self._error_json(err, request)
        jwk = dict(self.signer.jwk(), issuer=f"{self._base(request)}/{TENANT_ID}/v2.0")
        return JSONResponse({"keys": [jwk]}, headers={"Cache-Control": "max-age=86400, private"})

    # ---------------------------------------------------------------------- authorize

    async def _authorize(self, request: Request) -> Response:
        try:
            self._check_tenant(request.path_params["tenant"])
            params = await _request_params(request)
            req = self._trust_redirect(params)
        except EntraError as err:
            # Nothing is trusted yet, so nothing goes to the redirect URI: Entra's own page.
            return self._error_page(err, request)
        try:
            self._validate_authorize(req)
        except EntraError as err:
            return self._auth_error(req, err)

        session = self._session_from_cookie(request)
        login = params.get("login") if request.method == "POST" else None
        if login is not None:
            chosen = self.user_by_login(login)
            if chosen is None:
                return self._picker(req, request, session, notice=_unknown_account(login))
            return self._complete(req, chosen)

        if req.prompt == "none":
            # Silent sign-in rides on the browser session; without one Entra says so.
            user = self._user_by_oid(session.oid) if session else None
            if user is None or (req.login_hint and self.user_by_login(req.login_hint) != user):
                return self._auth_error(req, EntraError(
                    "login_required", 50058,
                    "A silent sign-in request was sent but no user is signed in."))
            return self._complete(req, user, session=session)

        if req.dev_auto and req.login_hint:
            # Non-standard, dev only: sign the hinted user in without showing the picker, so
            # HTTP-level tests can run the flow without a browser.
            user = self.user_by_login(req.login_hint)
            if user is None:
                return self._picker(req, request, session, notice=_unknown_account(req.login_hint))
            return self._complete(req, user)
        notice = ("Your organisation asks for multi-factor authentication for this sign-in. "
                  "(Dev stand-in: choosing your account counts as the second factor.)"
                  if req.mfa else None)
        return self._picker(req, request, session, notice=notice)

    def _trust_redirect(self, params: dict[str, str]) -> _AuthorizeRequest:
        """Checks that must pass before anything may be sent to the redirect URI; their
        errors are shown on Entra's own error page."""
        client_id = params.get("client_id")
        if not client_id:
            raise _missing("client_id")
        if client_id != self.client_id:
            raise EntraError(
                "unauthorized_client", 700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{TENANT_ID}'. This can happen if the application has not been installed by "
                "the administrator of the tenant or consented to by any user in the tenant.")
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            raise _missing("redirect_uri")
        # Entra matches the app registration's list exactly. The stand-in has no list: any
        # well-formed https:// URI is taken as registered (never http://). The URI ends up in a
        # Location header, so: printable ASCII only, no userinfo, no fragment.
        parts = urlsplit(redirect_uri)
        if parts.scheme != "https" or not _NETLOC.match(parts.netloc) or parts.fragment or \
                any(not 0x21 <= ord(c) <= 0x7e or c in '"<>\\^`{|}' for c in redirect_uri):
            raise EntraError(
                "invalid_request", 50011,
                f"The redirect URI '{redirect_uri}' specified in the request does not match "
                f"the redirect URIs configured for the application '{client_id}'.")
        mode = params.get("response_mode") or "query"
        return _AuthorizeRequest(params=params, client_id=client_id, redirect_uri=redirect_uri,
                                 response_mode=mode if mode == "form_post" else "query",
                                 state=params.get("state"))

    def _validate_authorize(self, req: _AuthorizeRequest) -> None:
        """The rest of the authorize checks; failures are sent back to the app."""
        p = req.params
        if p.get("response_mode", "query") not in ("query", "form_post"):
            raise _malformed(f"response_mode '{p['response_mode']}' is not supported.")
        response_type = p.get("response_type")
        if not response_type:
            raise _missing("response_type")
        if response_type != "code":
            raise EntraError("unsupported_response_type", 700054,
                             f"response_type '{response_type}' is not enabled for the "
                             "application.")
        scope = p.get("scope", "")
        if not scope.split():
            raise _missing("scope")
        # At authorize Entra accepts scopes of several resources (consent up front); only the
        # token endpoint insists on one.
        req.scope = _parse_scopes(scope, DELEGATED_PERMISSIONS)
        self._check_consent(req.scope, "consent_required")
        if p.get("claims"):
            try:
                asked = json.loads(p["claims"])
                ids = asked["access_token"]["capolids"]["values"]
            except (ValueError, KeyError, TypeError):
                # Entra: AADSTS90015-like refusal of a claims value it cannot read; the
                # stand-in only understands the capolids challenge it issues itself.
                raise _malformed("the claims parameter is not a claims request this tenant "
                                 "understands.") from None
            req.mfa = isinstance(ids, list) and CA_POLICY_ID in ids
        challenge = p.get("code_challenge")
        if not challenge:
            # Stricter than Entra: the gateway must always use PKCE.
            raise _missing("code_challenge")
        method = p.get("code_challenge_method")
        if method != "S256":
            raise _malformed("code_challenge_method must be S256 (required by this tenant).")
        if not _PKCE_CHALLENGE.match(challenge):
            raise EntraError("invalid_request", 501491,
                             "Invalid size of Code_Challenge parameter.")
        req.code_challenge = challenge
        req.nonce = p.get("nonce") or None
        req.prompt = p.get("prompt") or None
        req.login_hint = p.get("login_hint") or None
        req.dev_auto = p.get("dev_auto") == "1"

    def _picker(self, req: _AuthorizeRequest, request: Request, session: _SsoSession | None,
                notice: str | None = None) -> Response:
        hinted = self.user_by_login(req.login_hint) if req.login_hint else None
        carried = [(k, v) for k, v in req.params.items() if k not in ("login", "dev_auto")]
        permissions = [s.raw for s in req.scope.resource_scopes]
        action = request.url.path  # post back where the app sent us (keeps its tenant segment)
        return self._html(lambda nonce: entra_pages.sign_in_page(
            action=action, params=carried, users=self.users, permissions=permissions,
            nonce=nonce, hinted_oid=hinted.oid if hinted else None,
            session_oid=session.oid if session else None, notice=notice))

    def _complete(self, req: _AuthorizeRequest, user: SampleUser,
                  session: _SsoSession | None = None) -> Response:
        """The user is chosen: issue a code (or refuse consent) and hand it back."""
        with self._lock:
            denied = self._denied_oid == user.oid
        if denied:
            return self._auth_error(req, EntraError(
                "consent_required", 65001,
                f"The user or administrator has not consented to use the application with ID "
                f"'{self.client_id}' named '{APP_DISPLAY_NAME}'. Send an interactive "
                "authorization request for this user and resource."))
        now = self._clock()
        cookie_value: str | None = None
        code = secrets.token_urlsafe(48)
        with self._lock:
            if session is None or session.oid != user.oid:
                cookie_value = secrets.token_urlsafe(32)
                session = _SsoSession(user.oid, str(uuid.uuid4()), int(now))
                self._sessions[cookie_value] = session
            self._purge(now)
            self.handed_out.append(code)
            self._codes[code] = _AuthCode(
                client_id=req.client_id, redirect_uri=req.redirect_uri,
                code_challenge=req.code_challenge, nonce=req.nonce, scope=req.scope,
                oid=user.oid, sid=session.sid, auth_time=session.auth_time,
                expires_at=now + CODE_LIFETIME, mfa=req.mfa,
                email_scope=req.scope.has("email"))
        log.info("entra stand-in: %s signed in; authorization code issued", user.key)
        fields = {"code": code}
        if req.params.get("client_info") == "1":
            fields["client_info"] = self._client_info(user.oid)
        if req.state is not None:
            fields["state"] = req.state
        fields["session_state"] = session.sid
        response = self._hand_back(req, fields)
        if cookie_value is not None:
            response.set_cookie(_SSO_COOKIE, cookie_value, path="/", secure=True,
                                httponly=True, samesite="lax")
        return response

    def _auth_error(self, req: _AuthorizeRequest, err: EntraError) -> Response:
        fields = {"error": err.error, "error_description": self._described(err)}
        if req.state is not None:
            fields["state"] = req.state
        return self._hand_back(req, fields)

    def _described(self, err: EntraError) -> str:
        return (f"{err.aadsts}\r\nTrace ID: {uuid.uuid4()}\r\nCorrelation ID: {uuid.uuid4()}"
                f"\r\nTimestamp: {self._timestamp()}")

    def _hand_back(self, req: _AuthorizeRequest, fields: Mapping[str, str]) -> Response:
        if req.response_mode == "form_post":
            return self._html(lambda nonce: entra_pages.form_post_page(
                redirect_uri=req.redirect_uri, fields=fields, nonce=nonce))
        return RedirectResponse(_add_query(req.redirect_uri, fields), status_code=302,
                                headers={**_NO_STORE, "Referrer-Policy": "no-referrer"})

    def _session_from_cookie(self, request: Request) -> _SsoSession | None:
        value = request.cookies.get(_SSO_COOKIE)
        if not value:
            return None
        with self._lock:
            return self._sessions.get(value)

    def _purge(self, now: float) -> None:
        # Called with the lock held: keeps the in-memory stores bounded over a long demo.
        for code in [c for c, rec in self._codes.items() if rec.expires_at + 3600 < now]:
            del self._codes[code]
        for rt in [t for t, g in self._refresh.items() if g.expires_at + 86400 < now]:
            del self._refresh[rt]
        horizon = now - self.refresh_token_lifetime
        for key in [k for k, v in self._sessions.items() if v.auth_time < horizon]:
            del self._sessions[key]

    # -------------------------------------------------------------------------- token

    async def _token_not_post(self, request: Request) -> Response:
        return self._error_json(EntraError(
            "invalid_request", 900561,
            "The endpoint only accepts POST requests. Received a GET request."), request)

    async def _token(self, request: Request) -> Response:
        try:
            self._check_tenant(request.path_params["tenant"])
            form = await _request_params(request)
            client_id = self._authenticate_client(form, request)
            with self._lock:
                fault = self._token_faults.popleft() if self._token_faults else None
            if fault == "server_error":
                raise EntraError("server_error", 50000,
                                 "There was an error issuing a token or an issue with our "
                                 "sign-in service.", status=500)
            if fault == "temporarily_unavailable":
                err = EntraError("temporarily_unavailable", 90033,
                                 "A transient error has occurred. Please try again.",
                                 status=503)
                return self._error_json(err, request, retry_after=60)
            grant_type = form.get("grant_type")
            if not grant_type:
                raise _missing("grant_type")
            if grant_type == "authorization_code":
                body = self._redeem_code(form, client_id)
            elif grant_type == "refresh_token":
                body = self._redeem_refresh(form, client_id)
            elif grant_type == "client_credentials":
                body = self._client_credentials(form, client_id)
            else:
                raise EntraError("unsupported_grant_type", 70003,
                                 f"The app requested an unsupported grant type "
                                 f"'{grant_type}'.")
        except EntraError as err:
            if err.error in ("invalid_grant", "invalid_client"):
                log.info("entra stand-in: token request refused: AADSTS%s", err.code)
            return self._error_json(err, request)
        return JSONResponse(body, headers=_NO_STORE)

    def _authenticate_client(self, form: Mapping[str, str], request: Request) -> str:
        """client_secret_post or client_secret_basic (msal sends both)."""
        basic_id = basic_secret = None
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
                raw_id, sep, raw_secret = decoded.partition(":")
                if not sep:
                    raise ValueError("no colon")
            except ValueError as exc:
                raise EntraError("invalid_client", 7000218,
                                 "The request body must contain the following parameter: "
                                 "'client_assertion' or 'client_secret'.", status=401) from exc
            # RFC 6749 2.3.1: both halves are form-urlencoded before Basic encoding.
            basic_id, basic_secret = unquote_plus(raw_id), unquote_plus(raw_secret)
        client_id = form.get("client_id") or basic_id
        if not client_id:
            raise _missing("client_id")
        if basic_id is not None and form.get("client_id") and basic_id != form["client_id"]:
            raise _malformed("client_id in the body and in the Authorization header differ.")
        if client_id != self.client_id:
            raise EntraError(
                "unauthorized_client", 700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{TENANT_ID}'.")
        secrets_given = [s for s in (form.get("client_secret"), basic_secret) if s is not None]
        if not secrets_given:
            raise EntraError("invalid_client", 7000218,
                             "The request body must contain the following parameter: "
                             "'client_assertion' or 'client_secret'.", status=401)
        expected = self._client_secret.encode()
        if not all(hmac.compare_digest(s.encode(), expected) for s in secrets_given):
            raise EntraError(
                "invalid_client", 7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{self.client_id}'.", status=401)
        return client_id

    def _token_scope(self, form: Mapping[str, str], *, empty_code: int) -> tuple[_ScopeSet, str]:
        raw = form.get("scope", "")
        if not raw.split():
            if empty_code == 28003:
                raise EntraError(
                    "invalid_request", 28003,
                    "Provided value for the input parameter scope cannot be empty when "
                    "requesting an access token using the provided authorization code. Please "
                    "specify a valid scope.")
            raise _missing("scope")
        scopes = _parse_scopes(raw, DELEGATED_PERMISSIONS)
        return scopes, _one_resource(scopes, raw)

    def _redeem_code(self, form: Mapping[str, str], client_id: str) -> dict[str, Any]:
        code = form.get("code")
        if not code:
            raise _missing("code")
        redirect_uri = form.get("redirect_uri")
        if not redirect_uri:
            raise _missing("redirect_uri")
        verifier = form.get("code_verifier")
        if not verifier:
            raise _missing("code_verifier")
        scopes, resource = self._token_scope(form, empty_code=28003)
        now = self._clock()
        with self._lock:
            rec = self._codes.get(code)
            if rec is None:
                raise _bad_grant("The authorization code is not known.")
            if rec.client_id != client_id:
                raise _bad_grant("The authorization code was issued to another client.")
            if rec.redeemed:
                # Entra refuses the replay but, unlike RFC 6749 4.1.2's suggestion, leaves the
                # tokens from the first redemption working: so does the stand-in, so a gateway
                # that double-submits a callback sees what it would see in production.
                raise EntraError("invalid_grant", 54005,
                                 "OAuth2 Authorization code was already redeemed, please retry "
                                 "with a new valid code or use an existing refresh token.")
            if now >= rec.expires_at:
                raise EntraError("invalid_grant", 70008,
                                 "The provided authorization code or refresh token has expired "
                                 "due to inactivity. Send a new interactive authorization "
                                 "request for this user and resource.")
            # One attempt per code: a failed redemption burns it too.
            rec.redeemed = True
        if redirect_uri != rec.redirect_uri:
            raise EntraError("invalid_grant", 500112,
                             f"The reply address '{redirect_uri}' does not match the reply "
                             "address provided when requesting Authorization code.")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if not hmac.compare_digest(digest.rstrip(b"=").decode(), rec.code_challenge):
            raise EntraError("invalid_grant", 501481,
                             "The Code_Verifier does not match the code_challenge supplied in "
                             "the authorization request.")
        if not _covers(rec.scope, scopes):
            raise EntraError("invalid_grant", 70000,
                             "The request was denied because one or more scopes requested are "
                             "unauthorized or expired. The user must first sign in and grant "
                             "the client application access to the requested scope.")
        self._check_consent(scopes, "invalid_grant")
        self._check_step_up(rec.oid, resource, rec.mfa)
        user = self._user_by_oid(rec.oid)
        if user is None:
            raise _bad_grant("The user no longer exists.")
        nonce = rec.nonce
        with self._lock:
            if self._tamper_nonce and nonce is not None:
                self._tamper_nonce = False
                nonce = hashlib.sha256(secrets.token_bytes(16)).hexdigest()
        return self._user_token_response(
            user, resource, scopes, client_info=form.get("client_info") == "1",
            id_token=rec.scope.has("openid"), refresh=rec.scope.has("offline_access"),
            nonce=nonce, sid=rec.sid, auth_time=rec.auth_time, mfa=rec.mfa,
            email_scope=rec.email_scope)

    def _redeem_refresh(self, form: Mapping[str, str], client_id: str) -> dict[str, Any]:
        token = form.get("refresh_token")
        if not token:
            raise _missing("refresh_token")
        scopes, resource = self._token_scope(form, empty_code=900144)
        now = self._clock()
        with self._lock:
            grant = self._refresh.get(token)
            if grant is None:
                raise _malformed("The refresh token is not known.")
            if grant.client_id != client_id:
                raise _bad_grant("The refresh token was issued to another client.")
            revoked = self._revoked_upto.get(grant.oid)
            if revoked is not None and grant.serial <= revoked[0]:
                raise EntraError(
                    "invalid_grant", 50173,
                    "The provided grant has expired due to it being revoked, a fresh auth token "
                    "is needed. The user might have changed or reset their password. The grant "
                    f"was issued on '{_iso(grant.issued_at)}' and the TokensValidFrom date "
                    f"(before which tokens are not valid) for this user is "
                    f"'{_iso(revoked[1])}'.")
            if now >= grant.expires_at:
                raise EntraError(
                    "invalid_grant", 700082,
                    f"The refresh token has expired due to inactivity. The token was issued on "
                    f"{_iso(grant.issued_at)} and was inactive for "
                    f"{dt.timedelta(seconds=int(now - grant.issued_at))}.")
        self._check_consent(scopes, "invalid_grant")
        self._check_step_up(grant.oid, resource, grant.mfa)
        user = self._user_by_oid(grant.oid)
        if user is None:
            raise _bad_grant("The user no longer exists.")
        # Entra rotates: a new refresh token comes back, and the old one stays valid.
        return self._user_token_response(
            user, resource, scopes, client_info=form.get("client_info") == "1",
            id_token=scopes.has("openid"), refresh=True, nonce=None, sid=grant.sid,
            auth_time=grant.auth_time, mfa=grant.mfa, email_scope=scopes.has("email"))

    def _client_credentials(self, form: Mapping[str, str], client_id: str) -> dict[str, Any]:
        raw = form.get("scope", "")
        if not raw.split():
            raise _missing("scope")
        parts = raw.split()
        resource_part, _, name = parts[0].rpartition("/")
        resource = _RESOURCES.get(_norm_resource(resource_part)) or _APP_RESOURCES.get(
            _norm_resource(resource_part))
        if len(parts) != 1 or name != ".default" or resource is None:
            raise EntraError(
                "invalid_scope", 1002012,
                f"The provided value for scope {raw} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).")
        now = int(self._clock())
        claims = {
            "aud": resource, "iss": ACCESS_ISSUER, "iat": now - ISSUED_BACKDATE_SECONDS,
            "nbf": now - ISSUED_BACKDATE_SECONDS,
            "exp": now + self.access_token_lifetime, "tid": TENANT_ID,
            "oid": APP_SERVICE_PRINCIPAL_OID, "sub": APP_SERVICE_PRINCIPAL_OID,
            "idtyp": "app", "roles": list(self.registration.app_roles(
                EXCHANGE_APP_RESOURCE if resource == OUTLOOK_AUDIENCE else resource)),
            "appid": client_id, "azp": client_id, "appidacr": "1", "ver": "1.0",
            "uti": secrets.token_urlsafe(16),
        }
        log.info("entra stand-in: app-only token issued for %s", resource)
        # Entra's client_credentials response has no scope and no refresh token.
        return {"token_type": "Bearer", "expires_in": self.access_token_lifetime,
                "ext_expires_in": self.access_token_lifetime,
                "access_token": self.signer.sign(claims)}

    # ------------------------------------------------------------------------- tokens

    def _user_token_response(self, user: SampleUser, resource: str, scopes: _ScopeSet, *,
                             client_info: bool, id_token: bool, refresh: bool,
                             nonce: str | None, sid: str, auth_time: int, mfa: bool = False,
                             email_scope: bool = False) -> dict[str, Any]:
        now_f = self._clock()
        now = int(now_f)
        granted = list(self.registration.delegated(resource))
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": _response_scope(scopes, resource, granted),
            "expires_in": self.access_token_lifetime,
            "ext_expires_in": self.access_token_lifetime,
            "access_token": self.signer.sign(self._user_access_claims(
                user, resource, granted, now=now, lifetime=self.access_token_lifetime,
                sid=sid, mfa=mfa)),
        }
        if refresh:
            rt = secrets.token_urlsafe(64)
            with self._lock:
                self.handed_out.append(rt)
                self._refresh[rt] = _RefreshGrant(
                    client_id=self.client_id, oid=user.oid, sid=sid, auth_time=auth_time,
                    issued_at=now_f, expires_at=now_f + self.refresh_token_lifetime,
                    serial=self._next_serial(), mfa=mfa)
            body["refresh_token"] = rt
        if id_token:
            body["id_token"] = self.signer.sign(self._id_claims(
                user, nonce=nonce, now=now, lifetime=3600, sid=sid, auth_time=auth_time,
                email_scope=email_scope))
        if client_info:
            body["client_info"] = self._client_info(user.oid)
        log.info("entra stand-in: token issued to %s for %s", user.key, resource)
        return body

    def _user_access_claims(self, user: SampleUser, audience: str, scp: list[str], *,
                            now: int, lifetime: int, sid: str | None,
                            mfa: bool = False) -> dict[str, Any]:
        # Entra issues v1-shaped access tokens for Exchange Online and Graph.
        claims: dict[str, Any] = {
            "aud": audience, "iss": ACCESS_ISSUER, "iat": now - ISSUED_BACKDATE_SECONDS,
            "nbf": now - ISSUED_BACKDATE_SECONDS,
            "exp": now + lifetime, "acr": "1", "amr": ["pwd", "mfa"] if mfa else ["pwd"],
            "appid": self.client_id,
            "azp": self.client_id, "appidacr": "1", "idtyp": "user", "name": user.name,
            "oid": user.oid, "scp": " ".join(scp), "sub": self._pairwise_sub(user.oid),
            "tid": TENANT_ID, "unique_name": user.upn, "upn": user.upn,
            # Dovecot's oauth2 passdb checks `email` against the IMAP login name.
            "email": user.email, "uti": secrets.token_urlsafe(16), "ver": "1.0",
        }
        if sid:
            claims["sid"] = sid
        return claims

    def _id_claims(self, user: SampleUser, *, nonce: str | None, now: int, lifetime: int,
                   sid: str | None, auth_time: int, email_scope: bool = False
                   ) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "aud": self.client_id, "iss": f"{self.base_url}/{TENANT_ID}/v2.0",
            "iat": now - ISSUED_BACKDATE_SECONDS, "nbf": now - ISSUED_BACKDATE_SECONDS,
            "exp": now + lifetime, "auth_time": auth_time, "tid": TENANT_ID,
            "oid": user.oid, "sub": self._pairwise_sub(user.oid),
            "preferred_username": user.upn, "name": user.name,
            "uti": secrets.token_urlsafe(16), "ver": "2.0",
        }
        reg = self.registration
        # The email optional claim (or the email scope) yields a claim only when the Microsoft
        # Graph `email` permission is granted: the portal's Token configuration says so when
        # the claim is added ("Turn on the Microsoft Graph email permission").
        if reg.email_claim and (reg.email_optional_claim or email_scope):
            claims["email"] = user.email
        if user.roles:
            claims["roles"] = list(user.roles)
        with self._lock:
            groups = self._groups.get(user.oid, user.groups)
        if groups and reg.group_claims:
            if len(groups) > GROUP_CLAIM_LIMIT:
                # Group overage (Microsoft: "Configure group claims", "ID token claims
                # reference"): over 200 groups no `groups` claim is sent; `_claim_names` points
                # at `_claim_sources`, and the app must ask Graph for the member's groups.
                claims["_claim_names"] = {"groups": "src1"}
                claims["_claim_sources"] = {"src1": {
                    "endpoint": f"https://graph.windows.net/{TENANT_ID}/users/{user.oid}/"
                                "getMemberObjects"}}
            else:
                claims["groups"] = list(groups)
        if nonce is not None:
            # msal sent sha256-hex(its secret nonce) and compares this claim to that: echo it.
            claims["nonce"] = nonce
        if sid:
            claims["sid"] = sid
        return claims

    @staticmethod
    def _client_info(oid: str) -> str:
        raw = json.dumps({"uid": oid, "utid": TENANT_ID}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    # ------------------------------------------------------------------------ logout

    async def _logout(self, request: Request) -> Response:
        try:
            self._check_tenant(request.path_params["tenant"])
            params = await _request_params(request)
        except EntraError as err:
            return self._error_page(err, request)
        cookie = request.cookies.get(_SSO_COOKIE)
        if cookie:
            with self._lock:
                session = self._sessions.pop(cookie, None)
            if session is not None:
                log.info("entra stand-in: browser session ended")
        return_to = params.get("post_logout_redirect_uri") or None
        notice = None
        if return_to is not None:
            parts = urlsplit(return_to)
            if parts.scheme != "https" or not parts.hostname:
                notice = ("The address to return to was not accepted: only https:// addresses "
                          "are allowed.")
                return_to = None
        response = self._html(lambda nonce: entra_pages.signed_out_page(
            return_to=return_to, nonce=nonce, notice=notice))
        response.delete_cookie(_SSO_COOKIE, path="/", secure=True, httponly=True,
                               samesite="lax")
        return response


# ------------------------------------------------------------------------------ functions

_NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
_PAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                 "X-Frame-Options": "DENY"}


async def _request_params(request: Request) -> dict[str, str]:
    """Query (GET) or form body (POST) as single-valued strings. Repeated parameters are
    refused (RFC 6749 3.1), as are file parts and oversized input."""
    if request.method == "POST":
        try:
            form = await request.form(max_files=0, max_fields=_MAX_PARAMS)
        except HTTPException as exc:  # too large, too many fields, a file part, bad multipart
            err = _malformed(str(exc.detail))
            err.status = 413 if exc.status_code == 413 else 400
            raise err from exc
        items: Iterable[tuple[str, Any]] = form.multi_items()
    else:
        items = request.query_params.multi_items()
    out: dict[str, str] = {}
    for key, value in items:
        if isinstance(value, UploadFile) or not isinstance(value, str):
            raise _malformed("file uploads are not accepted.")
        if key in out:
            raise _malformed(f"the parameter '{key}' is given more than once.")
        if not _PARAM_NAME.match(key) or len(value) > _MAX_PARAM_LEN:
            raise _malformed("a parameter name or value is not acceptable.")
        out[key] = value
        if len(out) > _MAX_PARAMS:
            raise _malformed("too many parameters.")
    return out


def _response_scope(scopes: _ScopeSet, resource: str, granted: Sequence[str]) -> str:
    """The `scope` of a token response. msal uses it as the cache key, so the scopes the app
    asked for come back exactly as asked; Entra adds the resource's other consented scopes
    (the token carries them all) and, for Graph only, the OIDC scopes asked for."""
    asked = [s.raw for s in scopes.resource_scopes if s.name != ".default"]
    asked_names = {s.name.lower() for s in scopes.resource_scopes}
    others = [p if resource == GRAPH_AUDIENCE else f"{resource}/{p}"
              for p in granted if p.lower() not in asked_names]
    parts = asked + others
    if resource == GRAPH_AUDIENCE:
        parts += [s for s in scopes.oidc if s in _GRAPH_ECHOED_OIDC]
    return " ".join(dict.fromkeys(parts))


def _override(claims: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(claims)
    for key, value in extra.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _add_query(uri: str, fields: Mapping[str, str]) -> str:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(fields.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%m/%d/%Y %H:%M:%S")


def _unknown_account(login: str) -> str:
    return (f"AADSTS50034: The user account {login} does not exist in the {TENANT_ID} "
            "directory. To sign into this application, the account must be added to the "
            "directory.")
