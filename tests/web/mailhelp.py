"""Helpers for mail tests: build messages, deliver them to Dovecot, and look at a mailbox
directly over IMAP (with a token from the stand-in), bypassing the gateway."""

from __future__ import annotations

import email.policy
import uuid
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime, make_msgid
from typing import Any

from gateway.devstack.tokens import OUTLOOK_AUDIENCE
from gateway.devstack.users import user
from gateway.mail import imap, imap_login, imap_pool, mailbox
from gateway.mail.search import Query, search_folder

PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]"
       b"/Count 1>>endobj\n3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
       b"trailer<</Root 1 0 R>>\n%%EOF\n")


def drawn_pdf(title: str = "Planning Committee agenda") -> bytes:
    """A one-page PDF with a cross-reference table, as committee papers are, whose page
    carries a title and a large black square: a viewer that draws it shows black pixels
    (the viewers' own backgrounds and toolbars are grey), a blank viewer shows none."""
    content = (b"0 0 0 rg 40 40 320 320 re f\nBT /F1 18 Tf 40 380 Td (" + title.encode("latin-1")
               + b") Tj ET\n")
    objects = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
               b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 400 420]/Contents 4 0 R"
               b"/Resources<</Font<</F1 5 0 R>>>>>>",
               b"<</Length %d>>stream\n" % len(content) + content + b"endstream",
               b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>"]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj" % number + body + b"endobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)


DOCX = b"PK\x03\x04" + bytes(range(256)) * 4
# A valid 1x1 PNG.
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06"
       b"\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01"
       b"\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")


def with_inline_image(subject: str, text: str, html: str, cid: str,
                      attachments: list[tuple[str, str, bytes]] | None = None) -> bytes:
    """A text + HTML message whose HTML shows PNG as ``cid:<cid>`` (multipart/related)."""
    msg = EmailMessage()
    msg["From"], msg["To"] = "Clerk <clerk@council.example>", "alex.morgan@council.example"
    msg["Subject"] = subject
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    html_part = list(msg.iter_parts())[1]
    html_part.add_related(PNG, "image", "png", cid=f"<{cid}>")
    for name, ctype, data in attachments or []:
        main, sub = ctype.split("/")
        msg.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return msg.as_bytes()


def message(subject: str, *, sender: str = "Clerk <clerk@council.example>",
            to: str = "alex.morgan@council.example", text: str = "Hello from the clerk.",
            html: str | None = None, attachments: list[tuple[str, str, bytes]] | None = None,
            extra_headers: dict[str, str] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(__import__("datetime").datetime.now().astimezone())
    msg["Message-ID"] = make_msgid(domain="council.example")
    for k, v in (extra_headers or {}).items():
        msg[k] = v
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for name, ctype, data in attachments or []:
        main, sub = ctype.split("/")
        msg.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return msg.as_bytes()


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:10]}"


def imap_target(gw: Any) -> imap_login.ImapTarget:
    """The dev stack's IMAP server, as the gateway reaches it."""
    return imap_login.ImapTarget(gw.stack.mail.host, gw.stack.mail.imap_port,
                                 imap_login.ssl_context(str(gw.stack.certs.ca_cert)), 15)


def imap_token(gw: Any, who: str) -> str:
    """An Outlook IMAP access token for ``who`` from the Entra stand-in."""
    token: str = gw.stack.entra.issue_access_token(user(who), OUTLOOK_AUDIENCE,
                                                   ["IMAP.AccessAsUser.All"])
    return token


def own_pool(gw: Any, who: str = "member") -> imap_pool.ImapPool:
    """An IMAP pool of the test's own (not the gateway's) that signs in as ``who``."""
    async def token_for(account_id: str) -> str:
        return imap_token(gw, who)
    return imap_pool.ImapPool(imap_target(gw), token_for)


def direct(gw: Any, who: str, fn: Any) -> Any:
    """Run ``fn(conn)`` on a fresh IMAP connection as ``who`` (not through the gateway)."""
    target, email_address, token = imap_target(gw), user(who).email, imap_token(gw, who)

    async def run() -> Any:
        async with imap_login.connect(target, email_address, token) as conn:
            return await fn(conn)
    return gw.loop.run(run())


def find_uid(gw: Any, who: str, subject: str, folder: str = "INBOX") -> int | None:
    async def fn(conn: imap.ImapConn) -> int | None:
        # Through gateway.mail.search: a non-ASCII subject cannot go to Exchange as it is.
        uids = await search_folder(conn, folder, Query(subject=subject))
        return uids[0] if uids else None
    result: int | None = direct(gw, who, fn)
    return result


def flags_of(gw: Any, who: str, folder: str, uid: int) -> set[str]:
    async def fn(conn: imap.ImapConn) -> set[str]:
        items = await mailbox.fetch_uids(conn, folder, [uid])
        if not items:
            return set()
        m = items[0]
        out = set()
        if not m.unread:
            out.add("seen")
        if m.flagged:
            out.add("flagged")
        if m.answered:
            out.add("answered")
        return out
    result: set[str] = direct(gw, who, fn)
    return result


def raw_of(gw: Any, who: str, folder: str, uid: int | None) -> bytes:
    assert uid is not None, "the message is not in the folder"

    async def fn(conn: imap.ImapConn) -> bytes:
        return await mailbox.fetch_raw(conn, folder, uid, 50 * 1024 * 1024)
    result: bytes = direct(gw, who, fn)
    return result


def deliver(gw: Any, who: str, data: bytes, folder: str = "INBOX") -> int:
    gw.stack.mail.deliver(user(who).email, data, folder=folder)
    # Decoded, as the server searches it (a non-ASCII subject is an RFC 2047 encoded-word).
    # Headers only: a hostile body (a thousand nested parts) must not trip the test's parser.
    subject = BytesHeaderParser(policy=email.policy.default).parsebytes(data)["Subject"]
    assert subject
    uid = find_uid(gw, who, str(subject).strip(), folder)
    assert uid is not None
    return uid


class open_idle_connections:
    """Hold ``count`` logged-in IMAP connections for ``who`` (another app's, say)."""

    def __init__(self, gw: Any, who: str, count: int) -> None:
        self.gw, self.who, self.count = gw, who, count
        self.conns: list[imap.ImapConn] = []

    def __enter__(self) -> open_idle_connections:
        u = user(self.who)
        gw = self.gw
        target = imap_login.ImapTarget(gw.stack.mail.host, gw.stack.mail.imap_port,
                                       imap_login.ssl_context(str(gw.stack.certs.ca_cert)), 15)

        async def open_all() -> None:
            for _ in range(self.count):
                token = gw.stack.entra.issue_access_token(u, OUTLOOK_AUDIENCE,
                                                          ["IMAP.AccessAsUser.All"])
                self.conns.append(await imap_login.open_connection(target, u.email, token))
        gw.loop.run(open_all())
        return self

    def __exit__(self, *exc: Any) -> None:
        async def close_all() -> None:
            for c in self.conns:
                await c.close()
        self.gw.loop.run(close_all())
