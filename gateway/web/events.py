"""New mail without a reload: IMAP IDLE on the open folder, pushed to the page as
server-sent events.

Each open list page holds one extra IMAP connection (IDLE occupies it), so a member has at
most ``MAX_STREAMS`` at once; older streams are closed when a newer one opens. IDLE is
re-issued every ``mail.idle_refresh_minutes`` (Exchange drops it at 30), and a comment line
goes out every ``HEARTBEAT`` seconds so proxies keep the stream open. Pages work without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.errors import BadRequest, GatewayError
from gateway.mail.imap import DROPPED, ImapConn, open_connection
from gateway.mail.mailbox import mailbox_arg
from gateway.services import services

log = logging.getLogger(__name__)
HEARTBEAT = 45.0
MAX_STREAMS = 2
_streams: dict[str, list[asyncio.Event]] = {}


def _changed(lines: object) -> bool:
    if not isinstance(lines, list):
        return False
    for line in lines:
        text = bytes(line) if isinstance(line, (bytes, bytearray)) else b""
        if text.endswith((b"EXISTS", b"EXPUNGE", b"RECENT")) or b"FETCH" in text:
            return True
    return False


async def _idle_cycle(conn: ImapConn, seconds: float) -> bool:
    """One IDLE of at most ``seconds``; True when the folder changed."""
    client = conn.client
    await asyncio.wait_for(client.idle_start(timeout=seconds + 30), conn.timeout)
    changed = False
    try:
        push = await client.wait_server_push(timeout=seconds)
        changed = _changed(push)
    except TimeoutError:
        pass
    finally:
        client.idle_done()
        with contextlib.suppress(TimeoutError, *DROPPED):
            await asyncio.wait_for(client.protocol.wait("AUTH|SELECTED"), 5)
    return changed


async def mail_events(request: Request) -> Response:
    svc = services(request)
    session = request.scope["state"]["session"]
    folder = request.query_params.get("f", "INBOX")
    if len(folder) > 500 or any(ord(c) < 0x20 for c in folder):
        raise BadRequest("That folder name is not valid.")
    token = await svc.entra.imap_token(session.account_id)
    conn = await open_connection(svc.imap, session.email, token)
    try:
        await conn.select(mailbox_arg(folder), readonly=True)
    except GatewayError:
        await conn.close()
        raise
    if not conn.has("IDLE"):
        await conn.close()
        return Response(status_code=204)
    stop = asyncio.Event()
    mine = _streams.setdefault(session.id, [])
    mine.append(stop)
    while len(mine) > MAX_STREAMS:
        mine.pop(0).set()
    refresh = svc.settings.mail.idle_refresh_minutes * 60.0

    async def stream() -> AsyncIterator[str]:
        yield "retry: 15000\n\n"
        remaining = refresh
        try:
            while not stop.is_set():
                window = min(HEARTBEAT, remaining)
                if await _idle_cycle(conn, window):
                    yield f"event: mail\ndata: {json.dumps({'folder': folder})}\n\n"
                else:
                    yield ": keep-alive\n\n"
                remaining -= window
                if remaining <= 0:
                    remaining = refresh
        except (GatewayError, *DROPPED):
            log.info("mail event stream ended: connection lost")
            yield "event: lost\ndata: {}\n\n"
        finally:
            with contextlib.suppress(ValueError):
                mine.remove(stop)
            await conn.close()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


routes = [Route("/mail/events", mail_events, methods=["GET"])]
