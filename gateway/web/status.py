"""The public status page (no sign-in): the mode, since when, and ICT's message to members.
It says nothing about who flipped the switch or why; that is for the admin page. JSON for
``?format=json`` or an ``Accept: application/json`` request."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.services import services
from gateway.switch.audit import iso
from gateway.switch.machine import Mode, SwitchState, local, member_message
from gateway.web.render import render

HEADLINES = {
    Mode.STANDBY: "Standby: please use your usual council mail app",
    Mode.ACTIVE: "Open: use this route for your council mail",
    Mode.DRILL: "Rehearsal under way: please use your usual council mail app",
}


@dataclass(frozen=True)
class StatusView:
    mode: str
    headline: str
    since: str
    until: str
    message: str


def status_view(state: SwitchState, tz: str) -> StatusView:
    return StatusView(mode=str(state.mode), headline=HEADLINES[state.mode],
                      since=local(state.since, tz) if state.since else "",
                      until=local(state.until, tz) if state.until else "",
                      message=member_message(state))


async def status(request: Request) -> Response:
    svc = services(request)
    state = await svc.failover.current()
    accept = request.headers.get("accept", "")
    if request.query_params.get("format") == "json" or (
            "application/json" in accept and "text/html" not in accept):
        return JSONResponse({"mode": str(state.mode),
                             "since": iso(state.since) if state.since else None,
                             "until": iso(state.until) if state.until else None,
                             "message": member_message(state)})
    return render(request, "status.html",
                  {"status": status_view(state, svc.settings.general.timezone)})


routes = [Route("/status", status, methods=["GET", "HEAD"])]
