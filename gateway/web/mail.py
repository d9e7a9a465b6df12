"""The mail pages: folder list and message list, a message, its sandboxed HTML body, its
attachments and inline images, and the actions on messages (read/unread, flag, move,
delete, archive, empty a folder). Every page works without JavaScript.

Message bodies never render in the gateway's own page: HTML is sanitised with an allow-list
(``gateway.mail.sanitize``) off the event loop, then served at its own URL with its own
CSP and shown in an ``<iframe sandbox>`` without scripts or same-origin. Inline ``cid:``
images are embedded as data URLs because an opaque-origin frame sends no cookies.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.errors import BadRequest, NotFound
from gateway.mail import mailbox, parts, reader, sanitize, warmed
from gateway.mail.addresses import format_address_list
from gateway.mail.imap import ImapConn
from gateway.mail.imap_fetch import BodyPart
from gateway.mail.mime import safe_filename
from gateway.mail.reader import FRAMES, Opened
from gateway.services import Services, services
from gateway.web import mailviews as mv
from gateway.web import notices
from gateway.web.auth import safe_next
from gateway.web.member import imap_run, mail_session, member, signed_in
from gateway.web.render import folders_html, list_html, move_html, pane_html, render

# What the calendar's invitation route reports back (?done=...) after a decline.
_ANSWERED = {"declined": "You declined this invitation.",
             "accepted": "You accepted this invitation.",
             "tentative": "You answered tentatively."}
_BY_MAIL = (" The meeting is not in your calendar, so your answer went to the organiser by "
            "mail.")
_ANSWERED.update({f"{k}-by-mail": v + _BY_MAIL for k, v in list(_ANSWERED.items())})
ACTIONS = {"read", "unread", "flag", "unflag", "delete", "archive", "move", "junk", "undo"}


def _tz(svc: Services) -> ZoneInfo:
    return ZoneInfo(svc.settings.general.timezone)


async def open_message(request: Request, folder: str, uid: int, mark_read: bool) -> Opened:
    """Open a message on the member's mail session (``gateway.mail.reader``)."""
    return await reader.open_message(mail_session(request), folder, uid, mark_read)


def _folder_param(request: Request, default: str = "INBOX") -> str:
    f = request.query_params.get("f", default)
    if not f or len(f) > 500 or any(ord(c) < 0x20 for c in f):
        raise BadRequest("That folder name is not valid.")
    return f


# IMAP UIDs are non-zero 32-bit numbers (RFC 3501 2.3.1.1).
MAX_UID = 2**32 - 1


def _uid_param(value: str | None) -> int:
    # Rule: every refusal is a 4xx with a plain page; uid=0 used to reach the server (502).
    if not value or not value.isdigit() or len(value) > 10 or not 0 < int(value) <= MAX_UID:
        raise BadRequest("That message reference is not valid.")
    return int(value)


async def folder_page(request: Request) -> Response:
    svc = services(request)
    folder = _folder_param(request)
    try:
        page_no = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        page_no = 1

    # The inbox's first page straight after sign-in may be the one the callback built
    # (gateway.mail.warmed); any other is asked for now.
    folders, page = await imap_run(
        request, lambda conn: warmed.folder_page(conn, folder, page_no))
    current = reader.named(folders, folder)
    drafts = current is not None and current.special == "drafts"
    return render(request, "mail_list.html", {
        "folders_html": folders_html(folders, folder, str(request.scope["path"])),
        "folder": folder,
        "folder_label": current.label if current else folder,
        "special": current.special if current else None,
        "rows": page.messages,
        "rows_html": list_html(folder, page.messages, _tz(svc), datetime.now(UTC), drafts),
        "page": mv.PageCount(total=page.total, page=page.page, pages=page.pages),
        "prev_url": mv.folder_url(folder, page.page - 1) if page.page > 1 else None,
        "next_url": mv.folder_url(folder, page.page + 1) if page.page < page.pages else None,
        "move_html": move_html(folders, folder),
        "notice": notice_of(request),
        "here_url": _here(request),
    })


def _here(request: Request) -> str:
    """This page's address without its notice: where an Undo comes back to."""
    # From the scope: request.url builds a whole URL (host, scheme) for two of its parts.
    raw = request.scope.get("query_string", b"").decode("latin-1")
    query = notices.without_note(raw) if raw else ""
    return str(request.scope["path"]) + ("?" + query if query else "")


