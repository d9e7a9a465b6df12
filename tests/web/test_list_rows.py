"""The message list's rows over HTTP against real Dovecot (issue 13 item 8): a preview line
of the text instead of the size, decoded and escaped, day headings, the flag mark, and only
Flag or Unflag on a message as fits it; search results show the same rows."""

from __future__ import annotations

import re
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from html import unescape

from gateway.devstack.users import user
from tests.conftest import Gateway, csrf_of, sign_in
from tests.mail.hostile_corpus import hostile_messages
from tests.web.mailhelp import deliver, message, unique


def row_of(page: str, subject: str) -> str:
    rows: list[str] = re.findall(r'<li class="row.*?</li>', page, re.S)
    found = [r for r in rows if subject in unescape(r)]
    assert found, subject
    return found[0]


def encoded(subject: str, text: str, cte: str, charset: str = "utf-8",
            subtype: str = "plain") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = "Clerk <clerk@council.example>", "alex.morgan@council.example"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now().astimezone())
    msg["Message-ID"] = make_msgid(domain="council.example")
    msg.set_content(text, subtype=subtype, charset=charset, cte=cte)
    return msg.as_bytes()


def test_rows_show_preview_not_size_decoded_and_escaped(gateway: Gateway) -> None:
    client = sign_in(gateway, "member")
    welsh = unique("Pwyllgor")
    deliver(gateway, "member", encoded(
        welsh, "Bore da! Mae’r agenda ar gyfer dydd Iau ynghlwm. " * 30, "base64"))
    latin = unique("Latin")
    deliver(gateway, "member", encoded(
        latin, "Réunion du comité à 14h00, salle Siân. " * 30, "quoted-printable",
        charset="iso-8859-1"))
    hostile = unique("Hostile")
    deliver(gateway, "member", encoded(
        hostile, "<style>p{}</style><p>Hi &lt;img src=x onerror=alert(1)&gt;"
        " <script>alert(2)</script>there</p>", "quoted-printable", subtype="html"))
    alt = unique("Both parts")
    deliver(gateway, "member", message(alt, text="The plain words.",
                                       html="<p>The HTML words.</p>"))
    page = client.get("/mail").text

    row = row_of(page, welsh)
    preview = re.search(r'<span class="preview">(.*?)</span>', row, re.S)
    assert preview, row
    shown = unescape(preview.group(1))
    assert shown.startswith("Bore da! Mae’r agenda ar gyfer dydd Iau ynghlwm.")
    assert shown.endswith("…") and len(shown) <= 101
    assert "bytes" not in row and " KB" not in row

    assert "Réunion du comité à 14h00, salle Siân." in unescape(row_of(page, latin))

    bad = row_of(page, hostile)
    assert "Hi &lt;img src=x onerror=alert(1)&gt; there" in bad
    assert "<img" not in bad and "alert(2)" not in bad and "<script" not in bad

    assert "The plain words." in row_of(page, alt)
    # Newest first under a day heading; the rows just delivered are under "Today".
    assert re.search(r'<h2 class="day" id="day-1">Today</h2>', page)


def test_flag_is_marked_and_only_the_fitting_action_is_offered(gateway: Gateway) -> None:
    client = sign_in(gateway, "member")
    subject = unique("Flag me")
    uid = deliver(gateway, "member", message(subject))
    read = client.get(f"/mail/read?f=INBOX&uid={uid}").text
    assert 'value="flag"' in read and 'value="unflag"' not in read
    row = row_of(client.get("/mail").text, subject)
    assert "Flagged." not in row and "⚑" not in row

    r = client.post("/mail/action", data={"f": "INBOX", "uid": str(uid), "action": "flag",
                                          "csrf_token": csrf_of(client, "/mail")},
                    headers={"Origin": gateway.url})
    assert r.status_code == 303
    row = row_of(client.get("/mail").text, subject)
    assert 'class="row flagged"' in row or 'flagged"' in row.split(">", 1)[0]
    assert '<span class="visually-hidden">Flagged. </span>' in row
    assert '<span class="marks" aria-hidden="true"><span class="flag"' in row
    read = client.get(f"/mail/read?f=INBOX&uid={uid}").text
    assert 'value="unflag"' in read and 'value="flag"' not in read


def test_search_results_show_the_preview(gateway: Gateway) -> None:
    client = sign_in(gateway, "member")
    subject = unique("Findable")
    deliver(gateway, "member", message(subject, text="Parking permits for the ward."))
    for scope in ("folder", "all"):
        page = client.get("/mail/search", params={"q": subject, "f": "INBOX",
                                                  "scope": scope}).text
        assert "Parking permits for the ward." in row_of(page, subject), scope


def test_hostile_corpus_lists_without_error_and_previews_stay_text(gateway: Gateway) -> None:
    """Every hostile message (bad charsets such as "zlib", broken encodings, deep nesting)
    lists with a 200 and at most an empty preview; no markup leaks from a preview."""
    folder = "Ward – Llanfair Café"
    corpus = hostile_messages()
    for _name, raw in corpus:
        gateway.stack.mail.deliver(user("member").email, raw, folder=folder)
    client = sign_in(gateway, "member")
    r = client.get("/mail", params={"f": folder})
    assert r.status_code == 200
    previews = re.findall(r'<span class="preview">(.*?)</span>', r.text, re.S)
    assert previews
    for p in previews:
        assert "<" not in p and len(unescape(p)) <= 101
