"""New mail without a reload: IMAP IDLE on the open folder, pushed to the page as
server-sent events.

The stream IDLEs on the member's own pooled connection
(``gateway.mail.imap_pool.ImapPool.watch``), the one their pages use, so a member with pages
and a stream open holds one connection and one login (Exchange allows about 20 connections a
mailbox and throttles bursts of logins). A page that needs the connection ends the IDLE with
DONE and the stream resumes after it; IDLE ended by the server (Exchange cuts it after 30
minutes) or a session ended for an expired token (``AccessTokenExpired``) is resumed on a
fresh connection without a word to the member. Changes are found by comparing the folder's
UIDVALIDITY and count between rounds, so news that came while a page had the connection is
announced too; the page passes the count it shows (``n``), so news that came between the
page and the stream's start is announced at once. Each IDLE lasts at most ``HEARTBEAT``
seconds (well inside ``mail.idle_refresh_minutes``); a comment line goes out after each
quiet round so proxies keep the stream open. A member has at most ``MAX_STREAMS`` per
session; older ones close when a newer one opens. Two streams (two tabs, perhaps on two
folders) take turns on the one connection, each IDLE cut to ``STREAM_TURN`` seconds while
the other waits, so neither tab hears of its news a whole round late. Pages work without it.
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

from gateway.errors import BadRequest, GatewayError, UpstreamUnavailable
from gateway.mail.imap_pool import Watched
from gateway.mail.mailbox import mailbox_arg
from gateway.services import services
from gateway.web.member import mail_session, member

log = logging.getLogger(__name__)
HEARTBEAT = 45.0
MAX_STREAMS = 2
RETRY_SECONDS = 1.0
_streams: dict[str, list[asyncio.Event]] = {}


def _news(before: Watched, after: Watched) -> bool:
    return after.flags_changed or (before.uidvalidity, before.exists) != (after.uidvalidity,
                                                                          after.exists)


async def mail_events(request: Request) -> Response:
    svc = services(request)
    session = member(request)
    folder = request.query_params.get("f", "INBOX")
    if len(folder) > 500 or any(ord(c) < 0x20 for c in folder):
        raise BadRequest("That folder name is not valid.")
    shown = request.query_params.get("n", "")
    if shown and not (shown.isascii() and shown.isdigit() and len(shown) <= 9):
        raise BadRequest("That message count is not valid.")
    ms = mail_session(request)
    raw = mailbox_arg(folder)
    # The first round (no IDLE) checks the folder before the stream starts: a folder that
    # cannot be opened is a plain error page, not a stream.
    first = await ms.watch(raw, 0.0)
    if first is None:
        return Response(status_code=204)
    last: Watched = first
    stop = asyncio.Event()
    mine = _streams.setdefault(session.id, [])
    mine.append(stop)
    while len(mine) > MAX_STREAMS:
        mine.pop(0).set()
    window = min(HEARTBEAT, svc.settings.mail.idle_refresh_minutes * 60.0)

    async def stream() -> AsyncIterator[str]:
        nonlocal last
        yield "retry: 15000\n\n"
        if shown and int(shown) != first.exists:
            # The folder changed after the page was made and before this stream began.
            yield f"event: mail\ndata: {json.dumps({'folder': folder})}\n\n"
        failed = 0
        try:
            while not stop.is_set():
                try:
                    now = await ms.watch(raw, window, last)
                except UpstreamUnavailable:
                    # One round may lose its connection twice (ended, replaced, ended
                    # again): try once more before telling the page.
                    failed += 1
                    if failed > 1:
                        raise
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                failed = 0
                if now is None:
                    break
                if _news(last, now):
                    yield f"event: mail\ndata: {json.dumps({'folder': folder})}\n\n"
                else:
                    yield ": keep-alive\n\n"
                last = now
        except GatewayError:
            log.info("mail event stream ended: the mail server cannot be reached")
            yield "event: lost\ndata: {}\n\n"
        finally:
            with contextlib.suppress(ValueError):
                mine.remove(stop)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


routes = [Route("/mail/events", mail_events, methods=["GET"])]
