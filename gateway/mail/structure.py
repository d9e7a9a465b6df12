"""Opening a large message without downloading it: the view is built from the message's
header, its BODYSTRUCTURE and only the parts a member reads (text, HTML, an invitation,
small inline images). A committee pack with a 40 MB PDF therefore opens as fast as a short
note, and the PDF itself is streamed only when asked for (``gateway.mail.parts``).

Small messages are still parsed whole by ``gateway.mail.mime``, which sees every quirk of a
malformed message; this path trusts the server's BODYSTRUCTURE instead.
"""

from __future__ import annotations

from gateway.mail import mime
from gateway.mail.imap import ImapConn
from gateway.mail.imap_fetch import BodyPart
from gateway.mail.mailbox import mailbox_arg, section, uid_fetch
from gateway.mail.parts import _Decoder

# Bodies larger than this are not shown inline (the member can still download them).
MAX_BODY_PART = 2 * 1024 * 1024


def _is_body(part: BodyPart) -> bool:
    return (part.type == "text" and part.subtype in ("plain", "html")
            and (part.disposition or "").lower() != "attachment" and not part.filename
            and "name" not in part.params)


def decoded_size(part: BodyPart) -> int:
    # BODYSTRUCTURE gives the encoded size. Mail's base64 carries 57 bytes in each line of
    # 76 characters plus CRLF, so 57 of every 78 octets are data.
    return part.size * 57 // 78 if (part.encoding or "").lower() == "base64" else part.size


async def part_bytes(conn: ImapConn, folder: str, uid: int, part: BodyPart) -> bytes:
    """One part, fetched and decoded in one go (for parts known to be small)."""
    await conn.select(mailbox_arg(folder))
    items = await uid_fetch(conn, uid, f"(BODY.PEEK[{part.part_id}])", "open the message")
    data = section(items, f"BODY[{part.part_id}]") or b""
    decoder = _Decoder(part.encoding or "7bit")
    return decoder.feed(data) + decoder.finish()


async def view_from_structure(conn: ImapConn, folder: str, uid: int,
                              mark_read: bool) -> tuple[mime.MessageView, dict[str, BodyPart]]:
    """The message view, and its leaf parts by part id (to fetch inline images later)."""
    await conn.select(mailbox_arg(folder))
    header_spec = "BODY[HEADER]" if mark_read else "BODY.PEEK[HEADER]"
    items = await uid_fetch(conn, uid, f"(BODYSTRUCTURE {header_spec})", "open the message")
    if not items or items[0].bodystructure is None:
        from gateway.errors import NotFound
        raise NotFound("That message is no longer there. It may have been moved or deleted.")
    if mark_read:
        conn.folder_cache = None
    header = section(items, "BODY[HEADER]") or b""
    view = mime.parse_message(header.rstrip(b"\r\n") + b"\r\n\r\n")
    view.attachments, view.notes = [], []
    root = items[0].bodystructure
    leaves = {p.part_id: p for p in root.walk() if not p.children and p.type != "multipart"}
    texts: list[str] = []
    htmls: list[str] = []
    for part in leaves.values():
        charset = part.params.get("charset")
        if _is_body(part) and part.size <= MAX_BODY_PART:
            body = mime.decode_bytes(await part_bytes(conn, folder, uid, part), charset)
            (texts if part.subtype == "plain" else htmls).append(body[:mime.MAX_TEXT_CHARS])
            continue
        if part.content_type == "text/calendar" and view.calendar is None \
                and part.size <= MAX_BODY_PART:
            view.calendar = mime.parse_calendar(
                mime.decode_bytes(await part_bytes(conn, folder, uid, part), charset))
            if (part.disposition or "").lower() != "attachment":
                continue
        if _is_body(part):
            view.notes.append("A very long part of this message is offered as a download.")
        name = part.filename or part.params.get("name")
        if not name and part.content_type in ("message/rfc822", "message/global"):
            subject = part.envelope.subject if part.envelope else ""
            name = (subject or "message") + ".eml"
        cid = (part.id or "").strip().strip("<>") or None
        disposition = (part.disposition or "").lower()
        view.attachments.append(mime.AttachmentInfo(
            part_id=part.part_id, filename=mime.safe_filename(name),
            content_type=part.content_type, size=decoded_size(part), content_id=cid,
            inline=disposition == "inline" or (not disposition and cid is not None)))
    view.text = "\n".join(texts) if texts else None
    view.html = "\n".join(htmls) if htmls else None
    return view, leaves
