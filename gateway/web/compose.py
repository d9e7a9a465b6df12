"""The compose form: new message, reply, reply-all, forward, reopened draft
(``GET /mail/compose``), and reading the posted form into the outbox (``read_form``) for
``gateway.web.send``, which sends, saves and closes.

Nothing a member writes is lost: every Send or Save first puts the whole form, uploads
included, in the encrypted outbox (``gateway.mail.outbox``). A bad address, a refused send,
a dropped connection or an expired sign-in shows the form again from there. Replies and
forwards are built from validated values only (``gateway.mail.compose``), never from copied
header objects.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
from urllib.parse import urlencode

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.auth import csrf
from gateway.errors import (
    BadRequest,
    Conflict,
    NotFound,
    StoreUnavailable,
    UpstreamError,
)
from gateway.mail import compose
from gateway.mail.addresses import format_address_list
from gateway.mail.mime import safe_filename
from gateway.mail.outbox import STATES, Draft, HeldFile, Outbox
from gateway.mail.reader import Opened
from gateway.services import services
from gateway.store.base import SessionRecord
from gateway.web import mailviews as mv
from gateway.web.mail import MAX_UID, _uid_param, open_message
from gateway.web.mailviews import human_size
from gateway.web.member import (
    mail_session,
    member,
    outbox,
)
from gateway.web.render import render

log = logging.getLogger(__name__)
OUTBOX_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
# The most a forward carries from the original; Exchange's own send limit is 35 MB.
MAX_FORWARD_BYTES = 35 * 1024 * 1024
MODES = {"new", "reply", "replyall", "forward", "draft"}


async def opened_original(request: Request, folder: str, uid: int) -> Opened:
    """The message being answered or forwarded (opened as the read page opens it), once per
    request: the form's fields, its kept attachments and the built message all need it."""
    opened: dict[tuple[str, int], Opened] = request.scope["state"].setdefault("originals", {})
    if (folder, uid) not in opened:
        opened[folder, uid] = await open_message(request, folder, uid, mark_read=False)
    return opened[folder, uid]


def form_page(request: Request, draft: Draft, outbox_id: str, *, error: str = "",
               notice: str = "", status: int = 200, kept: list[mv.KeptPart] | None = None,
               hold: bool = False, carry: bool = False, retry_after: int | None = None,
               listed: bool = False, refused: str = "") -> Response:
    svc = services(request)
    session = member(request)
    # carry: the store could not keep the attachments, so they travel back in the page
    # (rule: a message is never lost; the member's form comes back, attachments included).
    carried = [base64.b64encode(json.dumps({
        "name": f.name, "type": f.content_type,
        "data": base64.b64encode(f.data).decode()}).encode()).decode()
        for f in draft.files] if carry else []
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return render(request, "compose.html", {
        "hold": hold, "carried": carried, "listed": listed or hold, "refused": refused,
        "d": mv.ComposeFields(
            mode=draft.mode, to=draft.to, cc=draft.cc, bcc=draft.bcc, subject=draft.subject,
            body=draft.body, orig_folder=draft.orig_folder, orig_uid=draft.orig_uid,
            in_reply_to=draft.in_reply_to, references=tuple(draft.references),
            draft_uid=draft.draft_uid),
        "outbox_id": outbox_id, "error": error, "notice": notice,
        "action": "/mail/send?" + urlencode({"csrf_token": csrf.mask(session.csrf_token)}),
        "held": [mv.HeldFileRow(str(i), f.name, human_size(len(f.data)))
                 for i, f in enumerate(draft.files)],
        "kept": kept or [],
        "max_upload": human_size(svc.settings.mail.max_upload_bytes),
        "autosave": svc.settings.mail.autosave_seconds,
        "start": digest(draft),
    }, status=status, headers=headers)


def digest(draft: Draft) -> str:
    """What the form showed when it was sent to the browser, to tell on Close whether the
    member changed anything (then it is saved to Drafts, never thrown away)."""
    fields = "\0".join((draft.to, draft.cc, draft.bcc, draft.subject,
                        draft.body.replace("\r\n", "\n"), str(len(draft.files))))
    return hashlib.sha256(fields.encode()).hexdigest()[:32]


async def kept_parts(request: Request, draft: Draft) -> list[mv.KeptPart]:
    """The original's attachments that travel with a forward or a reopened draft. With the
    mailbox out of reach they are listed by part only: the form must still come back."""
    if not draft.keep_parts or not draft.orig_uid:
        return []
    try:
        view = (await opened_original(request, draft.orig_folder, draft.orig_uid)).view
    except UpstreamError:
        return [mv.KeptPart(p, f"Attachment {p} of the original message", "?")
                for p in draft.keep_parts]
    return [mv.KeptPart(a.part_id, a.filename, human_size(a.size))
            for a in view.attachments if a.part_id in draft.keep_parts]


async def compose_page(request: Request) -> Response:
    # One take of the member's connection for the page (the original, its attachments).
    async with mail_session(request):
        return await _compose_page(request)


