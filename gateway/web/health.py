"""Liveness and readiness for monitors and orchestrators. ``/livez`` makes no upstream call;
``/readyz`` answers 200 only when the settings loaded and the store answers. Full health of
every upstream is its own module (issue 5)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import GatewayError
from gateway.services import services

READY_TIMEOUT = 2.0


async def livez(request: Request) -> Response:
    return JSONResponse({"status": "pass"}, headers={"Cache-Control": "no-store"})


async def readyz(request: Request) -> Response:
    if not request.app.state.ready:
        return JSONResponse({"status": "fail", "reason": "starting or stopping"}, 503)
    try:
        await asyncio.wait_for(services(request).store.ping(), READY_TIMEOUT)
    except (GatewayError, TimeoutError):
        return JSONResponse({"status": "fail", "reason": "store not answering"}, 503)
    return JSONResponse({"status": "pass"})


routes = [
    Route("/livez", livez, methods=["GET", "HEAD"]),
    Route("/readyz", readyz, methods=["GET", "HEAD"]),
]
