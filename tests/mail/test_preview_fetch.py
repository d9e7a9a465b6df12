"""What a page of the message list costs in FETCH commands against real Dovecot, now that
the start of part 1 is asked with the summaries (``mailbox.PAGE_ITEMS``): the usual shapes
(text/plain, multipart/alternative with the plain part first, base64 text) have their
preview lines from that one FETCH, and every other shape gets the same line it would get
from a fetch of its own preview part alone, as before."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from gateway.devstack.users import user
from gateway.mail import imap, mailbox, preview
from gateway.mail.imap_fetch import BodyPart, FetchData
from tests.conftest import Gateway
from tests.web.mailhelp import PDF, direct, message, unique


def _fetches(conn: imap.ImapConn) -> list[bytes]:
    """From now on, the items of each FETCH command written to the server."""
    sent: list[bytes] = []
    transport = conn.client.protocol.transport
    write = transport.write

    def recording(data: bytes) -> None:
        for line in data.split(b"\r\n"):
            words = line.split(b" ", 4)
            if b"FETCH" in words[1:3]:
                sent.append(line.split(b"FETCH ", 1)[1].split(b" ", 1)[1])
        write(data)
    transport.write = recording
    return sent


def _base64_text(subject: str, text: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = "Clerk <clerk@council.example>", "alex.morgan@council.example"
    msg["Subject"] = subject
    msg.set_content(text, cte="base64")
    return msg.as_bytes()


def _html_only(subject: str, html: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = "Clerk <clerk@council.example>", "alex.morgan@council.example"
    msg["Subject"] = subject
    msg.set_content(html, subtype="html")
    return msg.as_bytes()


def _mixed(subject: str, text: str) -> bytes:
    """multipart/mixed around multipart/alternative: the text is part 1.1, not 1."""
    return message(subject, text=text, html=f"<p>{text}</p>",
                   attachments=[("agenda.pdf", "application/pdf", PDF)])


def _pdf_only(subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = "Clerk <clerk@council.example>", "alex.morgan@council.example"
    msg["Subject"] = subject
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="only.pdf")
    return msg.as_bytes()


def _put(gateway: Gateway, folder: str, data: bytes) -> None:
    gateway.stack.mail.deliver(user("member").email, data, folder=folder)


def test_usual_shapes_cost_one_fetch_and_new_mail_one_more(gateway: Gateway) -> None:
    """A cold page of plain, alternative and base64 messages is one FETCH, which asks for
    the start of part 1; each has its own preview line and stays unread. Mail that arrives
    later costs the page its (UID FLAGS) and one FETCH of the new message, no third."""
    folder = unique("Preview one fetch")
    _put(gateway, folder, message("Plain", text="Planning committee moved to Thursday."))
    _put(gateway, folder, message("Alternative", text="Budget papers attached below.",
                                  html="<p>Budget <b>papers</b> attached below.</p>"))
    _put(gateway, folder, _base64_text("Base64", "Ward surgery at the library, 10am."))

    async def run(conn: imap.ImapConn) -> tuple[Any, list[bytes], Any, list[bytes]]:
        sent = _fetches(conn)
        first = await mailbox.fetch_page(conn, folder)
        cold = list(sent)
        sent.clear()
        _put(gateway, folder, message("Later", text="Licensing hearing adjourned."))
        conn.fresh = False   # as at the start of the next request: NOOP brings the news
        second = await mailbox.fetch_page(conn, folder)
        return first, cold, second, list(sent)

    first, cold, second, later = direct(gateway, "member", run)
    assert cold == [mailbox.PAGE_ITEMS.encode()]
    lines = {m.subject: m.preview for m in first.messages}
    assert lines == {"Plain": "Planning committee moved to Thursday.",
                     "Alternative": "Budget papers attached below.",
                     "Base64": "Ward surgery at the library, 10am."}
    assert all(m.unread for m in first.messages)
    assert later == [b"(UID FLAGS)", mailbox.PAGE_ITEMS.encode()]
    assert second.messages[0].subject == "Later"
    assert second.messages[0].preview == "Licensing hearing adjourned."
    assert all(m.unread for m in second.messages)


def test_other_shapes_get_the_line_of_their_own_part(gateway: Gateway) -> None:
    """HTML-only (part 1, but 2 KB of it are needed), mixed (part 1.1) and an attachment
    alone (no preview): each gets what a fetch of its own preview part alone gives, for
    one more FETCH per distinct part and size."""
    folder = unique("Preview other shapes")
    _put(gateway, folder, _html_only("Html", "<style>p{}</style><p>Agenda for <i>Monday</i>"
                                     "</p>"))
    _put(gateway, folder, _mixed("Mixed", "Minutes of the last meeting are attached."))
    _put(gateway, folder, _pdf_only("Pdf"))

    async def run(conn: imap.ImapConn) -> tuple[Any, list[bytes], dict[str, str]]:
        sent = _fetches(conn)
        page = await mailbox.fetch_page(conn, folder)
        asked = list(sent)
        alone: dict[str, str] = {}
        for m in page.messages:
            (item,) = await mailbox.uid_fetch(conn, m.uid, "(UID BODYSTRUCTURE)", "look")
            part = preview.preview_part(item.bodystructure)
            if part is None:
                alone[m.subject] = ""
                continue
            spec = f"BODY.PEEK[{part.part_id}]<0.{preview.fetch_size(part)}>"
            got = await mailbox.uid_fetch(conn, m.uid, f"(UID {spec})", "look")
            data = mailbox.section(got, f"BODY[{part.part_id}]")
            alone[m.subject] = preview.preview_text(data, part)
        return page, asked, alone

    page, asked, alone = direct(gateway, "member", run)
    assert {m.subject: m.preview for m in page.messages} == alone
    assert alone["Html"] == "Agenda for Monday"
    assert alone["Mixed"] == "Minutes of the last meeting are attached."
    assert alone["Pdf"] == ""
    assert len(asked) == 3
    assert asked[0] == mailbox.PAGE_ITEMS.encode()
    assert sorted(asked[1:]) == [b"(UID BODY.PEEK[1.1]<0.512>)", b"(UID BODY.PEEK[1]<0.2048>)"]


def test_the_plan_uses_part_1_only_where_it_is_the_plain_text() -> None:
    """Unit: part 1 plain with its bytes is done; part 1 HTML, part 1.1, or part 1 plain
    without its bytes in the answer are fetched, grouped by part and size."""
    plain = BodyPart("1", "text", "plain", params={"charset": "utf-8"})
    html = BodyPart("1", "text", "html", params={"charset": "utf-8"})
    inner = BodyPart("1.1", "text", "plain", params={"charset": "utf-8"})
    alt = BodyPart("1", "multipart", "alternative", children=[inner])
    root = BodyPart("", "multipart", "mixed", children=[alt])

    def item(uid: int, body: BodyPart, data: bytes | None) -> FetchData:
        sections: dict[str, bytes | None] = {} if data is None else {"BODY[1]<0>": data}
        return FetchData(uid, {}, uid, bodystructure=body, sections=sections)

    done, fetches = preview.plan([item(1, plain, b"Hello there"), item(2, html, b"<p>Hi"),
                                  item(3, root, b"--boundary"), item(4, plain, None),
                                  item(5, inner, b"x")])
    assert done == {1: "Hello there"}
    assert {spec: [uid for uid, _ in wanted] for spec, wanted in fetches.items()} == {
        "BODY.PEEK[1]<0.2048>": [2], "BODY.PEEK[1.1]<0.512>": [3, 5],
        "BODY.PEEK[1]<0.512>": [4]}


def test_page_items_are_the_summaries_and_the_start_of_part_1() -> None:
    assert mailbox.PAGE_ITEMS == mailbox.SUMMARY_ITEMS[:-1] + " " + preview.ASKED_FIRST + ")"
    assert preview.ASKED_FIRST == f"BODY.PEEK[1]<0.{preview.TEXT_BYTES}>"
