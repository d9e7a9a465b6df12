"""A stand-in for the supplier's mobile platform status endpoint, for the demo and tests: an
HTTPS page that says it is operational, which can be told to fail (``fail_with``) or
stopped, so ICT can watch ``platform:*`` checks change in ``/health`` and in the report."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway.devstack.runner import TLSServer
from gateway.server.certs import DevCerts

OPERATIONAL = "All systems operational"


class PlatformStandIn:
    def __init__(self, certs: DevCerts) -> None:
        self.fail_with: int | None = None
        self.app = Starlette(routes=[Route("/status", self.status)])
        self.server = TLSServer(self.app, certs)

    async def status(self, request: Request) -> PlainTextResponse:
        if self.fail_with:
            return PlainTextResponse("Service degraded: device enrolment unavailable",
                                     self.fail_with)
        return PlainTextResponse(f"Mobile platform: {OPERATIONAL}\n")

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def checks(self) -> list[str]:
        """``platform.checks`` entries watching this stand-in."""
        return [f'https portal https://{self.host_port}/status status=200 '
                f'text="{OPERATIONAL}"',
                f"tls edge {self.host_port} cert_days=21"]