async def read_message(request: Request) -> Response:
    svc = services(request)
    folder = _folder_param(request)
    uid = _uid_param(request.query_params.get("uid"))
    mark = svc.settings.mail.mark_read_on_open
    images = request.query_params.get("images") == "1"

    # The page's script says whether this window shows two panes (base.html: a cookie, not
    # a secret). Where it shows one, the folder's list is neither fetched nor sent; without
    # the cookie (no JavaScript) the list always comes and the CSS shows or hides it.
    with_list = request.cookies.get("panes") != "1"

    async def work(conn: ImapConn) -> tuple[list[mailbox.Folder], int, mailbox.Page | None,
                                            bool]:
        # The page of the folder that holds this message: where "Back" goes, and the list
        # beside it in the two-pane layout (a landscape iPad). Its flag state comes with it:
        # only Flag or Unflag is offered. Asked beside the folder list when that is not kept
        # (the message's folder is selected already: one round trip, not two).
        folders, (page_no, flags) = await mailbox.together(
            mailbox.list_folders(conn, counts=False), mailbox.page_and_flags(conn, folder, uid))
        listed = await mailbox.fetch_page(conn, folder, page_no) if with_list else None
        return folders, page_no, listed, "\\flagged" in flags
    # One take of the member's connection for the whole page (inline images included).
    async with mail_session(request) as ms:
        opened = await reader.open_message(ms, folder, uid, mark_read=mark)
        folders, page_no, listed, flagged = await ms.run(work)
        view = opened.view
        result = (await reader.sanitized(opened, allow_remote=images) if view.html
                  else None)
    tz = _tz(svc)
    # Opened from search results: Back returns to the same results (issue 13 item 13).
    back = request.query_params.get("back", "")
    from_search = back if back.startswith("/mail/search?") and safe_next(back) == back else ""
    blocked = 0
    frame_url = None
    text_html = None
    if result is not None:
        blocked = result.blocked_remote
        FRAMES.put((member(request).account_id, folder, uid, images), result.html)
        q = {"f": folder, "uid": str(uid)}
        if images:
            q["images"] = "1"
        frame_url = "/mail/frame?" + urlencode(q)
    elif view.text is not None:
        text_html = sanitize.text_to_html(view.text)
    invite_when = ""
    if view.calendar is not None and isinstance(view.calendar.start, datetime):
        invite_when = mv.long_date(view.calendar.start, tz)
    page = mv.MessagePage(
        folder=folder, uid=uid,
        subject=mv.bounded(view.subject, mv.PAGE_SUBJECT_CHARS) or "(no subject)",
        # Names quoted as the reply form quotes them: the member sees which text is a name.
        sender=format_address_list(view.from_) or "(unknown sender)",
        to=format_address_list(view.to), cc=format_address_list(view.cc),
        date=mv.long_date(view.date, tz), unread=not mark,
        text_html=text_html, frame_url=frame_url, blocked_remote=blocked,
        images_shown=images, show_images_url=mv.message_url(folder, uid, images="1"),
        attachments=mv.attachment_links(folder, uid, view.attachments),
        invite=view.calendar, invite_when=invite_when,
        notes=[*view.notes, *(f"Not an address, shown as written ({head}): {text}"
                              for head, texts in view.unreadable.items() for text in texts[:5])],
        back_url=from_search or mv.folder_url(folder, page_no),
        back_label="Back to the results" if from_search else "Back to the folder",
        self_url=mv.message_url(folder, uid),
        answered=_ANSWERED.get(request.query_params.get("done", ""), ""), flagged=flagged)
    is_draft = any(f.name == folder and f.special == "drafts" for f in folders)
    current = reader.named(folders, folder)
    pane = None
    if listed is not None:
        pane = mv.ListPane(label=current.label if current else folder,
                           rows_html=pane_html(folder, listed.messages, tz, datetime.now(UTC),
                                               is_draft, uid) if listed.messages else Markup(),
                           page=listed.page, pages=listed.pages)
    return render(request, "mail_read.html", {"m": page, "move_html": move_html(folders, folder),
                                              "edit_url": mv.draft_url(page.self_url)
                                              if is_draft else "",
                                              "notice": notice_of(request),
                                              "here_url": _here(request), "pane": pane})


