"""Health endpoints for monitors and orchestrators.

- ``/livez``: no upstream call; ``/readyz``: 200 only when the app serves and the store answers.
- ``/health``: the ``application/health+json`` document built by ``gateway.health.monitor`` from the
  background probes' latest results (no upstream call per request). Callers that
  ``health.access`` admits (open, a bearer token, or a network allow-list) get every check;
  others get the overall status only. ``/metrics`` on the main port is for the same callers
  plus the scraper networks of ``metrics.allow`` (``metrics_allowed``).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from gateway import __version__
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.health.monitor import MEDIA_TYPE
from gateway.services import app_state, services

READY_TIMEOUT = 2.0


async def livez(request: Request) -> Response:
    return JSONResponse({"status": "pass"}, headers={"Cache-Control": "no-store"})


async def readyz(request: Request) -> Response:
    if not app_state(request).ready:
        return JSONResponse({"status": "fail", "reason": "starting or stopping"}, 503)
    try:
        await asyncio.wait_for(services(request).store.ping(), READY_TIMEOUT)
    except (GatewayError, TimeoutError):
        return JSONResponse({"status": "fail", "reason": "store not answering"}, 503)
    return JSONResponse({"status": "pass"})


def detail_allowed(settings: Settings, scope: Scope) -> bool:
    """May this caller read the detailed health (and /metrics on the main port)?"""
    mode = settings.health.access
    if mode == "open":
        return True
    if mode == "token":
        expected = settings.health.token
        for k, v in scope.get("headers", []):
            if k == b"authorization":
                supplied = v.decode("latin-1")
                return bool(expected) and hmac.compare_digest(
                    supplied.encode(), f"Bearer {expected}".encode())
        return False
    return _client_in(scope, settings.health.allow)


def metrics_allowed(settings: Settings, scope: Scope) -> bool:
    """May this caller scrape /metrics on the main port? The scraper networks of
    ``metrics.allow``, and whoever may read the detailed health."""
    return _client_in(scope, settings.metrics.allow) or detail_allowed(settings, scope)


def _client_in(scope: Scope, networks: list[str]) -> bool:
    # scope["client"] is the TCP peer, or the forwarded client when the peer is a trusted
    # proxy (uvicorn's proxy headers, limited to server.trusted_proxies).
    client = scope.get("client")
    if not client or not networks:
        return False
    try:
        addr = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(n, strict=False) for n in networks)


async def health(request: Request) -> Response:
    settings = services(request).settings
    running = app_state(request).running
    headers = {"Cache-Control": "no-store"}
    if running is None:
        body = {"status": "fail", "output": "starting or stopping"}
        return Response(json.dumps(body), 503, media_type=MEDIA_TYPE, headers=headers)
    doc, status = running.health.document(
        version=__version__.split(".")[0], release_id=settings.health.release_id
        or __version__, service_id=settings.health.service_id,
        description="failover mail gateway", detailed=detail_allowed(settings, request.scope))
    return Response(json.dumps(doc), status, media_type=MEDIA_TYPE, headers=headers)


routes = [
    Route("/livez", livez, methods=["GET", "HEAD"]),
    Route("/readyz", readyz, methods=["GET", "HEAD"]),
    Route("/health", health, methods=["GET", "HEAD"]),
]
