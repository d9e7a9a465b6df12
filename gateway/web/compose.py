"""Writing mail: new message, reply, reply-all, forward, reopened draft; send; save to Drafts
(on request and automatically while writing).

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
from datetime import UTC, datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.auth import csrf
from gateway.auth.sessions import SESSION_COOKIE, clear_cookie_header
from gateway.errors import (
    BadRequest,
    Conflict,
    GatewayError,
    NotFound,
    PartlyRefused,
    ReauthRequired,
    SendUncertain,
    SmtpAuthDisabled,
    StoreUnavailable,
    UpstreamError,
)
from gateway.health.metrics import metrics_of
from gateway.mail import compose
from gateway.mail.addresses import format_address_list
from gateway.mail.mime import Address, safe_filename
from gateway.mail.outbox import STATES, Draft, HeldFile, Outbox
from gateway.mail.reader import Opened
from gateway.mail.smtp import send as smtp_send
from gateway.services import app_state, services
from gateway.store.base import SessionRecord
from gateway.web import mailviews as mv
from gateway.web import notices
from gateway.web.mail import MAX_UID, _uid_param, open_message
from gateway.web.mailviews import human_size
from gateway.web.member import (
    ended_session,
    mail_session,
    member,
    outbox,
    sender,
    sign_in_redirect,
    sign_in_url,
    signed_in,
)
from gateway.web.render import render

log = logging.getLogger(__name__)
OUTBOX_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
# The most a forward carries from the original; Exchange's own send limit is 35 MB.
MAX_FORWARD_BYTES = 35 * 1024 * 1024
MODES = {"new", "reply", "replyall", "forward", "draft"}


async def _original(request: Request, folder: str, uid: int) -> Opened:
    """The message being answered or forwarded (opened as the read page opens it), once per
    request: the form's fields, its kept attachments and the built message all need it."""
    opened: dict[tuple[str, int], Opened] = request.scope["state"].setdefault("originals", {})
    if (folder, uid) not in opened:
        opened[folder, uid] = await open_message(request, folder, uid, mark_read=False)
    return opened[folder, uid]


def _form_page(request: Request, draft: Draft, outbox_id: str, *, error: str = "",
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
        "start": _digest(draft),
    }, status=status, headers=headers)


def _digest(draft: Draft) -> str:
    """What the form showed when it was sent to the browser, to tell on Close whether the
    member changed anything (then it is saved to Drafts, never thrown away)."""
    fields = "\0".join((draft.to, draft.cc, draft.bcc, draft.subject,
                        draft.body.replace("\r\n", "\n"), str(len(draft.files))))
    return hashlib.sha256(fields.encode()).hexdigest()[:32]


async def _kept_parts(request: Request, draft: Draft) -> list[mv.KeptPart]:
    """The original's attachments that travel with a forward or a reopened draft. With the
    mailbox out of reach they are listed by part only: the form must still come back."""
    if not draft.keep_parts or not draft.orig_uid:
        return []
    try:
        view = (await _original(request, draft.orig_folder, draft.orig_uid)).view
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
        return _form_page(request, draft, outbox_id, notice=notice,
                          kept=await _kept_parts(request, draft))
    mode = q.get("mode", "new")
    if mode not in MODES:
        raise BadRequest("That is not a way to write a message.")
    draft = Draft(mode=mode, to=q.get("to", "")[:2000])
    notice = ""
    if mode != "new":
        folder = q.get("f", "INBOX")
        draft.orig_folder, draft.orig_uid = folder, _uid_param(q.get("uid", ""))
        view = (await _original(request, folder, draft.orig_uid)).view
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
    return _form_page(request, draft, Outbox.new_id(), notice=notice,
                      kept=await _kept_parts(request, draft))


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


