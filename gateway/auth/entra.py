"""Sign-in and delegated tokens through Entra ID, with msal.

Owns: the auth-code flow with PKCE, state and nonce (``response_mode=form_post``); each
member's msal token cache, encrypted with the key ring and kept in the store, written back
only when it changed; silent token acquisition per resource (IMAP/SMTP at sign-in, Graph on
first use from the same refresh token); and the end-session URL for sign-out.

msal is synchronous: every call runs in a worker thread. msal builds its authority by
fetching the discovery document; ``CachingHttpClient`` keeps that document so that building
an app per call (one token cache per member) costs no network round trip.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import msal
import requests
from msal.exceptions import MsalServiceError

from gateway.auth.blockers import IctFault
from gateway.config import Settings
from gateway.crypto import DecryptError, KeyRing
from gateway.errors import (
    ClaimsChallenge,
    EntraUnavailable,
    ReauthRequired,
    SignInFailed,
)
from gateway.store.base import Store

log = logging.getLogger(__name__)

DISCOVERY_TTL = 3600.0
HTTP_TIMEOUT = 15.0
# msal renews an access token this long before it expires; a token kept here is used no
# later than msal would use it.
RENEW_BEFORE_SECONDS = 300.0
# Entra's passing faults: retry later, keep the session (Microsoft identity platform error
# codes: "temporarily_unavailable ... retry the request after a small delay"; 5xx).
TRANSIENT_ERRORS = ("temporarily_unavailable", "server_error", "service_unavailable")
# The app itself refused: secret wrong or expired, client unknown. Only ICT can fix these.
APP_REFUSED_ERRORS = ("invalid_client", "unauthorized_client")


def classify(result: dict[str, Any]) -> Exception | None:
    """Map an Entra error response (as msal returns it) onto the gateway's error tree:
    consent missing and the app refused are ICT faults, passing faults keep the session, a
    claims challenge goes back through sign-in with the claims; None for the rest (the
    member's own grant is gone: sign in again)."""
    error = str(result.get("error") or "")
    codes = [int(c) for c in result.get("error_codes") or [] if str(c).isdigit()]
    if error == "interaction_required" and result.get("claims"):
        return ClaimsChallenge(str(result["claims"]))
    if 65001 in codes or result.get("suberror") == "consent_required" or \
            error == "consent_required":
        return IctFault("consent_missing")
    if error in APP_REFUSED_ERRORS:
        return IctFault("app_refused")
    if error in TRANSIENT_ERRORS or any(500 <= c < 600 for c in codes if c < 1000):
        return EntraUnavailable()
    return None


class CachingHttpClient:
    """A requests-like client for msal: no proxy or CA settings from the environment (they
    would override ours), a timeout on every call, and the OpenID discovery document cached."""

    def __init__(self, verify: str | bool = True, session: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if session is None:
            session = requests.Session()
            session.trust_env = False
            session.verify = verify
        self._session = session
        self._clock = clock
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        cacheable = url.endswith("/.well-known/openid-configuration") and not kwargs.get("params")
        if cacheable:
            with self._lock:
                hit = self._cache.get(url)
            if hit and self._clock() - hit[0] < DISCOVERY_TTL:
                return hit[1]
        resp = self._session.get(url, **kwargs)
        if cacheable and resp.status_code == 200:
            with self._lock:
                self._cache[url] = (self._clock(), resp)
        return resp

    def post(self, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return self._session.post(url, **kwargs)

    def close(self) -> None:
        self._session.close()


@dataclass(frozen=True)
class SignedIn:
    oid: str
    name: str
    email: str
    roles: list[str]
    groups: list[str]
    account_id: str
    # More than 200 groups: Entra sent `_claim_names` instead of `groups`; ask Graph.
    groups_overage: bool = False


@dataclass(frozen=True)
class StartedFlow:
    auth_uri: str
    flow_json: bytes


class Entra:
    def __init__(self, settings: Settings, store: Store, keyring: KeyRing,
                 http_client: Any | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.keyring = keyring
        self.clock = clock
        self.authority = settings.entra.authority
        self.client_id = settings.entra.client_id
        self._secret = settings.entra.client_secret
        self.signin_scopes = [settings.entra.imap_scope, settings.entra.smtp_scope]
        self.graph_scopes = [settings.entra.graph_scope]
        self.http = http_client or CachingHttpClient(verify=settings.entra.ca_file or True)
        # One refresh at a time per account, so two tabs do not both spend a refresh token.
        self._locks: dict[str, asyncio.Lock] = {}
        # The access tokens msal last gave, by (account, scopes): (digest of the encrypted
        # token cache they came from, token, when msal would renew it by self.clock). See
        # access_token.
        self._given: dict[tuple[str, tuple[str, ...]], tuple[bytes, str, float]] = {}

    # -- msal plumbing
    def _app(self, cache: msal.SerializableTokenCache | None = None) -> Any:
        try:
            return msal.ConfidentialClientApplication(
                self.client_id, client_credential=self._secret, authority=self.authority,
                http_client=self.http, token_cache=cache, instance_discovery=False)
        except (ValueError, requests.RequestException, MsalServiceError) as exc:
            log.warning("entra unreachable while building the msal app: %s", type(exc).__name__)
            raise EntraUnavailable() from None

    async def start_sign_in(self, login_hint: str | None = None,
                            prompt: str | None = None,
                            claims_challenge: str | None = None) -> StartedFlow:
        def start() -> dict[str, Any]:
            flow: dict[str, Any] = self._app().initiate_auth_code_flow(
                scopes=self.signin_scopes, redirect_uri=self.settings.redirect_uri,
                response_mode="form_post", login_hint=login_hint, prompt=prompt,
                claims_challenge=claims_challenge)
            return flow
        try:
            flow = await asyncio.to_thread(start)
        except (requests.RequestException, MsalServiceError):
            raise EntraUnavailable() from None
        blob = self.keyring.encrypt(json.dumps(flow).encode(), b"auth-flow")
        return StartedFlow(auth_uri=flow["auth_uri"], flow_json=blob)

    async def complete_sign_in(self, flow_blob: bytes, form: dict[str, str]) -> SignedIn:
        """Redeem the callback's code; raises SignInFailed with a member-fit message."""
        try:
            flow = json.loads(self.keyring.decrypt(flow_blob, b"auth-flow"))
        except (DecryptError, ValueError):
            raise SignInFailed() from None
        if form.get("error"):
            # The member declined consent, or Entra refused; the description may carry an
            # AADSTS code worth showing ICT, but never a token.
            code = form.get("error", "")
            described = form.get("error_description", "")
            if code == "consent_required" or described.startswith("AADSTS65001"):
                # User consent is off: the app registration lacks (admin consent for) a
                # permission. The member cannot fix it by trying again; ICT can.
                raise IctFault("consent_missing")
            if code in ("temporarily_unavailable", "server_error"):
                raise EntraUnavailable()
            msg = ("You did not give the gateway permission to reach your mailbox, so sign-in "
                   "stopped." if code in ("access_denied", "consent_required")
                   else "Entra ID did not complete the sign-in.")
            raise SignInFailed(f"{msg} (Entra said: {code[:60]})")
        cache = msal.SerializableTokenCache()

        def redeem() -> dict[str, Any]:
            result: dict[str, Any] = self._app(cache).acquire_token_by_auth_code_flow(
                flow, form, scopes=self.signin_scopes)
            return result
        try:
            result = await asyncio.to_thread(redeem)
        except (ValueError, RuntimeError):
            # msal's own checks: state mismatch (ValueError), nonce mismatch (RuntimeError).
            raise SignInFailed("This sign-in link was out of date or had been altered. "
                               "Please start again.") from None
        except (requests.RequestException, MsalServiceError):
            raise EntraUnavailable() from None
        if "error" in result:
            log.info("sign-in refused by entra: %s %s", result.get("error"),
                     (result.get("error_codes") or [""])[0])
            mapped = classify(result)
            if isinstance(mapped, (IctFault, EntraUnavailable)):
                raise mapped
            raise SignInFailed()
        claims = result.get("id_token_claims") or {}
        account_id = self._account_id(claims, cache)
        if not claims.get("oid") or not account_id:
            raise SignInFailed()
        await self._save_cache(account_id, cache, force=True)
        return SignedIn(
            oid=str(claims["oid"]), name=str(claims.get("name") or ""),
            email=str(claims.get("email") or claims.get("preferred_username") or ""),
            roles=[str(r) for r in claims.get("roles", [])],
            groups=[str(g) for g in claims.get("groups", [])], account_id=account_id,
            groups_overage="groups" in (claims.get("_claim_names") or {}))

    @staticmethod
    def _account_id(claims: dict[str, Any], cache: msal.SerializableTokenCache) -> str:
        for acc in list(cache.search(cache.CredentialType.ACCOUNT)):
            if acc.get("local_account_id") == claims.get("oid"):
                return str(acc["home_account_id"])
        return ""

    # -- token cache at rest
    def _context(self, account_id: str) -> bytes:
        return b"token-cache:" + account_id.encode()

    async def _load_cache(self, account_id: str, blob: bytes | None = None
                          ) -> msal.SerializableTokenCache:
        cache = msal.SerializableTokenCache()
        if blob is None:
            blob = await self.store.get_token_cache(account_id)
        if blob:
            try:
                cache.deserialize(self.keyring.decrypt(blob, self._context(account_id)).decode())
            except DecryptError:
                # Made by a key no longer in the ring: treat as signed out.
                log.warning("token cache could not be decrypted; member must sign in again")
        return cache

    async def _save_cache(self, account_id: str, cache: msal.SerializableTokenCache,
                          force: bool = False) -> bytes | None:
        """Store the cache if it changed (or ``force``); the digest of what was stored."""
        if force or cache.has_state_changed:
            blob = self.keyring.encrypt(cache.serialize().encode(), self._context(account_id))
            await self.store.put_token_cache(account_id, blob, self.clock())
            return hashlib.blake2b(blob, digest_size=16).digest()
        return None

    async def access_token(self, account_id: str, scopes: list[str],
                           force_refresh: bool = False) -> str:
        """A delegated access token for one resource, from cache or by refresh. Raises
        ReauthRequired when the refresh token is gone, expired or revoked."""
        lock = self._locks.setdefault(account_id, asyncio.Lock())
        async with lock:
            # The stored cache is read every time (another instance may have refreshed it, or
            # signed the member out and deleted it). When it is the very one the last token
            # for these scopes came from, and that token is not yet due for renewal, msal
            # would hand back the same token: skip decrypting the cache, building an msal
            # app and its account search (a tenth of a calendar page's CPU,
            # bench/cpu_per_page.py --profile, 2026-12-03).
            blob = await self.store.get_token_cache(account_id) or b""
            digest = hashlib.blake2b(blob, digest_size=16).digest()
            key = (account_id, tuple(scopes))
            given = self._given.get(key)
            if (given is not None and not force_refresh and blob and given[0] == digest
                    and self.clock() < given[2]):
                return given[1]
            self._given.pop(key, None)
            cache = await self._load_cache(account_id, blob)

            def silent() -> dict[str, Any] | None:
                app = self._app(cache)
                accounts = app.get_accounts()
                account = next((a for a in accounts if a["home_account_id"] == account_id), None)
                if account is None:
                    return None
                result: dict[str, Any] | None = app.acquire_token_silent_with_error(
                    scopes, account=account, force_refresh=force_refresh)
                return result
            try:
                result = await asyncio.to_thread(silent)
            except (requests.RequestException, MsalServiceError):
                raise EntraUnavailable(EntraUnavailable.SIGNED_IN) from None
            except EntraUnavailable:
                raise EntraUnavailable(EntraUnavailable.SIGNED_IN) from None
            saved = await self._save_cache(account_id, cache)
            if result and "access_token" in result and isinstance(result.get("expires_in"), int):
                # Used until msal would renew it: 5 minutes before expiry, or at the
                # "refresh_on" Entra asked for (msal ClientApplication._acquire_token_silent...).
                until = self.clock() + result["expires_in"] - RENEW_BEFORE_SECONDS
                if isinstance(result.get("refresh_on"), int):
                    until = min(until, float(result["refresh_on"]))
                self._given[key] = (saved or digest, str(result["access_token"]), until)
        if not result or "access_token" not in result:
            mapped = classify(result) if result else None
            if isinstance(mapped, EntraUnavailable):
                mapped = EntraUnavailable(EntraUnavailable.SIGNED_IN)
            if mapped is not None:
                log.info("token refresh answered %s (%s)", (result or {}).get("error"),
                         type(mapped).__name__)
                raise mapped
            if result and result.get("error") not in ("invalid_grant", "interaction_required"):
                log.warning("token refresh failed: %s", result.get("error"))
            raise ReauthRequired()
        return str(result["access_token"])

    async def imap_token(self, account_id: str) -> str:
        return await self.access_token(account_id, [self.settings.entra.imap_scope])

    async def smtp_token(self, account_id: str) -> str:
        return await self.access_token(account_id, [self.settings.entra.smtp_scope])

    async def graph_token(self, account_id: str, force_refresh: bool = False) -> str:
        return await self.access_token(account_id, self.graph_scopes, force_refresh)

    def close(self) -> None:
        closer = getattr(self.http, "close", None)
        if closer is not None:
            closer()

    async def forget(self, account_id: str) -> None:
        for key in [k for k in self._given if k[0] == account_id]:
            del self._given[key]
        await self.store.delete_token_cache(account_id)

    async def end_session_url(self, post_logout: str) -> str:
        """Entra's end-session URL from the discovery document (cached)."""
        def discover() -> str:
            url = f"{self.authority.rstrip('/')}/v2.0/.well-known/openid-configuration"
            resp = self.http.get(url)
            return str(resp.json().get("end_session_endpoint") or "")
        try:
            endpoint = await asyncio.to_thread(discover)
        except (requests.RequestException, ValueError):
            endpoint = ""
        if not endpoint.startswith("https://"):
            return post_logout
        return endpoint + "?" + urlencode({"post_logout_redirect_uri": post_logout})

    async def discovery_ok(self) -> None:
        """Fetch the discovery document now (uncached): used by readiness and health."""
        def fetch() -> None:
            url = f"{self.authority.rstrip('/')}/v2.0/.well-known/openid-configuration"
            resp = self.http._session.get(url, timeout=HTTP_TIMEOUT)
            resp.raise_for_status()
        await asyncio.to_thread(fetch)
