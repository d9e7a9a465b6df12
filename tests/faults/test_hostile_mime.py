"""Hostile MIME structure (issue 14, case 11): one bad message costs only itself. Each shape
is built here, delivered to Dovecot, and the folder, its search, the message and its parts
are opened through the gateway: the list shows every other message, and the bad one as a
row of its own."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import sign_in
from tests.faults.conftest import Rig
from tests.web.mailhelp import deliver, message, unique

HEAD = ("From: Mallory <mallory@elsewhere.example>\r\nTo: jo.evans@council.example\r\n"
        "Date: Wed, 02 Dec 2026 09:00:00 +0000\r\nMessage-ID: <{mid}@elsewhere.example>\r\n"
        "Subject: {subject}\r\nMIME-Version: 1.0\r\n")


def deep_multipart(subject: str, depth: int = 3000) -> bytes:
    out = [HEAD.format(mid=unique("m").replace(" ", ""), subject=subject)]
    for i in range(depth):
        out.append(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n')
    out.append("Content-Type: text/plain\r\n\r\nbottom\r\n")
    for i in reversed(range(depth)):
        out.append(f"--b{i}--\r\n")
    return "".join(out).encode()


def nested_rfc822(subject: str, depth: int = 20) -> bytes:
    inner = "Content-Type: text/plain\r\n\r\nThe innermost text.\r\n"
    for i in range(depth):
        inner = (f"From: a{i}@elsewhere.example\r\nSubject: level {i}\r\nMIME-Version: 1.0\r\n"
                 f'Content-Type: multipart/mixed; boundary="r{i}"\r\n\r\n--r{i}\r\n'
                 "Content-Type: text/plain\r\n\r\nlevel text\r\n"
                 f"--r{i}\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n--r{i}--\r\n")
    return (HEAD.format(mid=unique("m").replace(" ", ""), subject=subject) + inner.split(
        "MIME-Version: 1.0\r\n", 1)[1]).encode()


def reused_boundary(subject: str) -> bytes:
    return (HEAD.format(mid=unique("m").replace(" ", ""), subject=subject)
            + 'Content-Type: multipart/mixed; boundary="same"\r\n\r\n'
            "--same\r\nContent-Type: text/plain\r\n\r\nouter text\r\n"
            '--same\r\nContent-Type: multipart/mixed; boundary="same"\r\n\r\n'
            "--same\r\nContent-Type: text/plain\r\n\r\ninner text\r\n"
            "--same\r\nContent-Type: application/pdf\r\n"
            'Content-Disposition: attachment; filename="agenda.pdf"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
            "--same--\r\n--same--\r\n").encode()


def many_parts(subject: str, count: int = 10_000) -> bytes:
    out = [HEAD.format(mid=unique("m").replace(" ", ""), subject=subject),
           'Content-Type: multipart/mixed; boundary="p"\r\n\r\n']
    for i in range(count):
        out.append(f"--p\r\nContent-Type: text/plain\r\n"
                   f'Content-Disposition: attachment; filename="part{i}.txt"\r\n\r\n{i}\r\n')
    out.append("--p--\r\n")
    return "".join(out).encode()


SHAPES = {"deep multipart": deep_multipart, "rfc822 twenty deep": nested_rfc822,
          "reused boundary": reused_boundary, "ten thousand parts": many_parts}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_one_hostile_message_costs_only_itself(rig: Rig, shape: str) -> None:
    gw = rig.gateway()
    good = unique("Good neighbour")
    deliver(gw, "member2", message(good))
    bad = unique(f"Hostile {shape}")
    uid = deliver(gw, "member2", SHAPES[shape](bad))
    client = sign_in(gw, "member2")
    listing = client.get("/mail", params={"f": "INBOX"})
    assert listing.status_code == 200, listing.text[:300]
    assert good in listing.text
    assert bad in listing.text or "could not be read" in listing.text
    found = client.get("/mail/search", params={"f": "INBOX", "q": "neighbour"})
    assert found.status_code == 200 and good in found.text
    read = client.get("/mail/read", params={"f": "INBOX", "uid": str(uid)})
    assert read.status_code in (200, 422), read.status_code
    assert "Traceback" not in read.text
    parts: list[Any] = re.findall(r'href="(/mail/part\?[^"]+)"', read.text)
    for href in parts[:5]:
        r = client.get(href.replace("&amp;", "&"))
        assert r.status_code == 200, (href, r.status_code)


def test_dot_dot_names_and_disguised_types(rig: Rig) -> None:
    """Attachment names lose their ``..`` sequences; SVG or HTML bytes declared as an image
    or a PDF are not served as that type inline, but as a download."""
    gw = rig.gateway()
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    html = b"<!doctype html><html><body><script>alert(1)</script></body></html>"
    subject = unique("Disguised")
    uid = deliver(gw, "member2", message(subject, attachments=[
        ("..\\..\\photo..png", "image/png", svg), ("minutes...pdf", "application/pdf", html)]))
    client = sign_in(gw, "member2")
    read = client.get("/mail/read", params={"f": "INBOX", "uid": str(uid)})
    assert read.status_code == 200
    hrefs = re.findall(r'href="(/mail/part\?[^"]+)"', read.text)
    assert len(hrefs) == 2
    assert ".." not in re.sub(r"<[^>]+>", "", read.text.split("Attachments")[-1])
    for href in hrefs:
        r = client.get(href.replace("&amp;", "&"))
        assert r.status_code == 200
        ctype = r.headers["content-type"]
        assert not ctype.startswith(("image/png", "application/pdf", "text/html",
                                     "image/svg")), ctype
        assert r.headers["content-disposition"].startswith("attachment")
        assert ".." not in r.headers["content-disposition"]