async def _read_form(request: Request, session: SessionRecord | None = None
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


def _addresses(text: str) -> list[Address]:
    return compose.parse_address_list(text) if text.strip() else []


async def _save_to_drafts(request: Request, draft: Draft) -> int:
    built = await _build(request, draft, strict=False)
    return await sender(request, member(request).user_oid).save_to_drafts(built.data,
                                                                          draft.draft_uid)


async def _build(request: Request, draft: Draft, strict: bool,
                 message_id_local: str | None = None) -> compose.BuiltMessage:
    session = member(request)
    to, cc, bcc = _addresses(draft.to), _addresses(draft.cc), _addresses(draft.bcc)
    if strict and not (to or cc or bcc):
        raise BadRequest("Add at least one recipient.")
    attachments = [(f.name, f.content_type, f.data) for f in draft.files]
    if draft.keep_parts and draft.orig_uid:
        original = await _original(request, draft.orig_folder, draft.orig_uid)
        infos = {a.part_id: a for a in original.view.attachments}
        for part in draft.keep_parts:
            info = infos.get(part)
            data = await original.part(part, MAX_FORWARD_BYTES) if info else None
            if info is None or data is None:
                continue
            attachments.append((info.filename, info.content_type, data))
    domain = session.email.rsplit("@", 1)[-1] or "gateway.invalid"
    return compose.build_message(
        from_addr=Address(session.user_name, session.email), to=to, cc=cc, bcc=bcc,
        subject=draft.subject, text_body=draft.body, attachments=attachments,
        in_reply_to=draft.in_reply_to or None, references=draft.references,
        message_id_domain=domain, date=datetime.now(UTC), require_recipients=strict,
        message_id_local=message_id_local)


async def send_or_save(request: Request) -> Response:
    wants_json = "application/json" in request.headers.get("accept", "")
    ended = ended_session(request)
    if signed_in(request) is None and ended is not None:
        return await _keep_for_sign_in(request, ended, wants_json)
    outbox_id, draft, do, problem, stored = await _read_form(request)
    if do == "close" and stored:
        return await _close(request, outbox_id, draft)
    return await deliver(request, outbox_id, draft, do, problem=problem, stored=stored,
                         wants_json=wants_json)


async def _keep_for_sign_in(request: Request, ended: SessionRecord,
                            wants_json: bool) -> Response:
    """The sign-in ended while the member wrote (idle or too old). Rule: a message is never
    lost: the form, attachments included, is kept for that member (nothing is sent), and
    after signing in again they land back on it."""
    svc = services(request)
    outbox_id, draft, _do, _problem, stored = await _read_form(request, ended)
    if not stored:
        raise StoreUnavailable("Your sign-in has ended and the gateway could not keep your "
                               "message just now. Go back and copy your text before signing "
                               "in again.")
    await outbox(request).save(outbox_id, ended.user_oid, draft, "parked", svc.clock())
    log.info("sign-in ended while writing; message kept for after sign-in")
    target = "/mail/compose?" + urlencode({"outbox": outbox_id})
    if wants_json:
        return JSONResponse({"saved": False, "kept": True, "signin": sign_in_url(target),
                             "error": "Your sign-in has ended. Your message is kept: sign in "
                                      "again to carry on."}, 401)
    response = sign_in_redirect(target)
    response.headers.append("Set-Cookie", clear_cookie_header(SESSION_COOKIE))
    return response


async def deliver(request: Request, outbox_id: str, draft: Draft, do: str, *,
                  problem: str = "", stored: bool = True, wants_json: bool = False
                  ) -> Response:
    """Send (do = send | send_anyway) or save (draft | autosave) a message the outbox
    holds; the compose form and the Outbox page's Send both come here."""
    svc = services(request)
    session = member(request)
    kept = await _kept_parts(request, draft)
    refused: list[tuple[str, str]] = []
    if not stored:
        message = ("The gateway cannot keep messages just now (its store is unavailable), so "
                   "nothing was sent or saved. Your message is below, attachments included: "
                   "try again in a minute.")
        if wants_json:
            return JSONResponse({"saved": False, "error": message}, 503,
                                headers={"Retry-After": "60"})
        return _form_page(request, draft, outbox_id, error=message, status=503, kept=kept,
                          carry=True, retry_after=60)
    try:
        if do in ("draft", "autosave"):
            draft.draft_uid = await _save_to_drafts(request, draft)
            await outbox(request).save(outbox_id, session.user_oid, draft, "compose",
                                        svc.clock())
            when = datetime.now(ZoneInfo(svc.settings.general.timezone))
            notice = f"Saved to Drafts at {when:%H:%M}."
            if wants_json:
                return JSONResponse({"saved": True, "at": f"{when:%H:%M}", "notice": notice})
            return _form_page(request, draft, outbox_id, notice=notice, error=problem,
                              kept=kept)
        if problem:
            return _form_page(request, draft, outbox_id, error=problem, status=400, kept=kept)
        built = await _build(request, draft, strict=True, message_id_local=outbox_id)
        token = await svc.entra.smtp_token(session.account_id)

        async def transmit() -> None:
            partly: PartlyRefused | None = None
            with metrics_of(request.app).upstream_call("smtp"):
                try:
                    await smtp_send(svc.smtp, session.email, token, built.recipients,
                                    built.data)
                except PartlyRefused as exc:
                    partly = exc       # sent to the others: not a failed call
            if partly is not None:
                raise partly
        # "Send anyway" is the member's own choice: no Sent Items check.
        sent = await sender(request, session.user_oid).send(
            outbox_id, draft, built.message_id, check_sent=do != "send_anyway",
            transmit=transmit)
        if sent.held:
            message = ("An earlier try to send this message may have gone, and Sent Items "
                       "cannot be checked just now, so it was not sent again. It is kept "
                       "in your Outbox. Look in Sent Items when you can; if it is not "
                       "there, press Send anyway.")
            if wants_json:
                return JSONResponse({"saved": True, "held": True, "error": message}, 409)
            return _form_page(request, draft, outbox_id, error=message, status=409,
                              kept=kept, hold=True)
        refused = sent.refused
    except ReauthRequired:
        # Keep the message; after signing in again the member lands back on it.
        await svc.sessions.end(session)
        return sign_in_redirect("/mail/compose?" + urlencode({"outbox": outbox_id}))
    except GatewayError as err:
        if isinstance(err, SmtpAuthDisabled):
            # Only ICT can fix it: named, counted, audited (gateway.auth.blockers).
            await app_state(request).blockers.report("smtp_auth_disabled", session)
        if isinstance(err, Conflict):
            # Someone else is sending (or has sent) this very message: leave its record be.
            return _form_page(request, draft, outbox_id, error=err.message, status=err.status,
                              kept=kept)
        if do in ("send", "send_anyway"):
            metrics_of(request.app).send_result(ok=False)
            state = "unknown" if isinstance(err, SendUncertain) else "failed"
            try:
                await outbox(request).save(outbox_id, session.user_oid, draft, state,
                                            svc.clock())
            except StoreUnavailable:
                log.warning("outbox could not record a failed send: store unavailable")
        if wants_json:
            return JSONResponse({"saved": False, "error": err.message}, err.status)
        return _form_page(request, draft, outbox_id, error=err.message, status=err.status,
                          kept=kept, hold=isinstance(err, SendUncertain),
                          retry_after=err.retry_after, listed=do in ("send", "send_anyway"))
    log.info("message sent (recipients=%d, bytes=%d)", len(built.recipients), len(built.data))
    metrics_of(request.app).send_result(ok=True)
    # Metadata only: never content or recipients' addresses.
    await svc.audit.try_record("mail.sent", session.email, size=len(built.data),
                               recipients=len(built.recipients))
    try:
        await outbox(request).mark_sent(outbox_id, session.user_oid, svc.clock())
    except StoreUnavailable:
        # Sent, but not recorded: the record keeps its attempt count, so a resubmit checks
        # Sent Items before sending again.
        log.warning("sent message could not be marked sent: store unavailable")
    await sender(request, session.user_oid).after_send(
        draft, built.data if svc.settings.mail.sent_copy == "gateway" else None)
    if refused:
        return await _resend_form(request, draft, refused)
    note = notices.encode(session, svc.clock(), "sent")
    return RedirectResponse(notices.with_note("/mail?f=INBOX&sent=1", note), 303)


async def _resend_form(request: Request, draft: Draft, refused: list[tuple[str, str]]
                       ) -> Response:
    """After a partial refusal: the same message in a new form addressed to the refused
    recipients only (the others have it), each named with the server's reason."""
    svc = services(request)
    session = member(request)
    again = Draft(mode=draft.mode, to=", ".join(addr for addr, _ in refused),
                  subject=draft.subject, body=draft.body, orig_folder=draft.orig_folder,
                  orig_uid=draft.orig_uid, in_reply_to=draft.in_reply_to,
                  references=list(draft.references), files=list(draft.files),
                  keep_parts=list(draft.keep_parts))
    outbox_id = Outbox.new_id()
    stored = True
    try:
        await outbox(request).save(outbox_id, session.user_oid, again, "compose", svc.clock())
    except StoreUnavailable:
        stored = False
    reasons = "; ".join(f"{addr} ({why})" if why else addr for addr, why in refused)
    return _form_page(request, again, outbox_id, status=200, kept=await _kept_parts(
        request, again), carry=not stored, refused=reasons)


async def _close(request: Request, outbox_id: str, draft: Draft) -> Response:
    """Close the form. Anything changed since it was shown is saved to Drafts first (it
    is never thrown away); if Drafts cannot be reached the form stays, with a message."""
    svc = services(request)
    session = member(request)
    form = await request.form()  # parsed already by _read_form; Starlette keeps it
    if _digest(draft) == str(form.get("start", "")) and not draft.draft_uid:
        if await outbox(request).state(outbox_id, session.user_oid) == "compose":
            await outbox(request).discard(outbox_id, session.user_oid)
        return RedirectResponse("/mail?f=INBOX", 303)
    try:
        draft.draft_uid = await _save_to_drafts(request, draft)
    except ReauthRequired:
        # Kept in the outbox; after signing in again the member lands back on it.
        await svc.sessions.end(session)
        return sign_in_redirect("/mail/compose?" + urlencode({"outbox": outbox_id}))
    except GatewayError as err:
        return _form_page(request, draft, outbox_id, status=err.status,
                          kept=await _kept_parts(request, draft),
                          error=f"{err.message} Your message was not closed: it is kept here.")
    if await outbox(request).state(outbox_id, session.user_oid) == "compose":
        await outbox(request).discard(outbox_id, session.user_oid)

    drafts = await sender(request, session.user_oid).drafts_name()
    note = notices.encode(session, svc.clock(), "draft-saved")
    return RedirectResponse(notices.with_note("/mail?" + urlencode({"f": drafts}), note), 303)


routes = [
    Route("/mail/compose", compose_page, methods=["GET"]),
    Route("/mail/send", send_or_save, methods=["POST"]),
]
