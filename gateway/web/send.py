"""Sending, saving and closing what the compose form holds: ``POST /mail/send`` (Send, Send
anyway, Save draft, the automatic save, Close) and the Outbox page's Send.

The form is read once into the encrypted outbox (``gateway.web.compose.read_form``) before
anything else happens, so a refused or uncertain send, a dropped connection or an ended
sign-in brings the form back from there. The exactly-once rule (claim, Sent Items check)
is ``gateway.mail.sender``'s; this module turns its outcomes into pages and notices.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.auth.sessions import SESSION_COOKIE, clear_cookie_header
from gateway.errors import (
    BadRequest,
    Conflict,
    GatewayError,
    PartlyRefused,
    ReauthRequired,
    SendUncertain,
    SmtpAuthDisabled,
    StoreUnavailable,
)
from gateway.health.metrics import metrics_of
from gateway.mail import compose
from gateway.mail.mime import Address
from gateway.mail.outbox import Draft, Outbox
from gateway.mail.smtp import send as smtp_send
from gateway.services import app_state, services
from gateway.store.base import SessionRecord
from gateway.web import notices, people
from gateway.web.compose import (
    MAX_FORWARD_BYTES,
    digest,
    form_page,
    kept_parts,
    opened_original,
    read_form,
)
from gateway.web.member import (
    ended_session,
    member,
    outbox,
    sender,
    sign_in_redirect,
    sign_in_url,
    signed_in,
)

log = logging.getLogger(__name__)


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
        original = await opened_original(request, draft.orig_folder, draft.orig_uid)
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
    try:
        if signed_in(request) is None and ended is not None:
            return await _keep_for_sign_in(request, ended, wants_json)
        outbox_id, draft, do, problem, stored = await read_form(request)
        if do == "close" and stored:
            return await _close(request, outbox_id, draft)
        return await deliver(request, outbox_id, draft, do, problem=problem, stored=stored,
                             wants_json=wants_json)
    finally:
        # The uploads are spooled to temporary files while the form is parsed; the outbox
        # holds their bytes now, so the files are closed here rather than left to the
        # garbage collector (a ResourceWarning each).
        await request.close()


async def _keep_for_sign_in(request: Request, ended: SessionRecord,
                            wants_json: bool) -> Response:
    """The sign-in ended while the member wrote (idle or too old). Rule: a message is never
    lost: the form, attachments included, is kept for that member (nothing is sent), and
    after signing in again they land back on it."""
    svc = services(request)
    outbox_id, draft, _do, _problem, stored = await read_form(request, ended)
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
    kept = await kept_parts(request, draft)
    refused: list[tuple[str, str]] = []
    if not stored:
        message = ("The gateway cannot keep messages just now (its store is unavailable), so "
                   "nothing was sent or saved. Your message is below, attachments included: "
                   "try again in a minute.")
        if wants_json:
            return JSONResponse({"saved": False, "error": message}, 503,
                                headers={"Retry-After": "60"})
        return form_page(request, draft, outbox_id, error=message, status=503, kept=kept,
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
            return form_page(request, draft, outbox_id, notice=notice, error=problem,
                              kept=kept)
        if problem:
            return form_page(request, draft, outbox_id, error=problem, status=400, kept=kept)
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
            return form_page(request, draft, outbox_id, error=message, status=409,
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
            return form_page(request, draft, outbox_id, error=err.message, status=err.status,
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
        return form_page(request, draft, outbox_id, error=err.message, status=err.status,
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
    # Whoever was just written to is a recent correspondent now: the next suggestion asks
    # Sent Items again instead of the minute-old list.
    people.forget_recent(session.account_id)
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
    return form_page(request, again, outbox_id, status=200, kept=await kept_parts(
        request, again), carry=not stored, refused=reasons)


async def _close(request: Request, outbox_id: str, draft: Draft) -> Response:
    """Close the form. Anything changed since it was shown is saved to Drafts first (it
    is never thrown away); if Drafts cannot be reached the form stays, with a message."""
    svc = services(request)
    session = member(request)
    form = await request.form()  # parsed already by read_form; Starlette keeps it
    if digest(draft) == str(form.get("start", "")) and not draft.draft_uid:
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
        return form_page(request, draft, outbox_id, status=err.status,
                          kept=await kept_parts(request, draft),
                          error=f"{err.message} Your message was not closed: it is kept here.")
    if await outbox(request).state(outbox_id, session.user_oid) == "compose":
        await outbox(request).discard(outbox_id, session.user_oid)

    drafts = await sender(request, session.user_oid).drafts_name()
    note = notices.encode(session, svc.clock(), "draft-saved")
    return RedirectResponse(notices.with_note("/mail?" + urlencode({"f": drafts}), note), 303)


routes = [Route("/mail/send", send_or_save, methods=["POST"])]