async def message_frame(request: Request) -> Response:
    """The sanitised HTML body as its own document, for the sandboxed iframe."""
    folder = _folder_param(request)
    uid = _uid_param(request.query_params.get("uid"))
    images = request.query_params.get("images") == "1"
    key = (member(request).account_id, folder, uid, images)
    body = FRAMES.get(key)
    if body is None:
        async with mail_session(request) as ms:
            opened = await reader.open_message(ms, folder, uid, mark_read=False)
            if not opened.view.html:
                raise NotFound("This message has no formatted body.")
            body = (await reader.sanitized(opened, allow_remote=images)).html
    csp = sanitize.frame_csp(images)
    doc = sanitize.frame_document(body, csp)
    headers = {
        # Its own policy, replacing the page policy: nothing runs, frames only by us.
        "Content-Security-Policy": csp + "; frame-ancestors 'self'; sandbox allow-popups "
                                         "allow-popups-to-escape-sandbox",
        "X-Frame-Options": "SAMEORIGIN",
        "Cache-Control": "private, no-store",
    }
    return Response(doc, media_type="text/html; charset=utf-8", headers=headers)


_UNSAFE_NAME = re.compile(r'[\\"\r\n;]')
# What the first bytes of each inline type must be (the WHATWG MIME Sniffing signatures).
# A part that claims one of these types but is something else downloads instead.
SIGNATURES = {"application/pdf": (b"%PDF-",), "image/png": (b"\x89PNG\r\n\x1a\n",),
              "image/jpeg": (b"\xff\xd8\xff",), "image/gif": (b"GIF87a", b"GIF89a"),
              "image/webp": (b"RIFF",)}
# Images (and anything unverified) open in a sandbox: an opaque origin with no script.
SANDBOXED = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
             "object-src 'self'; frame-ancestors 'self'; sandbox")
# PDFs cannot have the sandbox: WebKit (iPad Safari before the fix of WebKit bug 284594,
# and WebKitGTK's PDF.js, whose viewer needs script) shows a blank viewer under it (adobe
# aem-core-wcm-components #2839, receptron/mulmoclaude #1299). Without it nothing of ours
# runs either: the bytes are checked to be a PDF and sent with nosniff, so no engine parses
# them as HTML or SVG; each engine draws PDFs in a viewer of its own origin (Chromium's PDF
# extension, Safari's PDFKit plugin, WebKitGTK's webkit-pdfjs-viewer:// frame); and this
# policy lets the document itself run, load, frame or submit nothing.
PDF_POLICY = ("default-src 'none'; script-src 'none'; object-src 'none'; "
              "style-src 'unsafe-inline'; img-src 'self' data:; form-action 'none'; "
              "base-uri 'none'; frame-ancestors 'self'")


def true_type(declared: str, head: bytes) -> bool:
    """Whether ``head`` (the first decoded bytes) is what the inline type ``declared`` says."""
    return any(head.startswith(sig) for sig in SIGNATURES.get(declared, ())) and (
        declared != "image/webp" or head[8:12] == b"WEBP")


async def attachment(request: Request) -> Response:
    """One attachment, streamed from IMAP and decoded on the way (never held whole).
    PDFs whose bytes are a PDF open in the browser's viewer under a policy that runs
    nothing; raster images open in a sandbox; everything else downloads under a safe name
    with a type that cannot be sniffed into HTML."""
    folder = _folder_param(request)
    uid = _uid_param(request.query_params.get("uid"))
    part_id = request.query_params.get("part", "")
    if not re.fullmatch(r"\d{1,4}(\.\d{1,4}){0,20}", part_id):
        raise BadRequest("That attachment reference is not valid.")

    async def info(conn: ImapConn) -> BodyPart:
        return await parts.part_info(conn, folder, uid, part_id)
    part = await imap_run(request, info)

    async def run(fn: Callable[[ImapConn], Awaitable[bytes]]) -> bytes:
        return await imap_run(request, fn)
    chunks = parts.stream_part(run, folder, uid, part)
    # The first chunk decides how it is served (its true type), before any header is sent.
    first = await anext(chunks, b"")
    ctype = part.content_type.lower()
    ext = mimetypes.guess_extension(ctype, strict=False) or ".bin"
    name = safe_filename(part.filename or part.params.get("name"), fallback="attachment" + ext)
    inline = (ctype in mv.INLINE_TYPES and request.query_params.get("download") != "1"
              and true_type(ctype, first))
    if not inline:
        ctype = ctype if ctype in mv.OFFICE_TYPES else "application/octet-stream"
    ascii_name = _UNSAFE_NAME.sub("_", name.encode("ascii", "replace").decode())
    disposition = (f"{'inline' if inline else 'attachment'}; filename=\"{ascii_name}\"; "
                   f"filename*=UTF-8''{quote(name)}")
    headers = {
        "Content-Disposition": disposition,
        "Content-Security-Policy": PDF_POLICY if inline and ctype == "application/pdf"
        else SANDBOXED,
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Cache-Control": "private, no-store",
    }
    if ctype.startswith("text/"):
        ctype += "; charset=utf-8"

    async def body() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in chunks:
            yield chunk
    return StreamingResponse(body(), media_type=ctype, headers=headers)