async def _compose_page(request: Request) -> Response:
    session = member(request)
    q = request.query_params
    outbox_id = q.get("outbox", "")
    if outbox_id:
        if not OUTBOX_ID.fullmatch(outbox_id):
            raise BadRequest("That draft reference is not valid.")
        draft = await outbox(request).load(outbox_id, session.user_oid)
        if draft is None:
            raise NotFound("That message is no longer being kept.")
        notice = ("Your sign-in had ended while you were writing; your message was kept, "
                  "attachments too. Check it and send it."
                  if await outbox(request).state(outbox_id, session.user_oid) == "parked"
                  else "")
        return form_page(request, draft, outbox_id, notice=notice,
                          kept=await kept_parts(request, draft))
    mode = q.get("mode", "new")
    if mode not in MODES:
        raise BadRequest("That is not a way to write a message.")
    draft = Draft(mode=mode, to=q.get("to", "")[:2000])
    notice = ""
    if mode != "new":
        folder = q.get("f", "INBOX")
        draft.orig_folder, draft.orig_uid = folder, _uid_param(q.get("uid", ""))
        view = (await opened_original(request, folder, draft.orig_uid)).view
        if mode in ("reply", "replyall"):
            r = compose.reply_fields(view, session.email, reply_all=mode == "replyall")
            # Written so that reading the field back gives exactly these addresses: a name
            # is quoted whole, so nothing in it can become a recipient (issue 14 case 10).
            draft.to, draft.cc = format_address_list(r.to), format_address_list(r.cc)
            if r.left_out:
                notice = ("Some addresses in the original could not be read and were left "
                          "out: " + "; ".join(r.left_out[:5])
                          + (" and more." if len(r.left_out) > 5 else "."))
            draft.subject, draft.body = r.subject, "\n\n" + r.quoted_text
            draft.in_reply_to = r.in_reply_to or ""
            draft.references = list(r.references)
        elif mode == "forward":
            fw = compose.forward_fields(view)
            draft.subject, draft.body = fw.subject, "\n\n" + fw.quoted_text
            draft.keep_parts = [a.part_id for a in view.attachments
                                if not (a.inline and a.content_id)]
        else:  # reopen a draft
            draft.to, draft.cc = format_address_list(view.to), format_address_list(view.cc)
            draft.subject, draft.body = view.subject, view.text or ""
            draft.in_reply_to = view.in_reply_to or ""
            draft.references = list(view.references)
            draft.draft_uid = draft.orig_uid
            draft.keep_parts = [a.part_id for a in view.attachments]
    return form_page(request, draft, Outbox.new_id(), notice=notice,
                      kept=await kept_parts(request, draft))


def _carried(value: object) -> HeldFile | None:
    """An attachment that came back in the page when the store could not keep it."""
    if not isinstance(value, str):
        return None
    try:
        d = json.loads(base64.b64decode(value, validate=True))
        return HeldFile(safe_filename(str(d["name"])), str(d["type"])[:200],
                        base64.b64decode(d["data"], validate=True))
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


async def read_form(request: Request, session: SessionRecord | None = None
                     ) -> tuple[str, Draft, str, str, bool]:
    """Parse the compose form into a Draft merged with what the outbox already holds.
    Returns (outbox id, draft, what to do, a problem with uploads or "", whether the outbox
    now holds it)."""
    svc = services(request)
    session = session or member(request)
    limit = svc.settings.mail.max_upload_bytes
    # Attachments carried back in the page (store unavailable) arrive as base64 fields.
    form = await request.form(max_files=50, max_fields=200,
                              max_part_size=max(8 * 1024 * 1024, limit * 4 // 3 + 4096))
    outbox_id = str(form.get("outbox_id", ""))
    if not OUTBOX_ID.fullmatch(outbox_id):
        raise BadRequest("The form was incomplete. Go back and try again.")
    try:
        state = await outbox(request).state(outbox_id, session.user_oid)
        held = await outbox(request).load(outbox_id, session.user_oid)
    except StoreUnavailable:
        state, held = None, None   # the save below fails too, and the form comes back
    if state == "sent":
        raise Conflict("This message has already been sent. Look in Sent Items.")

    def text(name: str, cap: int = 100_000) -> str:
        value = form.get(name, "")
        return value[:cap] if isinstance(value, str) else ""

    mode = text("mode") if text("mode") in MODES else "new"
    uid_text = text("orig_uid")
    draft = Draft(
        to=text("to", 5000), cc=text("cc", 5000), bcc=text("bcc", 5000),
        subject=text("subject", 1000), body=text("body", 2_000_000), mode=mode,
        orig_folder=text("orig_folder", 500),
        orig_uid=int(uid_text) if uid_text.isdigit() and 0 < int(uid_text) <= MAX_UID else 0,
        in_reply_to=text("in_reply_to", 1000),
        references=text("references", 10_000).split(),
        draft_uid=held.draft_uid if held else (int(text("draft_uid")) if text("draft_uid")
                                                .isdigit() else 0),
        files=list(held.files) if held else [],
        attempts=held.attempts if held else 0,
        keep_parts=[str(v) for v in form.getlist("keep_part") if isinstance(v, str)])
    if held is None:
        draft.files = [f for f in map(_carried, form.getlist("carry_file")) if f is not None]
    drop = {str(v) for v in form.getlist("drop_file")}
    draft.files = [f for i, f in enumerate(draft.files) if str(i) not in drop]
    problem = ""
    for item in form.getlist("attach"):
        if not isinstance(item, UploadFile) or not item.filename:
            continue
        data = await item.read()
        if draft.total_bytes() + len(data) > limit:
            problem = (f"Attachments can be at most {human_size(limit)} in all, so "
                       f"{item.filename!s} was not added.")
            continue
        draft.files.append(HeldFile(safe_filename(item.filename),
                                    item.content_type or "application/octet-stream", data))
    do = text("do") or "send"
    # A message kept after a failure stays listed in the Outbox until it is sent or discarded.
    keep_state = state if state in STATES else "compose"
    try:
        await outbox(request).save(outbox_id, session.user_oid, draft, keep_state,
                                    svc.clock())
    except StoreUnavailable:
        # Rule: a message is never lost. Not kept server-side: it goes back in the page.
        log.warning("outbox could not keep a message: store unavailable")
        return outbox_id, draft, do, problem, False
    return outbox_id, draft, do, problem, True


routes = [Route("/mail/compose", compose_page, methods=["GET"])]
