"""App-only tokens (the client-credentials grant) for the canary mailbox and the probes:
the gateway's own identity, never a member's. Kept under ``auth`` so that the health
package's probes and canary both use it without importing each other."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import msal
import requests

from gateway.auth.entra import CachingHttpClient
from gateway.config import Settings
from gateway.health.monitor import ProbeFailed


class AppTokens:
    """App-only access tokens (client credentials) for the canary, from msal's in-memory
    cache while they last. msal is synchronous: it runs in a worker thread."""

    def __init__(self, settings: Settings, http_client: Any = None) -> None:
        self.settings = settings
        self._http = http_client or CachingHttpClient(verify=settings.entra.ca_file or True)
        self._app: Any = None
        self._lock = threading.Lock()

    def _acquire(self, resource: str) -> str:
        with self._lock:
            if self._app is None:
                self._app = msal.ConfidentialClientApplication(
                    self.settings.entra.client_id,
                    client_credential=self.settings.entra.client_secret,
                    authority=self.settings.entra.authority, http_client=self._http,
                    instance_discovery=False)
            app = self._app
        result: dict[str, Any] = app.acquire_token_for_client(scopes=[f"{resource}/.default"])
        if "access_token" not in result:
            raise ProbeFailed(f"Entra refused an app-only token for {resource}: "
                              f"{str(result.get('error', 'no token'))[:60]}")
        return str(result["access_token"])

    def close(self) -> None:
        """Close the HTTP session to Entra (its kept-alive TLS connections)."""
        closer = getattr(self._http, "close", None)
        if closer is not None:
            closer()

    async def token(self, resource: str) -> str:
        try:
            return await asyncio.to_thread(self._acquire, resource)
        except (ValueError, requests.RequestException) as exc:
            with self._lock:
                self._app = None
            raise ProbeFailed(f"Entra unreachable for the canary's token: "
                              f"{type(exc).__name__}") from None