async def message_action(request: Request) -> Response:
    """Act on the chosen messages, then back to the page with a notice saying what was done
    (and an Undo for moves). Nothing chosen, or no folder chosen to move to, is a notice on
    the same page, not an error page."""
    svc = services(request)
    session = member(request)
    form = await request.form(max_files=0, max_fields=300)
    folder = str(form.get("f", "INBOX"))
    action = str(form.get("action", ""))
    if action not in ACTIONS:
        raise BadRequest("That action is not available.")
    back = safe_next(str(form.get("back", "")) or mv.folder_url(folder))
    here = safe_next(str(form.get("here", "")) or back)

    def noted(url: str, kind: str, **fields: Any) -> Response:
        token = notices.encode(session, svc.clock(), kind, **fields)
        return RedirectResponse(notices.with_note(url, token), status_code=303)

    uids = [_uid_param(str(v)) for v in form.getlist("uid")][:notices.MAX_UNDO]
    if not uids:
        return noted(here, "none-chosen")
    target = str(form.get("target", ""))
    if action in ("move", "undo") and not target:
        return noted(here, "no-target")

    async def work(conn: ImapConn) -> tuple[str, mailbox.Folder | None, list[int]]:
        if action in ("read", "unread"):
            await mailbox.set_flags(conn, folder, uids, "\\Seen", action == "read")
            return action, None, []
        if action in ("flag", "unflag"):
            await mailbox.set_flags(conn, folder, uids, "\\Flagged", action == "flag")
            return action, None, []
        folders = await mailbox.list_folders(conn, counts=False)
        special = {"delete": "trash", "archive": "archive", "junk": "junk"}.get(action)
        if special:
            dest = reader.special(folders, special)
            if dest is None:
                raise BadRequest("Your mailbox has no folder for that.")
        else:
            dest = reader.named(folders, target)
            if dest is None:
                raise BadRequest("Choose a folder to move to.")
        if dest.name == folder and action == "delete":
            # Deleting from Deleted Items removes for good, like Outlook.
            await mailbox.remove_for_good(conn, folder, uids)
            return "removed", None, []
        if dest.name == folder:
            return action, dest, []
        return action, dest, await mailbox.move(conn, folder, uids, dest.name)

    kind, dest, moved = await imap_run(request, work)
    if action in ("delete", "archive", "move", "junk", "undo") and "/mail/read" in back:
        back = mv.folder_url(folder)
    if dest is None:
        return noted(back, kind)
    # The reverse move needs the UIDs the messages have now (COPYUID); without them the
    # notice still says what happened, without an Undo.
    return noted(back, kind, n=len(uids), dest=dest.label, folder=dest.name, back=folder,
                 uids=moved if len(moved) == len(uids) else [])


async def empty_folder(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=10)
    folder = str(form.get("f", ""))
    if form.get("confirm") != "yes":
        return render(request, "mail_confirm.html", {"folder": folder})

    async def work(conn: ImapConn) -> int:
        folders = await mailbox.list_folders(conn, counts=False)
        target = reader.named(folders, folder)
        if target is None or target.special not in ("junk", "trash"):
            raise BadRequest("Only Junk Email and Deleted Items can be emptied.")
        return await mailbox.delete_all(conn, folder)

    await imap_run(request, work)
    token = notices.encode(member(request), services(request).clock(), "emptied")
    return RedirectResponse(notices.with_note(mv.folder_url(folder), token), status_code=303)


def notice_of(request: Request) -> notices.Notice | None:
    """The notice this page was sent with (``?note=``), if genuine and fresh."""
    return notices.decode(signed_in(request),
                          request.query_params.get("note"), services(request).clock())


routes = [
    Route("/", folder_page, methods=["GET"]),
    Route("/mail", folder_page, methods=["GET"]),
    Route("/mail/read", read_message, methods=["GET"]),
    Route("/mail/frame", message_frame, methods=["GET"]),
    Route("/mail/part", attachment, methods=["GET"]),
    Route("/mail/action", message_action, methods=["POST"]),
    Route("/mail/empty", empty_folder, methods=["POST"]),
]
